"""The terminal summary: loop figures, ranked culprits, routes. Target text is escaped."""

from __future__ import annotations

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from asgiprof.analyze.result import Analysis, Culprit
from asgiprof.text import Printable

KIND_STYLE = {"cpu": "magenta", "io": "cyan", "unknown": "dim"}
SEVERITY_STYLE = {"warning": "bold yellow", "info": "cyan"}
METRIC_LABEL = {"rss_bytes": "RSS", "fds": "fds", "threads": "threads", "connections": "conns"}
MIB = 1024 * 1024
CHAIN_CALLS = 4  # library calls shown under a culprit's advice


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
    runs = len(analysis.fleet.sources)
    if runs:  # merged: the runs are overlaid from 0 s, their samples add up
        text.append(
            f"\n{runs} runs merged: the longest sampled {s.duration_s:.1f} s at {s.rate_hz} Hz, "
            f"{s.samples} samples in all"
        )
    else:
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
    load = analysis.profile.load
    if load is not None:
        text.append(f"\nload: {load.command[:160]}: ")
        requests = f", {load.requests} requests" if load.requests is not None else ""
        if load.failure is not None:
            text.append(f"{load.failure}{requests}", style="bold red")
        else:
            how = "exited 0" if load.stopped_by == "exit" else f"stopped ({load.stopped_by})"
            text.append(f"{how}{requests}")
    return Panel(text, title="asgiprof", title_align="left")


def culprits_table(analysis: Analysis, limit: int = 10) -> Table | Text:
    if not analysis.culprits:
        loop = analysis.loop
        if loop.episodes:
            # The header counts these episodes: say why none has a line, never "nothing".
            return Text(
                f"No blocking culprits: the {loop.episodes} blocking episode(s) "
                f"({_fmt_ms(loop.blocked_ms)}) had no single line of your code holding the "
                "loop (framework or library code, the GIL, or many short callbacks): see the "
                "notes below and the 'blocking' flamegraph.",
                style="yellow",
            )
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
            _where(c),
            Text(f"{c.file}:{c.line}"),
            Text((c.code or "").strip()),
            Text(c.kind, style=KIND_STYLE[c.kind]),
            _fmt_ms(c.blocked_ms),
            str(c.episodes),
            _fmt_ms(c.max_ms),
        )
    return table


def _where(c: Culprit) -> Text:
    """The route column: the route(s), and the middleware or dependency the line is in."""
    text = Text(c.route or "-")
    if len(c.routes) > 1:
        text.append(f" +{len(c.routes) - 1}", style="dim")
    if c.context in ("middleware", "dependency") and c.context_name:
        text.append(f"\n{c.context} {c.context_name}", style="yellow")
    return text


def advice_lines(analysis: Analysis, limit: int = 5) -> Text:
    text = Text()
    for c in analysis.culprits[:limit]:
        if c.advice:
            text.append(f"#{c.rank} ", style="bold")
            text.append(f"{c.function}: ")
            text.append(c.advice + "\n")
            if c.calls:
                chain = " -> ".join(call.split(" (", 1)[0] for call in c.calls[:CHAIN_CALLS])
                more = " -> ..." if len(c.calls) > CHAIN_CALLS else ""
                text.append(f"   calls: {chain}{more}\n", style="dim")
            if c.context == "dependency" and len(c.routes) > 1:
                text.append(f"   used by: {', '.join(c.routes)}\n", style="dim")
    return text


def findings_lines(analysis: Analysis) -> Text | None:
    if not analysis.findings:
        return None
    text = Text()
    text.append("Findings\n", style="bold")
    for f in analysis.findings:
        text.append("! " if f.severity == "warning" else "- ", style=SEVERITY_STYLE[f.severity])
        text.append(f.title + "\n", style=SEVERITY_STYLE[f.severity])
        text.append(f"  {f.detail}\n")
        text.append(f"  fix: {f.advice}\n", style="dim")
    return text


