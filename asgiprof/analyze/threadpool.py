"""Threadpool saturation: busy anyio worker threads over time, time at the limit, and what
held the workers.

FastAPI and Starlette run `def` routes and dependencies in anyio's worker threads, at most
`AnalysisParams.threadpool_limit` (anyio's default: 40) at once per process; requests beyond
that wait for a token, invisibly (a waiting coroutine has no stack). A worker is busy when its
stack goes beyond the worker loop's queue wait. py-spy samples every thread at (about) the
same instants, so summing busy runs over a process's workers counts busy workers over time.
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final, Literal

from asgiprof.analyze.dependencies import DependencyFrames
from asgiprof.analyze.frames import bare_function
from asgiprof.analyze.result import (
    AnalysisParams,
    Finding,
    ThreadpoolBin,
    ThreadpoolHolder,
    ThreadpoolProcess,
    ThreadpoolSummary,
)
from asgiprof.analyze.roles import WORKER_FRAMES
from asgiprof.analyze.timeline import overlaps
from asgiprof.model import NO_STACK, Frame, Profile, ThreadTimeline

ANYIO_WORKER: Final = ("anyio/_backends/_asyncio.py", "run")
# What an idle worker waits in, right above its run loop (and the asyncio call with which
# an anyio worker hands a result back: a few microseconds of plumbing, not work).
_IDLE_FILES: Final = ("/queue.py", "/threading.py", "/asyncio/base_events.py")

HolderKind = Literal["route", "dependency", "other"]


def _norm(file: str) -> str:
    return file.replace("\\", "/")


def _is_worker_frame(frame: Frame) -> tuple[str, str] | None:
    file = _norm(frame.file)
    for suffix, func in WORKER_FRAMES:
        if file.endswith(suffix) and bare_function(frame.function) == func:
            return suffix, func
    return None


@dataclass(slots=True)
class WorkerStacks:
    """Per stack id: the worker entry position, and whether the worker is busy; cached."""

    profile: Profile
    _cache: dict[int, tuple[int, bool, bool] | None]

    @classmethod
    def for_profile(cls, profile: Profile) -> WorkerStacks:
        return cls(profile, {})

    def _get(self, sid: int) -> tuple[int, bool, bool] | None:
        """(entry position, busy, anyio) or None when no worker loop is on the stack."""
        if sid in self._cache:
            return self._cache[sid]
        stack = self.profile.stack_frames(sid)
        found: tuple[int, bool, bool] | None = None
        for i in range(len(stack) - 1, -1, -1):
            kind = _is_worker_frame(stack[i])
            if kind is not None:
                nxt = stack[i + 1] if i + 1 < len(stack) else None
                idle = nxt is None or _norm(nxt.file).endswith(_IDLE_FILES)
                found = (i, not idle, kind == ANYIO_WORKER)
                break
        self._cache[sid] = found
        return found

    def busy_entry(self, sid: int) -> int | None:
        """Worker entry position when the worker runs something, else None."""
        hit = self._get(sid)
        return hit[0] if hit is not None and hit[1] else None

    def busy_entries(self, threads: list[ThreadTimeline]) -> dict[int, int]:
        """Stack id -> worker entry position, for the busy stacks of `threads` (a plain dict:
        the per-run loops look stacks up millions of times)."""
        found: dict[int, int] = {}
        for tl in threads:
            for sid in set(tl.stack):
                if sid != NO_STACK and sid not in found:
                    entry = self.busy_entry(sid)
                    if entry is not None:
                        found[sid] = entry
        return found

    def is_anyio_worker(self, tl: ThreadTimeline) -> bool:
        return any(
            (hit := self._get(sid)) is not None and hit[2]
            for sid in set(tl.stack)
            if sid != NO_STACK
        )


def worker_threads(profile: Profile, stacks: WorkerStacks) -> list[ThreadTimeline]:
    """Threads of anyio's worker pool (the asyncio executor's workers have another limit)."""
    return [tl for tl in profile.threads if stacks.is_anyio_worker(tl)]


def _holder(
    sid: int,
    entry: int,
    profile: Profile,
    route_of: Callable[[int], str | None],
    deps: DependencyFrames,
) -> tuple[str, HolderKind]:
    route = route_of(sid)
    if route is not None:
        return route, "route"
    stack = profile.stack_frames(sid)
    j = deps.in_worker(sid, entry)
    if j is not None:
        return f"dependency {stack[j].function}", "dependency"
    nxt = stack[entry + 1] if entry + 1 < len(stack) else None
    return (f"other: {nxt.function}" if nxt is not None else "other"), "other"


def threadpool_summary(
    profile: Profile,
    workers: list[ThreadTimeline],
    stacks: WorkerStacks,
    route_of: Callable[[int], str | None],
    deps: DependencyFrames,
    limit: int,
    duration_s: float,
    bins: int,
) -> ThreadpoolSummary:
    entries = stacks.busy_entries(workers)
    holders = _Holders(profile, route_of, deps)
    # Per worker: its busy stretches (back-to-back busy runs merged), in time order. Kept
    # as flat float arrays and swept with a lazy merge: a busy half hour has millions.
    stretches = [(tl, *_busy_stretches(tl, entries, holders)) for tl in workers]
    timeline = _Bins.over(duration_s, bins)
    at_limit_by_holder: dict[str, float] = defaultdict(float)
    processes: list[ThreadpoolProcess] = []
    at_limit_s = 0.0
    for pid in sorted({tl.thread.pid for tl in workers}):
        mine = [(tl, a, b) for tl, a, b in stretches if tl.thread.pid == pid]
        max_busy, at_limit = _sweep(mine, limit, timeline)
        pid_at_limit = sum(b - a for a, b in at_limit)
        if at_limit:
            for tl, _, _ in mine:
                _share_at_limit(tl, entries, holders.names, at_limit, at_limit_by_holder)
        at_limit_s += pid_at_limit
        seen = sum(1 for tl in workers if tl.thread.pid == pid)
        processes.append(ThreadpoolProcess(pid, seen, max_busy, pid_at_limit * 1000.0))
    total_busy = sum(holders.busy_ms.values())
    return ThreadpoolSummary(
        limit=limit,
        workers_seen=max((p.workers_seen for p in processes), default=0),
        max_busy=max((p.max_busy for p in processes), default=0),
        mean_busy=total_busy / 1000.0 / duration_s if duration_s > 0 else 0.0,
        busy_ms=total_busy,
        at_limit_ms=at_limit_s * 1000.0,
        at_limit_share=at_limit_s / duration_s if duration_s > 0 else 0.0,
        timeline=timeline.bins(),
        holders=holders.ranked(total_busy, at_limit_by_holder),
        processes=tuple(processes),
    )


@dataclass
class _Holders:
    """What held the workers: a name per busy stack (cached), its kind, its busy time."""

    profile: Profile
    route_of: Callable[[int], str | None]
    deps: DependencyFrames
    names: dict[int, str] = field(default_factory=dict)
    kinds: dict[str, HolderKind] = field(default_factory=dict)
    busy_ms: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def name(self, sid: int, entry: int) -> str:
        """The holder of a busy stack (first sight: `names` caches it)."""
        name, kind = _holder(sid, entry, self.profile, self.route_of, self.deps)
        self.names[sid] = name
        self.kinds[name] = kind
        return name

    def ranked(
        self, total_busy: float, at_limit_ms: dict[str, float]
    ) -> tuple[ThreadpoolHolder, ...]:
        holders = (
            ThreadpoolHolder(
                name=name,
                kind=self.kinds[name],
                busy_ms=ms,
                share=ms / total_busy if total_busy else 0.0,
                at_limit_ms=at_limit_ms.get(name, 0.0),
            )
            for name, ms in self.busy_ms.items()
        )
        return tuple(sorted(holders, key=lambda h: (-h.busy_ms, h.name)))


def _busy_stretches(
    tl: ThreadTimeline, entries: dict[int, int], holders: _Holders
) -> tuple[array[float], array[float]]:
    """One worker's busy stretches (starts, ends), crediting each run to its holder."""
    starts, ends = array("d"), array("d")
    open_start = open_end = -1.0
    names, busy_ms = holders.names, holders.busy_ms  # per run: millions in a busy pool
    for start, dur, sid, _n in tl.runs():
        entry = entries.get(sid)
        if entry is None or dur <= 0:
            continue
        name = names.get(sid)
        if name is None:
            name = holders.name(sid, entry)
        busy_ms[name] += dur * 1000.0
        end = start + dur
        if open_start >= 0 and start - open_end <= 1e-9:
            open_end = end
            continue
        if open_start >= 0:
            starts.append(open_start)
            ends.append(open_end)
        open_start, open_end = start, end
    if open_start >= 0:
        starts.append(open_start)
        ends.append(open_end)
    return starts, ends


