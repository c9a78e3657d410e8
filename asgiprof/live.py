"""The live view while sampling: `top` for the event loop, one chunk at a time.

Each chunk that reached OUT/raw is read once, on its own (its own frame table), through the
analysis' public pieces: `LoopClassifier` says which thread runs the loop and whether a
sample is idle or busy, `RouteResolver` names the route, `is_user` finds the user's line.
Totals are kept by file, line and route, so the cost per chunk does not grow with the
length of the session, and nothing already counted is read again.

"Blocked" here is the quick estimate: a run of identical busy stacks on the loop thread
lasting at least the block threshold (a blocked call holds still). The report's numbers
come from the full analysis at the end, which weighs more evidence.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from asgiprof import store
from asgiprof.analyze.frames import is_user
from asgiprof.analyze.loop import STATE_BUSY, STATE_IDLE, LoopClassifier
from asgiprof.analyze.routes import RouteResolver
from asgiprof.analyze.torn import is_torn, loop_roots
from asgiprof.chunk_probe import read_chunk
from asgiprof.errors import CorruptProfileError
from asgiprof.model import RouteTable
from asgiprof.text import terminal_safe

_BARS = "▁▂▃▄▅▆▇█"
_SPARK_WIDTH = 30
TOP_LINES = 5
TOP_ROUTES = 5
NO_ROUTE = "(no route)"


def sparkline(values: list[float], width: int = _SPARK_WIDTH) -> str:
    """One bar per value in 0..1 (the latest `width` of them)."""
    shown = values[-width:]
    return "".join(_BARS[min(len(_BARS) - 1, max(0, round(v * (len(_BARS) - 1))))] for v in shown)


@dataclass(frozen=True, slots=True)
class ChunkStats:
    """What one chunk adds to the live view."""

    loop_s: float  # loop-thread time sampled (idle + busy)
    busy_s: float
    blocked_s: float
    threadpool_s: float  # time of other threads inside a route's code
    lines: dict[tuple[str, int, str, str], float]  # (file, line, function, route) -> s
    routes: dict[str, float]  # route -> seconds on the loop (busy)


def chunk_stats(
    data: bytes, pid: int, routes: RouteTable, rate_hz: int, span_s: float, threshold_s: float
) -> ChunkStats:
    """Read one py-spy chunk: loop time, busy and blocked time, lines and routes."""
    chunk = read_chunk(data, pid, rate_hz, routes)
    probe, threads = chunk.profile, chunk.threads
    frames, stacks = probe.frames, probe.stacks
    loop = LoopClassifier(probe)
    resolver = RouteResolver.for_profile(probe)
    longest = max((t.n_samples for t in threads), default=0)
    # As in the store: the longest thread spans the chunk (see place_samples).
    period = span_s / longest if longest and span_s > 0 else 1.0 / rate_hz
    period = min(period, 4.0 / rate_hz)
    loop_s = busy_s = blocked_s = pool_s = 0.0
    lines: dict[tuple[str, int, str, str], float] = defaultdict(float)
    by_route: dict[str, float] = defaultdict(float)
    for ts in threads:
        on_loop = loop.is_loop_thread(set(ts.stacks))
        roots = loop_roots(ts.stacks, stacks, loop) if on_loop else set()
        for sid, count in zip(ts.stacks, ts.counts, strict=True):
            seconds = count * period
            if not on_loop:
                if resolver.route_of(sid) is not None and stacks[sid]:
                    pool_s += seconds
                continue
            state = loop.classify(sid).state
            if is_torn(sid, stacks, roots, loop):
                # py-spy read only its innermost frames: busy loop time, as the analysis
                # counts it, with no route or line the panel could name from a chunk alone.
                loop_s += seconds
                busy_s += seconds
                by_route[NO_ROUTE] += seconds
                continue
            if state == STATE_IDLE:
                loop_s += seconds
            elif state == STATE_BUSY:
                loop_s += seconds
                busy_s += seconds
                route = resolver.route_of(sid) or NO_ROUTE
                by_route[route] += seconds
                if seconds >= threshold_s:
                    blocked_s += seconds
                    user = [frames[f] for f in stacks[sid] if is_user(frames[f])]
                    if user:
                        f = user[-1]
                        lines[(f.file, f.line, f.function, route)] += seconds
    return ChunkStats(loop_s, busy_s, blocked_s, pool_s, dict(lines), dict(by_route))


@dataclass(slots=True)
class LiveView:
    """Totals over the chunks read so far, and what the panel shows."""

    out: Path
    pid: int
    threshold_s: float
    chunks: int = 0
    loop_s: float = 0.0
    busy_s: float = 0.0
    blocked_s: float = 0.0
    threadpool_s: float = 0.0
    utilisation: list[float] = field(default_factory=list)
    blocked_share: list[float] = field(default_factory=list)
    lines: dict[tuple[str, int, str, str], float] = field(default_factory=dict)
    routes: dict[str, float] = field(default_factory=dict)
    problems: int = 0
    _routes: store.RoutesSoFar = field(init=False)

    def __post_init__(self) -> None:
        self._routes = store.RoutesSoFar(self.out)

    def add_chunk(self, index: int) -> None:
        """Read chunk `index` (its span and rate from its meta file) into the totals."""
        try:
            meta = store.read_chunk_meta(store.chunk_meta_path(self.out, index))
            data = store.chunk_path(self.out, index).read_bytes()
            stats = chunk_stats(
                data,
                self.pid,
                self._routes.table(),
                meta.rate_hz or 1,
                meta.end_s - meta.start_s,
                self.threshold_s,
            )
        except (OSError, CorruptProfileError):
            self.problems += 1
            return
        self.chunks += 1
        self.loop_s += stats.loop_s
        self.busy_s += stats.busy_s
        self.blocked_s += stats.blocked_s
        self.threadpool_s += stats.threadpool_s
        self.utilisation.append(stats.busy_s / stats.loop_s if stats.loop_s else 0.0)
        self.blocked_share.append(stats.blocked_s / stats.loop_s if stats.loop_s else 0.0)
        for key, s in stats.lines.items():
            self.lines[key] = self.lines.get(key, 0.0) + s
        for route, s in stats.routes.items():
            self.routes[route] = self.routes.get(route, 0.0) + s

    def render(self, status: str, sampling: str) -> RenderableType:
        """The panel: `status` (elapsed, what stops it) and `sampling` (coverage, rate,
        lag) are the session's words."""
        util = self.busy_s / self.loop_s if self.loop_s else 0.0
        blocked = self.blocked_s / self.loop_s if self.loop_s else 0.0
        head = Table.grid(padding=(0, 2))
        head.add_column(style="bold")
        head.add_column()
        head.add_column()
        head.add_row("loop busy", f"{util:6.1%}", Text(sparkline(self.utilisation), style="cyan"))
        head.add_row("blocked", f"{blocked:6.1%}", Text(sparkline(self.blocked_share), style="red"))
        head.add_row("threadpool", f"{self.threadpool_s:5.1f} s", "")
        parts: list[RenderableType] = [Text(terminal_safe(status)), head]
        if self.lines:
            top = Table(box=None, padding=(0, 1), header_style="bold", expand=False)
            top.add_column("blocking line (so far)", overflow="ellipsis", max_width=60)
            top.add_column("route", overflow="ellipsis", max_width=28)
            top.add_column("ms", justify="right")
            ranked = sorted(self.lines.items(), key=lambda kv: -kv[1])[:TOP_LINES]
            for (file, line, function, route), s in ranked:
                where = f"{Path(file).name}:{line} {function}"
                top.add_row(terminal_safe(where), terminal_safe(route), f"{s * 1000:.0f}")
            parts.append(top)
        if self.routes:
            rt = Table(box=None, padding=(0, 1), header_style="bold", expand=False)
            rt.add_column("route (loop time)", overflow="ellipsis", max_width=60)
            rt.add_column("ms", justify="right")
            for route, s in sorted(self.routes.items(), key=lambda kv: -kv[1])[:TOP_ROUTES]:
                rt.add_row(terminal_safe(route), f"{s * 1000:.0f}")
            parts.append(rt)
        parts.append(Text(terminal_safe(sampling), style="dim"))
        return Panel(Group(*parts), title="asgiprof live", title_align="left", expand=False)