def middleware_table(analysis: Analysis, limit: int = 20) -> Table | None:
    m = analysis.middleware
    # Every layer, at 0 ms too: the count of layers a request passes is part of the story.
    layers = [layer for layer in m.layers if layer.role == "middleware"]
    if not any(layer.self_ms > 0 for layer in layers) or m.request_ms <= 0:
        return None
    table = Table(
        title=f"Middleware: own time per layer (of {_fmt_ms(m.request_ms)} request time "
        "on the event loop)",
        title_justify="left",
    )
    for col in ("#", "layer", "where", "self", "share", "blocked"):
        table.add_column(col, justify="left" if col in ("layer", "where") else "right")
    for layer in sorted(layers, key=lambda x: x.order)[:limit]:
        table.add_row(
            str(layer.order),
            Text(layer.name),
            Text(layer.origin, style="bold" if layer.origin == "user" else "dim"),
            _fmt_ms(layer.self_ms),
            f"{layer.share:.0%}",
            _fmt_ms(layer.blocked_ms) if layer.blocked_ms else "-",
        )
    table.add_row(
        "",
        Text("router + endpoints", style="dim"),
        "",
        _fmt_ms(m.route_ms),
        f"{m.route_ms / m.request_ms:.0%}",
        "",
    )
    table.add_row(
        "",
        Text("server", style="dim"),
        "",
        _fmt_ms(m.server_ms),
        f"{m.server_ms / m.request_ms:.0%}",
        "",
    )
    return table


def dependencies_table(analysis: Analysis, limit: int = 10) -> Table | None:
    deps = analysis.dependencies.dependencies
    if not deps:
        return None
    table = Table(title="Dependencies (FastAPI Depends)", title_justify="left")
    for col in ("dependency", "runs on", "loop", "blocked", "threadpool", "routes"):
        justify = "right" if col in ("loop", "blocked", "threadpool") else "left"
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for d in deps[:limit]:
        table.add_row(
            Text(d.name),
            d.runs_on,
            _fmt_ms(d.loop_ms),
            _fmt_ms(d.blocked_ms) if d.blocked_ms else "-",
            _fmt_ms(d.threadpool_ms),
            Text(_shares(d.routes, d.shares) or "-"),
        )
    return table


def _shares(routes: tuple[str, ...], shares: tuple[float, ...]) -> str:
    if len(shares) != len(routes) or len(routes) < 2:
        return ", ".join(routes)
    return ", ".join(f"{r} {s:.0%}" for r, s in zip(routes, shares, strict=True))


def threadpool_line(analysis: Analysis) -> Text | None:
    t = analysis.threadpool
    if not t.workers_seen:
        return None
    text = Text("threadpool: ")
    text.append(f"{t.max_busy}/{t.limit} workers busy at most", style="bold")
    text.append(f", {t.mean_busy:.1f} on average, {t.workers_seen} worker threads seen")
    if t.at_limit_ms > 0:
        text.append(
            f"; all busy {_fmt_ms(t.at_limit_ms)} ({t.at_limit_share:.0%})", style="bold red"
        )
    holders = [h for h in t.holders if h.kind != "other"][:3]
    if holders:
        text.append("; held by " + ", ".join(f"{h.name} {h.share:.0%}" for h in holders))
    return text


def resources_lines(analysis: Analysis) -> Text | None:
    """Per process: each metric's first and last poll after the warm-up, leaks marked."""
    warmup_s = analysis.resources.warmup_s
    text = Text()
    for proc in analysis.resources.processes:
        keep = [i for i, t in enumerate(proc.t_s) if t >= proc.t_s[0] + warmup_s]
        if len(keep) < 2:
            continue
        first, last = keep[0], keep[-1]
        leaks = {g.metric for g in proc.growth if g.leak}
        text.append(f"resources PID {proc.pid}: ")
        for k, (metric, values) in enumerate(
            (
                ("rss_bytes", proc.rss_bytes),
                ("fds", proc.fds),
                ("threads", proc.threads),
                ("connections", proc.connections),
            )
        ):
            a, b = values[first], values[last]
            if a < 0 or b < 0:
                continue
            if metric == "rss_bytes":
                shown = f"{a / MIB:.0f}->{b / MIB:.0f} MiB"
            else:
                shown = f"{a}->{b}"
            text.append(", " if k else "")
            text.append(
                f"{METRIC_LABEL[metric]} {shown}",
                style="bold red" if metric in leaks else "",
            )
        text.append(
            f" (after {warmup_s:.0f} s warm-up, over {proc.t_s[last] - proc.t_s[first]:.0f} s)\n",
            style="dim",
        )
    return text if text.plain else None