@dataclass
class _Bins:
    """Busy workers over time in `len(busy)` bins of `width` s: worker seconds and peak."""

    width: float
    busy: list[float]
    peak: list[int]

    @classmethod
    def over(cls, duration_s: float, bins: int) -> _Bins:
        width = duration_s / bins if duration_s > 0 and bins > 0 else 0.0
        return cls(width, [0.0] * bins if width else [], [0] * bins if width else [])

    def bins(self) -> tuple[ThreadpoolBin, ...]:
        return tuple(
            ThreadpoolBin(b * self.width, self.width, busy / self.width, peak)
            for b, (busy, peak) in enumerate(zip(self.busy, self.peak, strict=True))
        )


def _sweep(
    workers: list[tuple[ThreadTimeline, array[float], array[float]]], limit: int, bins: _Bins
) -> tuple[int, list[tuple[float, float]]]:
    """Count one process's busy workers over time: (the most at once, the sorted disjoint
    stretches with all `limit` busy), adding the counts to `bins`."""
    # (t, -1) sorts before (t, +1): a worker ending as another starts
    events = heapq.merge(*(_events(a, b) for _, a, b in workers))
    count = max_busy = 0
    at_limit: list[tuple[float, float]] = []
    prev_t = 0.0
    # Locals, and the common case inline: a busy pool gives millions of events.
    width, busy, peak, n_bins = bins.width, bins.busy, bins.peak, len(bins.busy)
    for t, delta in events:
        if t > prev_t and count > 0:
            if count >= limit:
                if at_limit and at_limit[-1][1] == prev_t:
                    at_limit[-1] = (at_limit[-1][0], t)
                else:
                    at_limit.append((prev_t, t))
            if width:
                b = int(prev_t / width)
                if 0 <= b < n_bins and t <= (b + 1) * width:  # within one bin: most spans
                    busy[b] += count * (t - prev_t)
                    if count > peak[b]:
                        peak[b] = count
                else:
                    _spread(busy, peak, width, prev_t, t, count)
        prev_t = t
        count += delta
        if count > max_busy:
            max_busy = count
    return max_busy, at_limit


