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

from tests.profiling import DEMO_KINDS, demo_kinds, summary
from tests.pyspy_chunks import doc, write_profile

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built as a release would be, unpacked into a site-packages folder away
    from the checkout (what `pip install asgiprof` leaves, without its dependencies)."""
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)],
        check=True,
        timeout=240,
    )
    (wheel,) = dist.glob("asgiprof-*.whl")
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site = tmp / "env" / "lib" / version / "site-packages"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(site)
    assert "asgiprof/templates/report.html" in names
    # the report's script modules, and the list that orders them
    js = REPO / "templates" / "assets" / "js"
    assert {f"asgiprof/templates/assets/js/{p.name}" for p in js.iterdir()} <= set(names)
    assert "asgiprof/examples/demo_app.py" in names
    return site


def from_wheel(
    site: Path, cwd: Path, *args: str, timeout_s: float
) -> subprocess.CompletedProcess[str]:
    """`asgiprof ARGS` run from the wheel's files (its dependencies from this environment)."""
    code = (
        "import asgiprof, asgiprof.demo, sys; "
        "print(asgiprof.__file__); print(asgiprof.demo.examples_dir()); "
        "sys.argv = ['asgiprof', *sys.argv[1:]]; "
        "from asgiprof.cli import main; main()"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


@pytest.mark.timeout(300)
def test_report_renders_from_the_built_wheel(site: Path, tmp_path: Path) -> None:
    # GIVEN the wheel's files in a site-packages folder
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
    done = from_wheel(site, tmp_path, "report", str(out), timeout_s=60)
    assert done.returncode == 0, done.stderr
    # THEN the wheel's own copy ran, found its examples, and wrote every report
    first, second = done.stdout.splitlines()[:2]
    assert first.startswith(str(site)) and second.startswith(str(site))
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Content-Security-Policy" in html and "handler" in html
    assert "A.main = { createApp: createApp, start: start };" in html  # the last module
    assert orjson.loads((out / "summary.json").read_bytes())["schema"] == 1


@pytest.mark.integration
@pytest.mark.usefixtures("needs_ptrace")
@pytest.mark.timeout(300)
def test_the_demo_installed_in_site_packages_names_its_planted_lines(
    site: Path, tmp_path: Path
) -> None:
    # GIVEN asgiprof installed, not editable: the demo app is a file under site-packages,
    # where every other frame is library code (an app `pip install`ed into a Docker image
    # is in the same place)
    demo_file = site / "asgiprof" / "examples" / "demo_app.py"
    # WHEN `asgiprof demo` runs from there
    out = tmp_path / "out"
    done = from_wheel(site, tmp_path, "demo", "--duration", "6", "--out", str(out), timeout_s=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[1].startswith(str(site))
    # THEN its code is the app's own: the same four culprits, each with its kind, as from a
    # checkout (tests/integration/test_first_hour.py)
    assert demo_kinds(summary(out), demo_file) == DEMO_KINDS
