"""The terminal summary's layout, from the hostile sample analysis (four culprits)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from rich.console import Console

from asgiprof.analyze.blocks import group_blocks
from asgiprof.analyze.result import Culprit, TrafficSummary
from asgiprof.reporters.terminal import display_path, print_summary
from tests.reporter_fixtures import sample_analysis


def _render(width: int, **changes: object) -> list[str]:
    analysis = sample_analysis()
    for name, value in changes.items():
        setattr(analysis, name, value)
    console = Console(width=width, record=True, color_system=None)
    print_summary(analysis, console)
    return console.export_text().splitlines()


def test_paths_relative_to_the_app_root() -> None:
    assert display_path("/srv/app/api/users.py", "/srv/app") == "api/users.py"
    assert display_path("/srv/application.py", "/srv/app") == "/srv/application.py"
    lib = "/venv/lib/python3.12/site-packages/httpx/_client.py"
    assert display_path(lib, "/srv/app") == "httpx/_client.py"


@pytest.mark.parametrize("width", [80, 120, 200])
def test_more_culprits_than_shown_are_counted(width: int) -> None:
    analysis = sample_analysis()
    many = [replace(analysis.culprits[0], rank=i + 1, line=100 + i) for i in range(13)]
    lines = _render(width, culprits=many)
    assert "+3 more culprits in report.html" in lines


@pytest.mark.parametrize("level", ["none", "low"])
def test_traffic_warning_is_shown_first(level: str) -> None:
    traffic = TrafficSummary(level, 0, 0.0, 0.99, warning=f"{level} warning text")  # type: ignore[arg-type]
    lines = _render(100, traffic=traffic)
    head = "no traffic" if level == "none" else "little traffic"
    warned = [i for i, line in enumerate(lines) if line.startswith(f"! {head}")]
    assert warned, lines
    culprits = next(i for i, line in enumerate(lines) if line.startswith("Blocking culprits"))
    assert warned[0] < culprits


def test_middleware_layers_are_numbered_from_one_without_gaps() -> None:
    lines = _render(200)
    start = next(i for i, line in enumerate(lines) if line.startswith("Middleware: own time"))
    numbers = []
    for line in lines[start + 4 :]:  # title, top border, header, rule
        cells = [c.strip() for c in line.strip("│").split("│")]
        if not line.startswith("│"):
            break
        if cells[0].isdigit():
            numbers.append(int(cells[0]))
    assert numbers and numbers == list(range(1, len(numbers) + 1)), numbers


def test_a_path_longer_than_the_terminal_is_shown_whole() -> None:
    analysis = sample_analysis()
    long = "/srv/app/" + "very_long_package_name/" * 4 + "module_with_a_long_name.py"
    first = replace(analysis.culprits[0], file=long)
    lines = _render(60, culprits=[first, *analysis.culprits[1:]])
    shown = f"{display_path(long, '/srv/app')}:{first.line}"
    assert any(shown in line for line in lines), [x for x in lines if "very_long" in x]


def _line(base: Culprit, rank: int, line: int, ms: float, function: str = "audit") -> Culprit:
    return replace(
        base, rank=rank, line=line, blocked_ms=ms, function=function, code=f"line {line}"
    )


def test_neighbouring_lines_of_one_function_are_one_block() -> None:
    base = sample_analysis().culprits[0]
    culprits = [
        _line(base, 1, 41, 300.0),  # f = open(...)
        _line(base, 2, 90, 250.0, "other"),
        _line(base, 3, 43, 200.0),  # f.write(...)   (a blank line between)
        _line(base, 4, 44, 100.0),  # os.fsync(...)
        _line(base, 5, 60, 50.0),  # far from the block: a line of its own
    ]
    grouped = group_blocks(culprits)
    assert [c.block_of for c in grouped] == [None, None, 1, 1, None]
    # The terminal shows the block once, led by its top line, and counts nothing twice.
    for width in (80, 200):
        lines = _render(width, culprits=grouped)
        text = "\n".join(lines)
        assert "with lines 43 (200 ms), 44 (100 ms) of the same block" in " ".join(text.split())
        assert not any(line.lstrip().startswith("3 ") for line in lines), text
        assert "line 43" not in text and "line 44" not in text  # not shown as entries
        assert "more culprits" not in text
