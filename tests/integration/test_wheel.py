"""The built wheel carries the templates and the examples: reports render and the demo app is
found from an installed wheel, not only from a source checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import orjson
import pytest

from tests.pyspy_chunks import doc, write_profile

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_report_renders_from_the_built_wheel(tmp_path: Path) -> None:
    # GIVEN the wheel, built as a release would be, unpacked away from the checkout
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)],
        check=True,
        timeout=240,
    )
    (wheel,) = dist.glob("asgiprof-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(site)
    assert "asgiprof/templates/report.html" in names
    # the report's script modules, and the list that orders them
    js = REPO / "templates" / "assets" / "js"
    assert {f"asgiprof/templates/assets/js/{p.name}" for p in js.iterdir()} <= set(names)
    assert "asgiprof/examples/demo_app.py" in names
    # AND a saved profile
    out = tmp_path / "out"
    chunk = doc(
        [
            {
                "type": "sampled",
                "name": 'Thread 7 "MainThread"',
                "samples": [[1, 2, 3]] * 3,
                "weights": [0.01] * 3,
            }
        ]
    )
    write_profile(out, [chunk])
    # WHEN `asgiprof report` runs from the wheel's files
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = (
        "import asgiprof, asgiprof.demo, sys; "
        "print(asgiprof.__file__); print(asgiprof.demo.examples_dir()); "
        "sys.argv = ['asgiprof', 'report', sys.argv[1]]; "
        "from asgiprof.cli import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # THEN the wheel's own copy ran, found its examples, and wrote every report
    first, second = done.stdout.splitlines()[:2]
    assert first.startswith(str(site)) and second.startswith(str(site))
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Content-Security-Policy" in html and "handler" in html
    assert "A.main = { createApp: createApp, start: start };" in html  # the last module
    assert orjson.loads((out / "summary.json").read_bytes())["schema"] == 1
