"""Findings per server process: each worker (uvicorn --workers, gunicorn, hypercorn,
granian) runs its own event loop, and the Analysis merges them all.

`process_figures(...)` (a step of `analyze()`) splits the merged event-loop time, episodes,
culprits and timeline bins back out per process id, for summary.json's "processes" section
and the report's per-worker views. `process_summaries` and `process_timelines` read them
back from a finished Analysis.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from asgiprof.analyze.episodes import LoopThreadRuns
from asgiprof.analyze.loop import STATE_BLOCKED, STATE_BUSY, STATE_IDLE
from asgiprof.analyze.result import (
    Analysis,
    Culprit,
    Episode,
    ProcessCulprit,
    ProcessSummary,
    TimelineBin,
)
from asgiprof.analyze.timeline import overlaps
from asgiprof.model import NO_STACK

__all__ = [
    "ProcessCulprit",
    "ProcessSummary",
    "process_figures",
    "process_summaries",
    "process_timelines",
]

# Episodes start and end on run boundaries, but as sums of float durations: a run starting
# within this of an episode's end is the run after it.
_BOUNDARY_S = 1e-9


def process_figures(
    loop_runs: Sequence[LoopThreadRuns],
    episodes: Sequence[Episode],
    culprits: Sequence[Culprit],
    timeline: Sequence[TimelineBin],
) -> tuple[ProcessSummary, ...]:
    """One summary per process with an event-loop thread, by pid, from the analysis's run
    labels (a torn sample counts as what it continues, as in the merged figures)."""
    states = _loop_states(loop_runs)
    per_episode = _episode_figures(episodes, culprits)
    bins = _timelines(loop_runs, episodes, timeline)
    summaries = []
    for pid in sorted(states.tids):
        busy, idle = states.busy[pid], states.idle[pid]
        active = busy + idle
        summaries.append(
            ProcessSummary(
                pid=pid,
                event_loop_tids=tuple(sorted(states.tids[pid])),
                busy_ms=busy,
                blocked_ms=per_episode.blocked[pid],
                idle_ms=idle,
                utilization=busy / active if active > 0 else 0.0,
                longest_block_ms=per_episode.longest[pid],
                episodes=per_episode.count[pid],
                culprits=per_episode.culprits(pid),
                timeline=tuple(bins.get(pid, ())),
            )
        )
    return tuple(summaries)


def process_summaries(analysis: Analysis) -> list[ProcessSummary]:
    """The analysis's per-process figures, by pid."""
    return list(analysis.processes)


def process_timelines(analysis: Analysis) -> dict[int, list[TimelineBin]]:
    """Idle / busy / blocked bins per process, on the bins of `analysis.timeline`."""
    return {p.pid: list(p.timeline) for p in analysis.processes if p.timeline}


@dataclass(slots=True)
class _States:
    """Busy and idle loop milliseconds per pid, and the pid's event-loop thread ids."""

    busy: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    idle: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    tids: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))


def _loop_states(loop_runs: Sequence[LoopThreadRuns]) -> _States:
    out = _States()
    for lr in loop_runs:
        tl = lr.timeline
        pid = tl.thread.pid
        out.tids[pid].append(tl.thread.tid)
        for duration_s, sid, label in zip(tl.duration_s, tl.stack, lr.labels, strict=True):
            if sid == NO_STACK:
                continue
            if label in (STATE_BUSY, STATE_BLOCKED):
                out.busy[pid] += duration_s * 1000.0
            elif label == STATE_IDLE:
                out.idle[pid] += duration_s * 1000.0
    return out


# Per (pid, file, line): [blocked_ms, episodes, max_ms] and {route: ms}.
_LineSums = tuple[list[float], dict[str | None, float]]


@dataclass(slots=True)
class _EpisodeFigures:
    rank_of: dict[tuple[str, int], int]
    blocked: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    longest: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    count: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    per_line: dict[tuple[int, str, int], _LineSums] = field(default_factory=dict)

    def add(self, episode: Episode) -> None:
        pid = episode.pid
        self.blocked[pid] += episode.duration_ms
        self.longest[pid] = max(self.longest[pid], episode.duration_ms)
        self.count[pid] += 1
        # Credited as the merged culprits are (rank_culprits): each line its own part.
        for part in episode.parts:
            if (part.file, part.line) not in self.rank_of:
                continue
            sums, routes = self.per_line.setdefault((pid, part.file, part.line), ([0.0] * 3, {}))
            sums[0] += part.ms
            sums[1] += 1
            sums[2] = max(sums[2], part.ms)
            routes[part.route] = routes.get(part.route, 0.0) + part.ms

    def culprits(self, pid: int) -> tuple[ProcessCulprit, ...]:
        out = []
        for (line_pid, file, line), (sums, routes) in self.per_line.items():
            if line_pid != pid:
                continue
            route = max(routes.items(), key=lambda kv: (kv[1], kv[0] or ""))[0]
            rank = self.rank_of[(file, line)]
            out.append(ProcessCulprit(rank, file, line, route, sums[0], int(sums[1]), sums[2]))
        return tuple(sorted(out, key=lambda c: (-c.blocked_ms, c.rank)))


def _episode_figures(episodes: Sequence[Episode], culprits: Sequence[Culprit]) -> _EpisodeFigures:
    figures = _EpisodeFigures({(c.file, c.line): c.rank for c in culprits})
    for episode in episodes:
        figures.add(episode)
    return figures


def _blocked_spans(episodes: Sequence[Episode]) -> dict[tuple[int, int], list[tuple[float, float]]]:
    """(start_s, end_s) of every blocking episode per event-loop thread, in time order."""
    spans: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    for e in episodes:
        spans[(e.pid, e.tid)].append((e.start_s, e.start_s + e.duration_ms / 1000.0))
    for thread_spans in spans.values():
        thread_spans.sort()
    return spans


def _timelines(
    loop_runs: Sequence[LoopThreadRuns],
    episodes: Sequence[Episode],
    bins: Sequence[TimelineBin],
) -> dict[int, list[TimelineBin]]:
    """Idle / busy / blocked bins per process with an event-loop thread, on the bins of the
    merged timeline (same width and count, from 0 s), so they line up with it and add up to
    it. A busy run is blocked when it lies inside one of its thread's episodes: the episodes
    are what the analysis labelled blocked, and only they survive it."""
    if not bins:
        return {}
    width_s, count = bins[0].width_s, len(bins)
    end_s = width_s * count
    spans_of = _blocked_spans(episodes)
    acc: dict[int, list[list[float]]] = {}  # pid -> per bin [idle, busy, blocked] seconds
    for lr in loop_runs:
        tl = lr.timeline
        key = (tl.thread.pid, tl.thread.tid)
        rows = acc.setdefault(key[0], [[0.0, 0.0, 0.0] for _ in range(count)])
        spans = spans_of.get(key, [])
        j = 0  # the first episode not over before this run
        for (start, duration_s, sid, _n), label in zip(tl.runs(), lr.labels, strict=True):
            if sid == NO_STACK or duration_s <= 0:
                continue
            if label == STATE_IDLE:
                slot = 0
            elif label in (STATE_BUSY, STATE_BLOCKED):
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
