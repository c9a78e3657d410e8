"""What a new user reads first: the terminal summary of a real profile at 80, 120 and 200
columns, the warning when no traffic was seen, and a clean Ctrl-C during startup."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from asgiprof.demo import uvicorn_command
from asgiprof.load import free_port
from tests.profiling import asgiprof, summary

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("needs_ptrace")]

WIDTHS = (80, 120, 200)


@pytest.fixture(scope="module")
def demo_profile(tmp_path_factory: pytest.TempPathFactory, examples_dir: Path) -> Path:
    """One real profile of examples/demo_app.py under load (`asgiprof demo`)."""
    out = tmp_path_factory.mktemp("first-hour") / "demo"
    done = asgiprof("demo", "--duration", "6", "--out", str(out), cwd=examples_dir, timeout_s=120.0)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _render(out: Path, width: int) -> list[str]:
    done = asgiprof("report", str(out), cwd=out, env={"COLUMNS": str(width)}, timeout_s=60.0)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def _shown_path(culprit: dict[str, Any], root: Path) -> str:
    return f"{os.path.relpath(culprit['file'], root)}:{culprit['line']}"


@pytest.mark.parametrize("width", WIDTHS)
def test_terminal_shows_every_culprit_whole_at_each_width(
    demo_profile: Path, examples_dir: Path, width: int
) -> None:
    data = summary(demo_profile)
    culprits = data["culprits"]
    assert len(culprits) >= 3, culprits  # the demo plants four blocking lines
    lines = _render(demo_profile, width)
    text = "\n".join(lines)
    for c in culprits[:10]:
        where = _shown_path(c, examples_dir)
        # Relative to the app's root (uvicorn ran in examples/), never the absolute path.
        assert not where.startswith(".."), where
        holding = [line for line in lines if where in line]
        assert holding, f"{where} not whole on any line at {width} columns:\n{text}"
        # The same line number right after the path: not `demo_app.py:1` + `03` below.
        assert all(not line.split(where, 1)[1][:1].isdigit() for line in holding), (
            f"{where} runs on into other digits:\n{text}"
        )
        assert c["route"], c
        assert any(c["route"] in line for line in lines), (
            f"route {c['route']!r} not whole on any line at {width} columns:\n{text}"
        )
        assert c["file"] not in text, f"absolute path shown at {width} columns"
    # Below ~120 columns the list layout: one header line per culprit, nothing wider than
    # the terminal (the code and fix are indented under it).
    if width < 120:
        assert "┃ file:line" not in text
        too_wide = [line for line in lines if len(line) > width]
        assert not too_wide, too_wide
        for c in culprits[:10]:
            header = next(line for line in lines if _shown_path(c, examples_dir) in line)
            assert header.lstrip().startswith(f"{c['rank']} "), header
    if width >= 200:
        assert "┃ file:line" in text  # room for the table layout


def test_demo_under_load_has_traffic(demo_profile: Path) -> None:
    traffic = summary(demo_profile)["traffic"]
    assert traffic["level"] == "ok", traffic
    assert traffic["warning"] is None


def test_run_without_load_says_no_traffic(tmp_path: Path, examples_dir: Path) -> None:
    out = tmp_path / "idle"
    port = free_port()
    done = asgiprof(
        "run",
        "--duration",
        "5",
        "--out",
        str(out),
        "--",
        *uvicorn_command("healthy", port),
        cwd=examples_dir,
        env={"COLUMNS": "100"},
        timeout_s=90.0,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "! no traffic:" in done.stdout, done.stdout
    assert "no requests were seen" in done.stdout
    traffic = summary(out)["traffic"]
    assert traffic["level"] == "none", traffic
    assert traffic["route_samples"] == 0
    assert traffic["idle_share"] > 0.9
    assert summary(out)["schema"] == 1
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'class="traffic-warning"' in html and "No traffic" in html
