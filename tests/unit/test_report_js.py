"""The report page's script outside the browser: node's test runner runs tests/js/ (layout
maths, formatting, chart scales, table order, escaping), the JS and Python formatters agree
to the character, and the inlined script is the modules in their load order.

CI installs node (scripts/setup.sh: nodejs); without it these tests fail, they do not skip.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from asgiprof.reporters.html import environment, format_count, format_ms, format_pct, inline_asset
from asgiprof.reporters.script_assets import report_script

REPO = Path(__file__).resolve().parents[2]
JS_TESTS = REPO / "tests" / "js"
JS_MODULES = REPO / "templates" / "assets" / "js"
NODE_MIN = 18  # node:test and `node --test` as used here


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.fail("node is not installed: the report's JS tests need node >= 18 (apt nodejs)")
    version = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.strip()
    found = re.match(r"v(\d+)", version)
    assert found and int(found.group(1)) >= NODE_MIN, (
        f"node {version} is too old: the JS tests need >= {NODE_MIN}"
    )
    return path


def test_node_unit_tests_of_the_report_script_pass(node: str) -> None:
    # The files themselves, not the folder: node 21+ reads arguments as glob patterns.
    files = sorted(str(p.relative_to(REPO)) for p in JS_TESTS.glob("*.test.js"))
    assert files, "no tests/js/*.test.js"
    done = subprocess.run(
        [node, "--test", "--test-reporter=tap", *files],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, f"node --test tests/js/ failed:\n{done.stdout}\n{done.stderr}"
    # Every file ran: node counts its top-level tests, and none was skipped or a to-do.
    assert re.search(r"^# fail 0$", done.stdout, re.M), done.stdout
    assert re.search(r"^# skipped 0$", done.stdout, re.M), done.stdout


def _values() -> list[float]:
    # Exact binary ties (x.5, x.25, x.125 ...) where toFixed and Python's format differ,
    # the ends of each unit's range, and random values over six decades.
    rng = random.Random(13)
    ties = [k / 8 for k in range(0, 8 * 1200)]
    edges = [9.95, 9.96, 9.999, 10, 999.4, 999.5, 999.6, 1000, 9999, 9995, 10_000, 59_949.9]
    edges += [59_950, 59_999.9, 60_000, 90_500, 91_500, 3_725_000, 0.05, 0.15, 0.25]
    spread = [10 ** rng.uniform(-2, 6.5) for _ in range(4000)]
    return ties + edges + spread + [k * 1000.5 for k in range(200)]


def _js(node: str, program: str, values: Sequence[float]) -> list[str]:
    done = subprocess.run(
        [node, "-e", program],
        cwd=REPO,
        input=json.dumps(values),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out: list[str] = json.loads(done.stdout)
    return out


_FORMAT = (
    "const {A} = require('./tests/js/load.js');"
    "const xs = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
    "process.stdout.write(JSON.stringify(xs.map((x) => A.format.%s(x))));"
)


def test_js_formats_durations_shares_and_counts_as_the_python_filters(node: str) -> None:
    # The culprits table is written by Python and rewritten by JS for one worker: the same
    # figure must read the same either way.
    values = _values()
    assert _js(node, _FORMAT % "ms", values) == [format_ms(v) for v in values]
    shares = [v / 1000 for v in values if v <= 1000] + [0.0005, 0.00099, 0.001, 0.00125]
    assert _js(node, _FORMAT % "pct", shares) == [format_pct(s) for s in shares]
    counts = [int(v) for v in values] + [0, 999, 1000, 1_234_567, 10**9]
    assert _js(node, _FORMAT % "count", counts) == [format_count(n) for n in counts]


def test_the_inlined_script_is_every_module_in_load_order() -> None:
    order = (JS_MODULES / "load-order.txt").read_text(encoding="utf-8").splitlines()
    names = [n.strip() for n in order if n.strip() and not n.startswith("#")]
    assert sorted(names) == sorted(p.name for p in JS_MODULES.glob("*.js"))
    script = report_script(environment())
    assert inline_asset("report.js").text == script
    at = [script.index((JS_MODULES / name).read_text(encoding="utf-8").rstrip()) for name in names]
    assert at == sorted(at)
    assert names[-1] == "main.js"  # wiring last: it starts the page when loaded
