"""The terminal summary: loop figures, ranked culprits, routes. Target text is escaped."""

from __future__ import annotations

import os
import textwrap

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
    text.append(f"{loop.blocked_share:.0%} blocked", style="bold red" if loop.episodes else "bold")
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


# Below this width the culprits are a list (one header line each, code and fix under it):
# a table's columns would fold file:line and route character by character.
TABLE_MIN_WIDTH = 120
CODE_MIN_WIDTH = 20  # the table layout needs this much room left for the code column
TABLE_OVERHEAD = 3 * 8 + 1  # borders and padding of the eight-column table


def display_path(file: str, root: str) -> str:
    """`file` relative to the app's root (the server's working directory) when inside it,
    the part after `site-packages/` for libraries, else as the target saw it."""
    if root:
        prefix = root.rstrip("/\\") + os.sep
        if file.startswith(prefix):
            return file[len(prefix) :]
    for marker in ("site-packages/", "dist-packages/"):
        _, found, rest = file.rpartition(marker)
        if found:
            return rest
    return file


def _where_text(analysis: Analysis, c: Culprit) -> str:
    return f"{display_path(c.file, analysis.profile.target.cwd)}:{c.line}"


def _context(c: Culprit) -> str:
    if c.context in ("middleware", "dependency") and c.context_name:
        return f"{c.context} {c.context_name}"
    return c.function


def _route_text(c: Culprit) -> str:
    route = c.route or "-"
    return f"{route} +{len(c.routes) - 1}" if len(c.routes) > 1 else route


def _no_culprits(analysis: Analysis) -> Text:
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
    text = Text(
        "No blocking culprits: nothing in your code held the event loop for "
        f">= {analysis.params.block_threshold_ms:.0f} ms",
        style="green",
    )
    if analysis.traffic.level != "ok":
        text.append(" (but see the traffic warning: too little was seen to be sure)", "yellow")
    text.append(".", style="green")
    return text


def _shown(analysis: Analysis, limit: int) -> list[tuple[Culprit, list[Culprit]]]:
    """The first `limit` culprits that lead a block or stand alone, each with the other
    lines of its block (see analyze/blocks.py): one entry, one fix."""
    return analysis.culprit_blocks()[:limit]


def _block_text(analysis: Analysis, members: list[Culprit]) -> str:
    lines = ", ".join(f"{m.line} ({_fmt_ms(m.blocked_ms)})" for m in members)
    return f"with line{'s' if len(members) > 1 else ''} {lines} of the same block"


def _more(analysis: Analysis, limit: int) -> Text | None:
    shown = sum(1 + len(members) for _, members in _shown(analysis, limit))
    more = len(analysis.culprits) - shown
    if more <= 0:
        return None
    return Text(f"+{more} more culprit{'s' if more > 1 else ''} in report.html", style="dim")


def table_fits(analysis: Analysis, width: int, limit: int = 10) -> bool:
    """Whether the table layout shows every file:line and route whole at `width`."""
    if width < TABLE_MIN_WIDTH:
        return False
    shown = [c for c, _ in _shown(analysis, limit)]
    where = max((len(_where_text(analysis, c)) for c in shown), default=9)
    route = max(
        (
            max(len(_route_text(c)), len(_context(c)) if c.context != "endpoint" else 0)
            for c in shown
        ),
        default=5,
    )
    fixed = 2 + route + where + len("unknown") + 8 + len("episodes") + 8
    return fixed + TABLE_OVERHEAD + CODE_MIN_WIDTH <= width


