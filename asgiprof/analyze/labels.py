"""Per-sample labels for exporters that keep samples apart (pprof): the analysis decides
every label, the reporter only writes them.

`sample_labels(...)` gives each run of each event-loop thread its loop state and, inside a
blocking episode, the episode's kind; each stack its route; each process its worker name.
Thread roles are `Analysis.thread_roles` already.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

from asgiprof.analyze.culprits import measured_kind
from asgiprof.analyze.episodes import LoopThreadRuns
from asgiprof.analyze.loop import STATE_BLOCKED, STATE_BUSY, STATE_IDLE
from asgiprof.analyze.result import (
    AnalysisParams,
    Culprit,
    Episode,
    Kind,
    LoopRunLabels,
    RunState,
    SampleLabels,
)
from asgiprof.model import NO_STACK, Profile

_STATES: dict[int, RunState] = {STATE_IDLE: "idle", STATE_BUSY: "busy", STATE_BLOCKED: "blocked"}


def measured_period_s(profile: Profile) -> float:
    """Wall time inside chunks per sampling instant: the period py-spy actually kept, which
    is longer than 1/rate when it fell behind."""
    sampling = profile.sampling
    instants = sampling.intervals
    span = sum(max(0.0, c.end_s - c.start_s) for c in sampling.chunks if c.intervals)
    if instants > 0 and span > 0:
        return span / instants
    return 1.0 / sampling.rate_hz if sampling.rate_hz > 0 else 0.01


def episode_kind(
    episode: Episode, params: AnalysisParams, culprits: dict[tuple[str, int], Kind]
) -> Kind:
    """Measured from the loop thread's CPU; without a measurement, its main line's culprit
    kind (which may come from the advice catalogue), so pprof agrees with the culprit table."""
    kind = measured_kind(episode.cpu_ratio, params)
    if kind == "unknown" and episode.cpu_ratio is None and episode.parts:
        main = max(episode.parts, key=lambda p: p.ms)
        kind = culprits.get((main.file, main.line), "unknown")
    return kind


def sample_labels(
    profile: Profile,
    loop_runs: list[LoopThreadRuns],
    episodes: list[Episode],
    culprits: list[Culprit],
    route_of: Callable[[int], str | None],
    params: AnalysisParams,
) -> SampleLabels:
    culprit_kinds = {(c.file, c.line): c.kind for c in culprits}
    by_thread: dict[tuple[int, int], list[Episode]] = {}
    for e in episodes:
        by_thread.setdefault((e.pid, e.tid), []).append(e)
    for eps in by_thread.values():
        eps.sort(key=lambda e: e.start_s)

    runs: dict[tuple[int, int], LoopRunLabels] = {}
    for lr in loop_runs:
        tl = lr.timeline
        key = (tl.thread.pid, tl.thread.tid)
        eps = by_thread.get(key, [])
        starts = [e.start_s for e in eps]
        states: list[RunState | None] = []
        kinds: list[Kind | None] = []
        for label, start in zip(lr.labels, tl.start_s, strict=True):
            states.append(_STATES.get(label))
            kind: Kind | None = None
            if label == STATE_BLOCKED:
                # Episodes start on a run and never overlap on one thread: a blocked run
                # belongs to the last episode starting at or before it.
                i = bisect.bisect_right(starts, start + 1e-9) - 1
                kind = episode_kind(eps[i], params, culprit_kinds) if i >= 0 else "unknown"
            kinds.append(kind)
        runs[key] = LoopRunLabels(tuple(states), tuple(kinds), tuple(lr.stand_in))

    stack_routes: dict[int, str] = {}
    for tl in profile.threads:
        for sid in set(tl.stack):
            if sid != NO_STACK and sid not in stack_routes:
                route = route_of(sid)
                if route is not None:
                    stack_routes[sid] = route
    return SampleLabels(
        period_s=measured_period_s(profile),
        loop_runs=runs,
        stack_routes=stack_routes,
        workers=worker_names(profile),
    )


def worker_names(profile: Profile) -> dict[int, str]:
    """The pid, or in a merged fleet profile `source:pid` with the pid its host gave it
    (pids collide across hosts; the merged profile renumbers them)."""
    names = {tl.thread.pid: str(tl.thread.pid) for tl in profile.threads}
    for source in profile.sources:
        for merged, original in source.pids:
            names[merged] = f"{source.name}:{original}"
    return names