def routes_table(analysis: Analysis, limit: int = 15) -> Table | None:
    if not analysis.routes:
        return None
    by_requests = analysis.routes_evidence == "access-log"
    if by_requests:
        caption = "shared dependencies and request overhead split by requests in the access log"
    else:
        caption = "shared dependencies split by endpoint samples (no access log)"
        if analysis.request_overhead_ms > 0:
            caption += (
                f"; {_fmt_ms(analysis.request_overhead_ms)} of request overhead (server, "
                "middleware, framework) in no route"
            )
    table = Table(
        title="Routes (endpoint + share of its dependencies and request overhead)",
        title_justify="left",
        caption=caption,
        caption_justify="left",
    )
    columns = ["route", "samples", "loop", "blocked", "threadpool", "from deps"]
    if by_requests:
        columns[1:1] = ["requests"]
        columns.append("overhead")
    for col in columns:
        table.add_column(col, justify="left" if col == "route" else "right")
    for r in analysis.routes[:limit]:
        cells = [
            str(r.samples),
            _fmt_ms(r.loop_ms),
            _fmt_ms(r.blocked_ms),
            _fmt_ms(r.threadpool_ms),
            _fmt_ms(r.dependency_ms) if r.dependency_ms else "-",
        ]
        if by_requests:
            cells.insert(0, str(r.requests or 0))
            cells.append(_fmt_ms(r.overhead_ms))
        table.add_row(Text(r.route), *cells)
    return table


def fleet_table(analysis: Analysis) -> Table | None:
    """The runs of a merged profile (`asgiprof merge`): their own loop figures, and where
    the top culprit blocked."""
    fleet = analysis.fleet
    if not fleet.sources:
        return None
    top = analysis.culprits[0] if analysis.culprits else None
    shares = {
        sh.source: sh.blocked_ms
        for sh in (fleet.culprit_sources.get((top.file, top.line), ()) if top else ())
    }
    table = Table(title=f"Fleet: {len(fleet.sources)} runs merged", title_justify="left")
    for col in ("run", "pids", "samples", "loop busy", "blocked", "episodes", "culprit #1"):
        table.add_column(col, justify="left" if col in ("run", "pids") else "right")
    for src in fleet.sources:
        table.add_row(
            Text(src.name),
            Text(", ".join(str(original) for _, original in src.pids)),
            str(src.samples),
            _fmt_ms(src.busy_ms),
            _fmt_ms(src.blocked_ms),
            str(src.episodes),
            _fmt_ms(shares[src.name]) if src.name in shares else "-",
        )
    return table


def print_summary(analysis: Analysis, console: Console) -> None:
    parts: list[object] = [loop_panel(analysis)]
    fleet = fleet_table(analysis)
    if fleet is not None:
        parts.append(fleet)
    parts.append(culprits_table(analysis))
    adv = advice_lines(analysis)
    if adv.plain:
        parts.append(adv)
    rt = routes_table(analysis)
    if rt is not None:
        parts.append(rt)
    sections = (
        middleware_table(analysis),
        dependencies_table(analysis),
        threadpool_line(analysis),
        resources_lines(analysis),
        findings_lines(analysis),
    )
    parts.extend(section for section in sections if section is not None)
    parts.extend(Text(f"note: {note}", style="yellow") for note in analysis.notes)
    # Names, paths and code come from the target: never let them drive the terminal.
    console.print(Printable(Group(*parts)))  # type: ignore[arg-type]


__all__ = ["print_summary", "escape"]