def culprits_table(analysis: Analysis, limit: int = 10) -> Table | Text:
    if not analysis.culprits:
        return _no_culprits(analysis)
    table = Table(title="Blocking culprits (lines that held the event loop)", title_justify="left")
    for col, kw in (
        ("#", {"justify": "right", "no_wrap": True}),
        ("route", {"no_wrap": True}),
        ("file:line", {"no_wrap": True}),
        ("code", {"overflow": "fold", "min_width": CODE_MIN_WIDTH}),
        ("kind", {"no_wrap": True}),
        ("blocked", {"justify": "right", "no_wrap": True}),
        ("episodes", {"justify": "right", "no_wrap": True}),
        ("max", {"justify": "right", "no_wrap": True}),
    ):
        table.add_column(col, **kw)
    for c, members in _shown(analysis, limit):
        code = Text((c.code or "").strip())
        if members:
            code.append("\n" + _block_text(analysis, members), style="dim")
        table.add_row(
            str(c.rank),
            _where(c),
            Text(_where_text(analysis, c)),
            code,
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


def _pieces_lines(pieces: list[Text], width: int, indent: str) -> list[Text]:
    """Lay out `pieces` (each kept whole) two spaces apart, a new indented line when the
    next one would pass `width`; a piece longer than a line gets a line of its own."""
    lines: list[Text] = []
    line = Text()
    for piece in pieces:
        if line.plain.strip() and len(line.plain) + 2 + len(piece.plain) > width:
            lines.append(line)
            line = Text(indent)
        elif line.plain.strip():
            line.append("  ")
        line.append_text(piece)
    if line.plain.strip():
        lines.append(line)
    for text in lines:
        # Never folded by rich: a path or route cut in two reads as a different one.
        text.no_wrap = True
        text.overflow = "ignore"
    return lines


def _wrapped(label: str, body: str, width: int, indent: str, style: str = "") -> Text:
    """`label body` wrapped at spaces (runs of spaces kept), continuation lines indented."""
    rows = textwrap.wrap(
        f"{label} {body}" if label else body,
        width=max(20, width),
        initial_indent=indent,
        subsequent_indent=indent,
        break_on_hyphens=False,
        break_long_words=False,
    )
    text = Text("\n".join(rows), style=style)
    text.no_wrap = True
    text.overflow = "ignore"
    return text


def culprits_list(analysis: Analysis, width: int, limit: int = 10) -> Group | Text:
    """Narrow layout: per culprit, one line with rank, time, kind, file:line, context and
    route, then its code and fix indented under it."""
    if not analysis.culprits:
        return _no_culprits(analysis)
    indent = "    "
    parts: list[Text] = [Text("Blocking culprits (lines that held the event loop)", style="bold")]
    for c, members in _shown(analysis, limit):
        pieces = [
            Text(f"{c.rank:>2}", style="bold"),
            Text(f"{_fmt_ms(c.blocked_ms):>7}", style="bold red"),
            Text(c.kind, style=KIND_STYLE[c.kind]),
            Text(_where_text(analysis, c), style="bold"),
            Text(_context(c), style="yellow" if c.context != "endpoint" else ""),
            Text(_route_text(c)),
        ]
        parts.extend(_pieces_lines(pieces, width, indent))
        parts.append(
            Text(f"{indent}{c.episodes} episodes, longest {_fmt_ms(c.max_ms)}", style="dim")
        )
        if c.code:
            parts.append(_wrapped("", c.code.strip(), width, indent, style="cyan"))
        if members:
            parts.append(_wrapped("", _block_text(analysis, members), width, indent, "dim"))
        if c.kind_reason:
            parts.append(_wrapped("kind unknown:", c.kind_reason, width, indent, style="dim"))
        if c.advice:
            parts.append(_wrapped("fix:", c.advice, width, indent))
        if c.context == "dependency" and len(c.routes) > 1:
            parts.append(_wrapped("used by:", ", ".join(c.routes), width, indent, style="dim"))
    return Group(*parts)


def advice_lines(analysis: Analysis, limit: int = 10) -> Text:
    text = Text()
    for c, _members in _shown(analysis, limit):
        if c.advice:
            text.append(f"#{c.rank} ", style="bold")
            text.append(f"{c.function}: ")
            text.append(c.advice + "\n")
            if c.kind_reason:
                text.append(f"   kind unknown: {c.kind_reason}\n", style="dim")
            if c.calls:
                chain = " -> ".join(call.split(" (", 1)[0] for call in c.calls[:CHAIN_CALLS])
                more = " -> ..." if len(c.calls) > CHAIN_CALLS else ""
                text.append(f"   calls: {chain}{more}\n", style="dim")
            if c.context == "dependency" and len(c.routes) > 1:
                text.append(f"   used by: {', '.join(c.routes)}\n", style="dim")
    return text


def findings_lines(analysis: Analysis, width: int = 100) -> Text | None:
    if not analysis.findings:
        return None
    text = Text()
    text.append("Findings\n", style="bold")
    for f in analysis.findings:
        text.append("! " if f.severity == "warning" else "- ", style=SEVERITY_STYLE[f.severity])
        text.append(f.title + "\n", style=SEVERITY_STYLE[f.severity])
        detail = _relative_paths(f.detail, analysis.profile.target.cwd)
        text.append_text(_wrapped("", detail, width, "  "))
        text.append("\n")
        text.append_text(_wrapped("fix:", f.advice, width, "  ", style="dim"))
        text.append("\n")
    return text


def _relative_paths(text: str, root: str) -> str:
    """Paths inside the app's root shown relative to it, as in the culprit list."""
    return text.replace(root.rstrip("/\\") + os.sep, "") if root else text


def middleware_table(analysis: Analysis, limit: int = 20) -> Table | None:
    m = analysis.middleware
    # Every layer, at 0 ms too: the count of layers a request passes is part of the story.
    layers = m.middleware_layers
    if not any(layer.self_ms > 0 for layer in layers) or m.request_ms <= 0:
        return None
    table = Table(
        title=f"Middleware: own time per layer (of {_fmt_ms(m.request_ms)} request time "
        "on the event loop)",
        title_justify="left",
    )
    for col in ("#", "layer", "where", "self", "share", "blocked"):
        table.add_column(col, justify="left" if col in ("layer", "where") else "right")
    for number, layer in enumerate(sorted(layers, key=lambda x: x.order)[:limit], start=1):
        table.add_row(
            str(number),
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


def dependencies_table(analysis: Analysis, limit: int = 10, width: int = 120) -> Table | None:
    deps = analysis.dependencies.dependencies
    if not deps:
        return None
    table = Table(title="Dependencies (FastAPI Depends)", title_justify="left")
    name_width = min(24, max(12, *(len(d.name) for d in deps[:limit])))
    table.add_column("dependency", width=name_width, overflow="fold")
    fixed = {"runs on": 10, "loop": 8, "blocked": 8, "threadpool": 10}
    for col, col_width in fixed.items():
        justify = "left" if col == "runs on" else "right"
        table.add_column(col, justify=justify, no_wrap=True, width=col_width)  # type: ignore[arg-type]
    # One route per row, never folded: `GET /api/v1/...` cut in two reads as another route;
    # what does not fit ends in an ellipsis. 6 columns: 7 borders, 2 padding each.
    room = width - name_width - sum(fixed.values()) - 7 - 2 * 6
    table.add_column("routes", no_wrap=True, overflow="ellipsis", max_width=max(16, room))
    for d in deps[:limit]:
        table.add_row(
            Text(d.name),
            d.runs_on,
            _fmt_ms(d.loop_ms),
            _fmt_ms(d.blocked_ms) if d.blocked_ms else "-",
            _fmt_ms(d.threadpool_ms),
            Text("\n".join(_shares(d.routes, d.shares)) or "-"),
        )
    return table


def _shares(routes: tuple[str, ...], shares: tuple[float, ...]) -> list[str]:
    """One route a line (a route is never folded), with its share of the dependency."""
    if len(shares) != len(routes) or len(routes) < 2:
        return list(routes)
    return [f"{r} {s:.0%}" for r, s in zip(routes, shares, strict=True)]


def dependencies_list(analysis: Analysis, width: int, limit: int = 10) -> Group | None:
    """Narrow layout: per dependency one line of figures, then the routes using it, one a
    line (a route is never folded)."""
    deps = analysis.dependencies.dependencies
    if not deps:
        return None
    parts: list[Text] = [Text("Dependencies (FastAPI Depends)", style="bold")]
    for d in deps[:limit]:
        blocked = f", {_fmt_ms(d.blocked_ms)} blocked" if d.blocked_ms else ""
        pieces = [
            Text(d.name, style="bold"),
            Text(f"runs on {d.runs_on}"),
            Text(f"loop {_fmt_ms(d.loop_ms)}{blocked}"),
            Text(f"threadpool {_fmt_ms(d.threadpool_ms)}"),
        ]
        parts.extend(_pieces_lines(pieces, width, "    "))
        for route in _shares(d.routes, d.shares):
            line = Text(f"    {route}", style="dim")
            line.no_wrap, line.overflow = True, "ignore"
            parts.append(line)
    return Group(*parts)


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
    r = analysis.resources
    warmup_s = r.warmup_s
    text = Text()
    for proc in r.processes:
        keep = r.after_warmup(proc)
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
        since = "the first request" if r.first_request_s is not None else "the first poll"
        text.append(
            f" (over {proc.t_s[last] - proc.t_s[first]:.0f} s, after a {warmup_s:.0f} s "
            f"warm-up from {since})\n",
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


def traffic_line(analysis: Analysis, width: int) -> Text | None:
    warning = analysis.traffic.warning
    if warning is None:
        return None
    head = "no traffic" if analysis.traffic.level == "none" else "little traffic"
    text = Text(f"! {head}:", style="bold yellow")
    body = _wrapped("", warning, width, "  ", style="yellow")
    return Text("\n").join([text, body])


def print_summary(analysis: Analysis, console: Console) -> None:
    limit = 10
    wide = table_fits(analysis, console.width, limit)
    parts: list[object] = [loop_panel(analysis)]
    fleet = fleet_table(analysis)
    if fleet is not None:
        parts.append(fleet)
    traffic = traffic_line(analysis, console.width)
    if traffic is not None:
        parts.append(traffic)
    if wide:
        parts.append(culprits_table(analysis, limit))
    else:
        parts.append(culprits_list(analysis, console.width, limit))
    more = _more(analysis, limit)
    if more is not None:
        parts.append(more)
    if wide:
        adv = advice_lines(analysis, limit)
        if adv.plain:
            parts.append(adv)
    rt = routes_table(analysis)
    if rt is not None:
        parts.append(rt)
    sections = (
        middleware_table(analysis),
        dependencies_table(analysis, width=console.width)
        if wide
        else dependencies_list(analysis, console.width),
        threadpool_line(analysis),
        resources_lines(analysis),
        findings_lines(analysis, console.width),
    )
    parts.extend(section for section in sections if section is not None)
    parts.extend(Text(f"note: {note}", style="yellow") for note in analysis.notes)
    # Names, paths and code come from the target: never let them drive the terminal.
    # Not cropped: a path longer than the terminal is shown whole (the terminal wraps it)
    # rather than cut into a different, valid-looking one.
    console.print(Printable(Group(*parts)), crop=False)  # type: ignore[arg-type]


__all__ = ["print_summary", "escape"]