def _events(starts: array[float], ends: array[float]) -> Iterator[tuple[float, int]]:
    for a, b in zip(starts, ends, strict=True):
        yield a, 1
        yield b, -1


def _share_at_limit(
    tl: ThreadTimeline,
    entries: dict[int, int],
    names: dict[int, str],
    at_limit: list[tuple[float, float]],
    out: dict[str, float],
) -> None:
    """Worker time each holder had inside the (sorted, disjoint) at-limit stretches."""
    starts = [a for a, _ in at_limit]
    for start, dur, sid, _n in tl.runs():
        if sid not in entries or dur <= 0:
            continue
        end, name = start + dur, names[sid]
        k = max(0, bisect_right(starts, start) - 1)
        while k < len(at_limit) and at_limit[k][0] < end:
            a, b = at_limit[k]
            overlap = min(b, end) - max(a, start)
            if overlap > 0:
                out[name] += overlap * 1000.0
            k += 1


def _spread(
    busy: list[float], peak: list[int], width: float, start: float, end: float, count: int
) -> None:
    """Add `count` busy workers over [start, end) to the bins it overlaps."""
    bins = len(busy)
    for b, seconds in overlaps(start, min(end, bins * width), width, bins):
        busy[b] += count * seconds
        peak[b] = max(peak[b], count)


def threadpool_findings(
    summary: ThreadpoolSummary, params: AnalysisParams, rate_hz: int = 100
) -> list[Finding]:
    """A saturation finding when every worker was busy for a noticeable share of the time,
    over at least `finding_min_samples` sampling instants."""
    if summary.at_limit_share < params.threadpool_saturation_share or summary.at_limit_ms <= 0:
        return []
    if summary.at_limit_ms * rate_hz / 1000.0 < params.finding_min_samples:
        return []
    holders = [h for h in summary.holders if h.at_limit_ms > 0] or list(summary.holders)
    at_limit_total = sum(h.at_limit_ms for h in holders) or 1.0
    parts = [
        f"{h.name} {h.at_limit_ms / at_limit_total:.0%}"
        for h in sorted(holders, key=lambda h: -h.at_limit_ms)[:4]
    ]
    return [
        Finding(
            kind="threadpool-saturation",
            severity="warning",
            title=f"threadpool saturated: all {summary.limit} worker threads busy "
            f"{summary.at_limit_share:.0%} of the time",
            detail=(
                f"every one of the {summary.limit} worker threads was busy for "
                f"{summary.at_limit_ms / 1000:.1f} s ({summary.at_limit_share:.0%} of the "
                f"profile; {summary.mean_busy:.1f} busy on average, {summary.workers_seen} "
                "workers seen); meanwhile `def` routes and dependencies waited for a free "
                "worker. Held by: " + ", ".join(parts)
            ),
            advice=(
                "Make the routes that hold workers longest `async def` with async clients, so "
                "they hold no thread while they wait; or, if the work must stay sync, raise "
                "the limit at startup (`anyio.to_thread.current_default_thread_limiter()"
                ".total_tokens = 100`) and watch the database's connection limit."
            ),
            subject=holders[0].name if holders else None,
        )
    ]
