"""`asgiprof report` (and the end of `run`, `attach`, `merge`): load_profile -> analyze ->
reporters, from a saved output directory alone.

    store.load_profile(OUT)  ->  analyze(profile)  ->  reporters.write_all(analysis, OUT)
"""

from __future__ import annotations

import os
import sys
import webbrowser
from pathlib import Path

from rich.console import Console
from rich.text import Text

from asgiprof import store
from asgiprof.analyze import analyze
from asgiprof.analyze.result import Analysis, AnalysisParams
from asgiprof.merge import is_merge, load_merged, load_runs, write_merge_file
from asgiprof.reporters import write_all
from asgiprof.reporters.terminal import print_summary
from asgiprof.store.sources import SourceCache


def render(out: Path, params: AnalysisParams, console: Console, open_browser: bool) -> Analysis:
    """Analyse a saved output directory and (re)write every artifact."""
    profile = load_merged(out) if is_merge(out) else store.load_profile(out)
    sources = SourceCache.load(out)
    analysis = analyze(profile, params, sources.read_line)
    sources.save(out)
    write_all(analysis, out)
    print_summary(analysis, console)
    report = out / "report.html"
    console.print(
        Text(
            f"\nwrote {out}/: summary.json, report.html, profile.speedscope.json, stacks.folded, "
            "profile.pb.gz"
        )
    )
    if open_browser and report.exists():
        open_report(report.resolve().as_uri(), console)
    return analysis


def merge_runs(
    dirs: list[Path], out: Path | None, params: AnalysisParams, console: Console, open_: bool
) -> Analysis:
    """Merge saved runs of one app into a new output directory and report on them all."""
    named = load_runs(dirs)
    out = store.prepare_out_dir(out or store.default_out_dir())
    write_merge_file(out, named)
    return render(out, params, console, open_)


def _has_display() -> bool:
    """Whether a graphical browser could open: on Linux and the BSDs only with a display
    (without one, webbrowser may start a text browser in this terminal, or nothing)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_report(uri: str, console: Console) -> None:
    """Open the report in a browser, or say where it is when none can open here."""
    opened = False
    if _has_display():
        try:
            opened = webbrowser.open(uri)
        except webbrowser.Error:
            opened = False
    if not opened:
        # One unbroken line: a URL folded at the terminal width cannot be copied.
        console.print(Text(f"no browser to open here (no display): open {uri}"), soft_wrap=True)
