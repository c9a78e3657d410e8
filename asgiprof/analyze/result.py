"""The Analysis: the only object reporters read; it maps one to one onto summary.json.

Parameters arrive in `AnalysisParams`; every field of the result is plain data derived from
a `Profile` by the functions in this package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from asgiprof.model import Profile

Kind = Literal["cpu", "io", "unknown"]
LoopState = Literal["idle", "busy"]
ThreadRole = Literal["event-loop", "threadpool", "other"]

# Names of the flamegraph views every analysis provides (route views are "route:<name>").
VIEW_ALL = "all"
VIEW_LOOP = "loop"
VIEW_BLOCKING = "blocking"
VIEW_THREADPOOL = "threadpool"
ROUTE_VIEW_PREFIX = "route:"


@dataclass(frozen=True, slots=True)
class AnalysisParams:
    """Thresholds with their defaults (see bench/ for how they were chosen)."""

    # A synchronous stretch on the event-loop thread at least this long is a blocking
    # episode. 30 ms planted blocks must be found: at 100 Hz a 30 ms block holds ~3 samples.
    block_threshold_ms: float = 20.0
    # Culprit kind from measured CPU: cpu when the loop thread ran at least this share of
    # the blocked time, io when at most `io_max_cpu_ratio`, unknown in between.
    cpu_min_ratio: float = 0.7
    io_max_cpu_ratio: float = 0.3
    # An episode's kind is measured only when the loop idled this long before and after
    # it: sample times are estimates good to about 0.1 s (2 s chunks at 100 Hz).
    kind_margin_s: float = 0.1
    # Bins of the event-loop timeline (the report draws one column per bin).
    timeline_bins: int = 600


@dataclass(frozen=True, slots=True)
class Episode:
    """One blocking episode on an event-loop thread."""

    pid: int
    tid: int
    start_s: float
    duration_ms: float
    samples: int
    stack_id: int  # the stack seen for most of the episode
    culprit: tuple[str, int] | None  # (file, line) of the culprit frame
    route: str | None
    cpu_ratio: float | None  # loop-thread CPU time / wall time over the episode


@dataclass(frozen=True, slots=True)
class Culprit:
    rank: int
    file: str
    line: int
    function: str
    code: str | None
    route: str | None  # the route with the most blocked time at this line
    routes: tuple[str, ...]  # every route this line blocked under
    kind: Kind
    blocked_ms: float
    episodes: int
    max_ms: float
    stack: tuple[str, ...]  # representative stack, root first, "function (file:line)"
    stack_id: int
    advice: str | None
    cpu_ratio: float | None


@dataclass(frozen=True, slots=True)
class RouteStats:
    route: str
    samples: int
    loop_ms: float
    blocked_ms: float
    threadpool_ms: float


@dataclass(frozen=True, slots=True)
class LoopSummary:
    busy_ms: float
    blocked_ms: float
    idle_ms: float
    utilization: float  # busy / (busy + idle), 0..1
    longest_block_ms: float
    episodes: int
    threads: tuple[tuple[int, int], ...]  # (pid, tid) of event-loop threads


@dataclass(frozen=True, slots=True)
class TimelineBin:
    """Event-loop state over one slice of time, summed over event-loop threads."""

    start_s: float
    width_s: float
    idle_ms: float
    busy_ms: float  # busy but not in a blocking episode
    blocked_ms: float


@dataclass(slots=True)
class Analysis:
    params: AnalysisParams
    profile: Profile
    loop: LoopSummary
    episodes: list[Episode]
    culprits: list[Culprit]
    routes: list[RouteStats]
    timeline: list[TimelineBin]
    thread_roles: dict[tuple[int, int], ThreadRole]
    # Flamegraph inputs: view name -> {stack id: milliseconds}. Views: VIEW_* and
    # ROUTE_VIEW_PREFIX + route name.
    views: dict[str, dict[int, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # caveats shown to the user
