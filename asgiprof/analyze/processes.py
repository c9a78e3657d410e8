"""Findings per server process: each worker (uvicorn --workers, gunicorn, hypercorn,
granian) runs its own event loop, and the Analysis merges them all.

`process_summaries(analysis)` splits the merged event-loop time, episodes and culprits back
out per process id, for summary.json's "processes" section and per-worker views.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from asgiprof.analyze.loop import STATE_BUSY, STATE_IDLE, LoopClassifier
from asgiprof.analyze.result import Analysis
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
        if episode.culprit is None or episode.culprit not in rank_of:
            continue
        file, line = episode.culprit
        sums, routes = per_line.setdefault((pid, file, line), ([0.0, 0.0, 0.0], {}))
        sums[0] += episode.duration_ms
        sums[1] += 1
        sums[2] = max(sums[2], episode.duration_ms)
        routes[episode.route] = routes.get(episode.route, 0.0) + episode.duration_ms

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
