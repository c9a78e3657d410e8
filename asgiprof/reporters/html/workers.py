"""Several server processes with an event loop (workers): per worker the payload carries
only what the page's switch needs (its culprits as indexes into the merged list with its
own figures, its episodes as indexes, its timeline bins); the flamegraph stays merged. A
single process has an empty `workers`. The figures are the Analysis's (`processes`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, cast

from asgiprof.analyze.result import Analysis, Episode, ProcessSummary
from asgiprof.reporters.document import plain
from asgiprof.reporters.document import rounded as _r
from asgiprof.reporters.html.payload_types import (
    WorkerCulpritPayload,
    WorkerPayload,
    WorkerTimelinePayload,
)

# A worker's loop figures, as the merged ones (LoopSummary) name them.
WORKER_FIGURES: Final = (
    *("busy_ms", "blocked_ms", "idle_ms", "utilization", "longest_block_ms", "episodes"),
)
BIN_DIGITS: Final = 2  # as the merged timeline's bins (payload.py)


def has_workers(analysis: Analysis) -> bool:
    """More than one server process ran an event loop (cheap: no pass over the samples)."""
    return len({pid for pid, _tid in analysis.loop.threads}) > 1


def is_main_process(analysis: Analysis, pid: int) -> bool:
    # The process asgiprof launched or attached to is listed first; with workers it
    # usually runs no loop (uvicorn's supervisor, gunicorn's arbiter) and is not shown.
    # A merged profile has one such process per run.
    sources = analysis.profile.sources
    if sources:
        return any(s.pids[:1] and s.pids[0][0] == pid for s in sources)
    return analysis.profile.target.pids[:1] == (pid,)


def worker_name(analysis: Analysis, pid: int) -> str:
    """`PID 123`; in a merged profile, `run-a:123` (pids are renumbered when they collide)."""
    if analysis.profile.sources and pid in analysis.sample_labels.workers:
        return analysis.sample_labels.workers[pid]
    return f"PID {pid}"


def workers_payload(
    analysis: Analysis,
    ordered_episodes: Sequence[Episode],
    culprit_index: dict[tuple[str, int], int],
) -> list[WorkerPayload]:
    """Per server process with an event loop, when there are several: figures, culprits,
    episodes and timeline bins; [] for a single process (the page then has no switch)."""
    if not has_workers(analysis):
        return []
    episode_ids: dict[int, list[int]] = {}
    for i, e in enumerate(ordered_episodes):
        episode_ids.setdefault(e.pid, []).append(i)
    workers: list[WorkerPayload] = []
    number = 0  # workers numbered in pid order, the main process aside
    for s in analysis.processes:
        main = is_main_process(analysis, s.pid)
        number += not main
        role = "main process" if main else f"worker {number}"
        worker = {
            "pid": s.pid,
            "label": f"{worker_name(analysis, s.pid)} ({role})",
            **plain(s, WORKER_FIGURES),
            "culprits": _worker_culprits(s, culprit_index),
            "episode_ids": episode_ids.get(s.pid, []),
            "timeline": _worker_timeline(s),
        }
        workers.append(cast(WorkerPayload, worker))
    return workers


def _worker_timeline(s: ProcessSummary) -> WorkerTimelinePayload:
    bins = s.timeline
    return {
        "idle_ms": [_r(b.idle_ms, BIN_DIGITS) for b in bins],
        "busy_ms": [_r(b.busy_ms, BIN_DIGITS) for b in bins],
        "blocked_ms": [_r(b.blocked_ms, BIN_DIGITS) for b in bins],
    }


def _worker_culprits(
    summary: ProcessSummary, culprit_index: dict[tuple[str, int], int]
) -> list[WorkerCulpritPayload]:
    return [
        cast(
            WorkerCulpritPayload,
            {
                "culprit": culprit_index[(c.file, c.line)],
                **plain(c, ("blocked_ms", "episodes", "max_ms")),
            },
        )
        for c in summary.culprits
        if (c.file, c.line) in culprit_index
    ]
