"""The terminal summary: loop figures, ranked culprits, routes. Target text is escaped."""

from __future__ import annotations

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from asgiprof.analyze.result import Analysis

KIND_STYLE = {"cpu": "magenta", "io": "cyan", "unknown": "dim"}


def _fmt_ms(ms: float) -> str:
    return f"{ms / 1000:.2f} s" if ms >= 10_000 else f"{ms:.0f} ms"


def loop_panel(analysis: Analysis) -> Panel:
    loop = analysis.loop
    s = analysis.profile.sampling
    t = analysis.profile.target
    active = loop.busy_ms + loop.idle_ms
    blocked_share = loop.blocked_ms / active if active else 0.0
    text = Text()
    text.append(f"{t.server} ", style="bold")
    text.append(" ".join(t.command)[:200])
    text.append(f"\nsampled {s.duration_s:.1f} s at {s.rate_hz} Hz, {s.samples} samples")
    if s.errors:
        text.append(f" ({s.errors} py-spy errors)", style="yellow")
    text.append("\nevent loop: ")
    text.append(f"{loop.utilization:.0%} busy", style="bold")
    text.append(", ")
    text.append(f"{blocked_share:.0%} blocked", style="bold red" if loop.episodes else "bold")
    text.append(
        f" ({_fmt_ms(loop.blocked_ms)} in {loop.episodes} episodes of "
        f">= {analysis.params.block_threshold_ms:.0f} ms; longest {_fmt_ms(loop.longest_block_ms)})"
    )
    return Panel(text, title="asgiprof", title_align="left")


def culprits_table(analysis: Analysis, limit: int = 10) -> Table | Text:
    if not analysis.culprits:
        return Text(
            "No blocking culprits: nothing in your code held the event loop for "
            f">= {analysis.params.block_threshold_ms:.0f} ms.",
            style="green",
        )
    table = Table(title="Blocking culprits (lines that held the event loop)", title_justify="left")
    for col, kw in (
        ("#", {"justify": "right"}),
        ("route", {}),
        ("file:line", {"overflow": "fold"}),
        ("code", {"overflow": "fold"}),
        ("kind", {}),
        ("blocked", {"justify": "right"}),
        ("episodes", {"justify": "right"}),
        ("max", {"justify": "right"}),
    ):
        table.add_column(col, **kw)  # type: ignore[arg-type]
    for c in analysis.culprits[:limit]:
        table.add_row(
            str(c.rank),
            Text(c.route or "-"),
            Text(f"{c.file}:{c.line}"),
            Text((c.code or "").strip()),
            Text(c.kind, style=KIND_STYLE[c.kind]),
            _fmt_ms(c.blocked_ms),
            str(c.episodes),
            _fmt_ms(c.max_ms),
        )
    return table


def advice_lines(analysis: Analysis, limit: int = 5) -> Text:
    text = Text()
    for c in analysis.culprits[:limit]:
        if c.advice:
            text.append(f"#{c.rank} ", style="bold")
            text.append(f"{c.function}: ")
            text.append(c.advice + "\n")
    return text


def routes_table(analysis: Analysis, limit: int = 15) -> Table | None:
    if not analysis.routes:
        return None
    table = Table(title="Routes", title_justify="left")
    for col in ("route", "samples", "loop", "blocked", "threadpool"):
        table.add_column(col, justify="left" if col == "route" else "right")
    for r in analysis.routes[:limit]:
        table.add_row(
            Text(r.route),
            str(r.samples),
            _fmt_ms(r.loop_ms),
            _fmt_ms(r.blocked_ms),
            _fmt_ms(r.threadpool_ms),
        )
    return table


def print_summary(analysis: Analysis, console: Console) -> None:
    parts: list[object] = [loop_panel(analysis), culprits_table(analysis)]
    adv = advice_lines(analysis)
    if adv.plain:
        parts.append(adv)
    rt = routes_table(analysis)
    if rt is not None:
        parts.append(rt)
    parts.extend(Text(f"note: {note}", style="yellow") for note in analysis.notes)
    console.print(Group(*parts))  # type: ignore[arg-type]


__all__ = ["print_summary", "escape"]
