"""Findings per server process: each worker (uvicorn --workers, gunicorn, hypercorn,
granian) runs its own event loop, and the Analysis merges them all.

`process_summaries(analysis)` splits the merged event-loop time, episodes and culprits back
out per process id, for summary.json's "processes" section and per-worker views;
`process_timelines(analysis)` does the same for the event-loop timeline's bins.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from asgiprof.analyze.loop import STATE_BUSY, STATE_IDLE, LoopClassifier
from asgiprof.analyze.result import Analysis, TimelineBin
from asgiprof.analyze.timeline import overlaps
from asgiprof.model import NO_STACK


@dataclass(frozen=True, slots=True)
class ProcessCulprit:
    """A merged culprit's share in one process."""

    rank: int  # the culprit's rank in the merged list
    file: str
    line: int
    route: str | None  # the route with the most blocked time at this line in this process
    blocked_ms: float
    episodes: int
    max_ms: float


@dataclass(frozen=True, slots=True)
class ProcessSummary:
    pid: int
    event_loop_tids: tuple[int, ...]
    busy_ms: float
    blocked_ms: float
    idle_ms: float
    utilization: float  # busy / (busy + idle), 0..1
    longest_block_ms: float
    episodes: int
    culprits: tuple[ProcessCulprit, ...]  # most blocked time first


def process_summaries(analysis: Analysis) -> list[ProcessSummary]:
    """One summary per process with an event-loop thread, by pid."""
    profile = analysis.profile
    classifier = LoopClassifier(profile)
    loop_keys = set(analysis.loop.threads)
    busy: dict[int, float] = defaultdict(float)
    idle: dict[int, float] = defaultdict(float)
    tids: dict[int, list[int]] = defaultdict(list)
    for tl in profile.threads:
        pid, tid = tl.thread.pid, tl.thread.tid
        if (pid, tid) not in loop_keys:
            continue
        tids[pid].append(tid)
        for _start, duration_s, sid, _n in tl.runs():
            if sid == NO_STACK:
                continue
            state = classifier.classify(sid).state
            if state == STATE_BUSY:
                busy[pid] += duration_s * 1000.0
            elif state == STATE_IDLE:
                idle[pid] += duration_s * 1000.0

    rank_of = {(c.file, c.line): c.rank for c in analysis.culprits}
    blocked: dict[int, float] = defaultdict(float)
    longest: dict[int, float] = defaultdict(float)
    count: dict[int, int] = defaultdict(int)
    # (pid, file, line) -> [blocked_ms, episodes, max_ms, {route: ms}]
    per_line: dict[tuple[int, str, int], tuple[list[float], dict[str | None, float]]] = {}
    for episode in analysis.episodes:
        pid = episode.pid
        blocked[pid] += episode.duration_ms
        longest[pid] = max(longest[pid], episode.duration_ms)
        count[pid] += 1
        # Credited as the merged culprits are (rank_culprits): each line its own part.
        for part in episode.parts:
            if (part.file, part.line) not in rank_of:
                continue
            key = (pid, part.file, part.line)
            sums, routes = per_line.setdefault(key, ([0.0, 0.0, 0.0], {}))
            sums[0] += part.ms
            sums[1] += 1
            sums[2] = max(sums[2], part.ms)
            routes[part.route] = routes.get(part.route, 0.0) + part.ms

    culprits: dict[int, list[ProcessCulprit]] = defaultdict(list)
    for (pid, file, line), (sums, routes) in per_line.items():
        route = max(routes.items(), key=lambda kv: (kv[1], kv[0] or ""))[0]
        culprits[pid].append(
            ProcessCulprit(rank_of[(file, line)], file, line, route, sums[0], int(sums[1]), sums[2])
        )

    summaries = []
    for pid in sorted(tids):
        active = busy[pid] + idle[pid]
        summaries.append(
            ProcessSummary(
                pid=pid,
                event_loop_tids=tuple(sorted(tids[pid])),
                busy_ms=busy[pid],
                blocked_ms=blocked[pid],
                idle_ms=idle[pid],
                utilization=busy[pid] / active if active > 0 else 0.0,
                longest_block_ms=longest[pid],
                episodes=count[pid],
                culprits=tuple(sorted(culprits[pid], key=lambda c: (-c.blocked_ms, c.rank))),
            )
        )
    return summaries


# Episodes start and end on run boundaries, but as sums of float durations: a run starting
# within this of an episode's end is the run after it.
_BOUNDARY_S = 1e-9


def _blocked_spans(analysis: Analysis) -> dict[tuple[int, int], list[tuple[float, float]]]:
    """(start_s, end_s) of every blocking episode per event-loop thread, in time order."""
    spans: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    for e in analysis.episodes:
        spans[(e.pid, e.tid)].append((e.start_s, e.start_s + e.duration_ms / 1000.0))
    for thread_spans in spans.values():
        thread_spans.sort()
    return spans


def process_timelines(analysis: Analysis) -> dict[int, list[TimelineBin]]:
    """Idle / busy / blocked bins per process with an event-loop thread, on the bins of the
    merged `analysis.timeline` (same width and count, from 0 s), so they line up with it and
    add up to it. A busy run is blocked when it lies inside one of its thread's episodes:
    the episodes are what the analysis labelled blocked, and only they survive it."""
    bins = analysis.timeline
    if not bins:
        return {}
    width_s, count = bins[0].width_s, len(bins)
    end_s = width_s * count
    classifier = LoopClassifier(analysis.profile)
    loop_keys = set(analysis.loop.threads)
    spans_of = _blocked_spans(analysis)
    acc: dict[int, list[list[float]]] = {}  # pid -> per bin [idle, busy, blocked] seconds
    for tl in analysis.profile.threads:
        key = (tl.thread.pid, tl.thread.tid)
        if key not in loop_keys:
            continue
        rows = acc.setdefault(key[0], [[0.0, 0.0, 0.0] for _ in range(count)])
        spans = spans_of.get(key, [])
        j = 0  # the first episode not over before this run
        for start, duration_s, sid, _n in tl.runs():
            if sid == NO_STACK or duration_s <= 0:
                continue
            state = classifier.classify(sid).state
            if state == STATE_IDLE:
                slot = 0
            elif state == STATE_BUSY:
                while j < len(spans) and spans[j][1] <= start + _BOUNDARY_S:
                    j += 1
                slot = 2 if j < len(spans) and spans[j][0] <= start + _BOUNDARY_S else 1
            else:
                continue
            for b, seconds in overlaps(start, min(start + duration_s, end_s), width_s, count):
                rows[b][slot] += seconds
    return {
        pid: [
            TimelineBin(b * width_s, width_s, r[0] * 1000.0, r[1] * 1000.0, r[2] * 1000.0)
            for b, r in enumerate(rows)
        ]
        for pid, rows in sorted(acc.items())
    }
