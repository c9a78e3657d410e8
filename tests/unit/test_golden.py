"""Golden outputs: summary.json, stacks.folded, the speedscope file and the report page's
data of two fixed hand-built profiles, byte for byte. They guard refactors (moving code
must change no result). When a change is meant to alter a result, regenerate with
`ASGIPROF_GOLDEN=write python -m pytest tests/unit/test_golden.py` and review the diff."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from asgiprof.analyze import analyze
from asgiprof.reporters import get_reporter
from asgiprof.reporters.html import report_payload
from tests.golden_profiles import PARAMS, one_worker, read_line, two_workers
from tests.profile_builder import Builder

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "golden"
OUTPUTS = ("summary_json", "folded", "speedscope")
WRITE = os.environ.get("ASGIPROF_GOLDEN") == "write"


@pytest.mark.parametrize("name,build", [("one_worker", one_worker), ("two_workers", two_workers)])
def test_outputs_match_the_golden_files(
    name: str, build: Callable[[], Builder], tmp_path: Path
) -> None:
    analysis = analyze(build().build(), PARAMS, read_line)
    want_dir = GOLDEN / name
    for module in OUTPUTS:
        written = get_reporter(module).render(analysis, tmp_path)
        want = want_dir / written.name
        if WRITE:
            want_dir.mkdir(parents=True, exist_ok=True)
            want.write_bytes(written.read_bytes())
        assert want.exists(), f"no golden {want}: run with ASGIPROF_GOLDEN=write"
        assert written.read_bytes() == want.read_bytes(), f"{name}/{written.name} changed"
    # The report page's data (the page itself also inlines its script and styles).
    payload = orjson.dumps(
        report_payload(analysis), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    )
    want = want_dir / "report-payload.json"
    if WRITE:
        want.write_bytes(payload)
    assert payload == want.read_bytes(), f"{name}/report-payload.json changed"


def test_the_golden_profiles_exercise_what_they_guard() -> None:
    # A golden file of an empty analysis guards nothing: check the fixture has teeth.
    one = analyze(one_worker().build(), PARAMS, read_line)
    two = analyze(two_workers().build(), PARAMS, read_line)
    assert len(two.profile.target.pids) == 2 and len(one.profile.target.pids) == 1
    lines = {(c.file, c.line) for c in one.culprits}
    assert {("/srv/app/main.py", 15), ("/srv/app/main.py", 31)} <= lines
    assert one.threadpool.busy_ms > 0 and one.routes and one.dependencies.dependencies
