"""GIL contention: blocking episodes with no culprit line that were the event-loop thread
waiting for the GIL while threadpool workers of its process ran Python code.

A worker thread running pure-Python code (a `def` route, `run_in_threadpool`) holds the GIL;
the event-loop thread must take it back for every step of framework code and waits up to the
switch interval (5 ms) each time, so framework stretches on the loop grow into episodes with
no line of the user's code on them. The stacks alone cannot tell that from framework CPU
work; per-thread CPU can: a starved loop is mostly not running while the workers together
are (see `AnalysisParams.gil_*` for the measurements behind the thresholds).

CPU alone cannot tell a worker holding the GIL from one in native code that released it
(argon2, bcrypt, hashlib: on a machine short of cores they starve the loop of CPU, not of
the GIL). The finding, and the lines it names, therefore come from py-spy's `--gil` windows
(record/gil_sampler.py), where only the thread holding the GIL is sampled: no windows, or
workers rarely in them, no finding.

Workers are judged per episode (their CPU is steady under load); the loop's own CPU per
episode is too noisy (sample times are estimates good to ~0.1 s, polls come every 50 ms), so
it is judged once per loop thread over all the episodes whose workers computed.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence

from asgiprof.analyze.episodes import LoopThreadRuns, UserFrames
from asgiprof.analyze.loop import STATE_BLOCKED, STATE_BUSY
from asgiprof.analyze.result import (
    AnalysisParams,
    Episode,
    Finding,
    GilHolder,
    GilStall,
    GilStalls,
)
from asgiprof.analyze.threadpool import WorkerStacks
from asgiprof.model import Profile, ThreadTimeline

CpuRatio = Callable[[int, int, float, float], float | None]
Line = tuple[str, int]  # (file, line)
# Busy worker stack id -> (seconds, samples) inside one episode.
_Busy = dict[int, tuple[float, float]]


def pool_threads(
    profile: Profile, stacks: WorkerStacks, loop_threads: Sequence[ThreadTimeline]
) -> tuple[list[ThreadTimeline], dict[int, int]]:
    """Threads that ran work in a worker pool, anyio's (`def` routes, `run_in_threadpool`)
    or the asyncio executor's (`asyncio.to_thread`): both hold the GIL alike; and their busy
    stacks (stack id -> worker entry position)."""
    loops = {id(tl) for tl in loop_threads}
    others = [tl for tl in profile.threads if id(tl) not in loops]
    entries = stacks.busy_entries(others)
    return [tl for tl in others if any(sid in entries for sid in set(tl.stack))], entries


def _overlaps(tl: ThreadTimeline, lo: float, hi: float) -> Iterator[tuple[int, float]]:
    """(run index, seconds of the run inside [lo, hi]) for the runs overlapping it."""
    first = max(bisect_right(tl.start_s, lo) - 1, 0)
    for k in range(first, len(tl)):
        start = tl.start_s[k]
        if start >= hi:
            break
        seconds = min(hi, start + tl.duration_s[k]) - max(lo, start)
        if seconds > 0:
            yield k, seconds


def find_gil_stalls(
    profile: Profile,
    episodes: Sequence[Episode],
    loop_runs: Sequence[LoopThreadRuns],
    workers: Sequence[ThreadTimeline],
    busy_entries: Mapping[int, int],
    user_frames: UserFrames,
    route_of: Callable[[int], str | None],
    cpu_ratio: CpuRatio,
    params: AnalysisParams,
) -> GilStalls:
    """The culprit-less episodes that were GIL stalls, and the worker lines behind them."""
    stalls = _stalls(episodes, loop_runs, workers, busy_entries, cpu_ratio, params)
    gil = profile.gil
    if gil is None:
        return GilStalls(tuple(stalls))
    # Who held the GIL, measured: only the holder's stack is in a --gil sample, so a worker
    # in native code that releases it (argon2, bcrypt, hashlib, sleep) never is.
    pids = {st.episode.pid for st in stalls}
    pool_keys = {(tl.thread.pid, tl.thread.tid) for tl in workers}
    held = [(key, sid, n) for key, stacks in gil.held.items() for sid, n in stacks.items()]
    in_pids = [(key, sid, n) for key, sid, n in held if key[0] in pids]
    by_workers = [(sid, n) for key, sid, n in in_pids if key in pool_keys]
    period_s = gil.seconds / gil.samples if gil.samples else 0.0
    return GilStalls(
        tuple(stalls),
        _holders(profile, by_workers, period_s, user_frames, route_of),
        gil_samples=sum(n for _, _, n in in_pids),
        worker_gil_samples=sum(n for _, n in by_workers),
    )


def _stalls(
    episodes: Sequence[Episode],
    loop_runs: Sequence[LoopThreadRuns],
    workers: Sequence[ThreadTimeline],
    busy_entries: Mapping[int, int],
    cpu_ratio: CpuRatio,
    params: AnalysisParams,
) -> list[GilStall]:
    """The culprit-less episodes whose workers computed, on loop threads that did not run
    their own work meanwhile, in time order."""
    runs_of = {(lr.timeline.thread.pid, lr.timeline.thread.tid): lr for lr in loop_runs}
    workers_of: dict[int, list[ThreadTimeline]] = defaultdict(list)
    for tl in workers:
        workers_of[tl.thread.pid].append(tl)
    # Per loop thread: the episodes whose workers computed, with the busy worker stacks.
    candidates: dict[tuple[int, int], list[tuple[GilStall, _Busy]]] = defaultdict(list)
    for ep in episodes:
        runs = runs_of.get((ep.pid, ep.tid))
        pool = workers_of.get(ep.pid)
        if ep.culprit is None and runs is not None and pool:
            candidate = _candidate(ep, runs, pool, busy_entries, cpu_ratio, params)
            if candidate is not None:
                candidates[ep.pid, ep.tid].append(candidate)
    stalls: list[GilStall] = []
    for measured in candidates.values():
        thread = GilStalls(tuple(stall for stall, _ in measured))
        if thread.loop_cpu_ratio > params.gil_loop_max_cpu_ratio:
            continue  # the loop ran its own work (C code that released the GIL, say)
        stalls.extend(thread.stalls)
    stalls.sort(key=lambda st: (st.episode.start_s, st.episode.pid, st.episode.tid))
    return stalls


def _holders(
    profile: Profile,
    held: list[tuple[int, int]],
    period_s: float,
    user_frames: UserFrames,
    route_of: Callable[[int], str | None],
) -> tuple[GilHolder, ...]:
    """The worker lines that held the GIL (`held`: stack id, GIL samples), most first."""
    # Per line, not per frame: a `sum(<genexpr>)` line is sampled in both its function's
    # frame and the generator's, and the line is what the user changes.
    samples: dict[Line, float] = defaultdict(float)
    functions: dict[Line, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    routes: dict[Line, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    frames = profile.frames
    for sid, n in held:
        fid = user_frames.deepest(sid)
        if fid is None:
            continue
        line = (frames[fid].file, frames[fid].line)
        samples[line] += n
        functions[line][frames[fid].function] += n
        route = route_of(sid)
        if route is not None:
            routes[line][route] += n
    holders = sorted(
        (
            GilHolder(
                file=file,
                line=line,
                function=_function(functions[file, line]),
                route=_most(routes[file, line]),
                samples=round(n),
                ms=n * period_s * 1000.0,
            )
            for (file, line), n in samples.items()
        ),
        key=lambda h: (-h.samples, -h.ms, h.file, h.line),
    )
    return tuple(holders)


def _most(weights: Mapping[str, float]) -> str | None:
    return max(weights, key=lambda k: (weights[k], k)) if weights else None


def _function(weights: Mapping[str, float]) -> str:
    """The line's function: `checksum` rather than `checksum.<locals>.<genexpr>`, the
    comprehension or lambda that runs on that same line."""
    named = {f: w for f, w in weights.items() if not f.endswith(">")}
    return _most(named) or _most(weights) or "?"


def _candidate(
    ep: Episode,
    runs: LoopThreadRuns,
    pool: Sequence[ThreadTimeline],
    busy_entries: Mapping[int, int],
    cpu_ratio: CpuRatio,
    params: AnalysisParams,
) -> tuple[GilStall, _Busy] | None:
    """`ep` measured, with the busy worker stacks in it, when workers computed through it."""
    start, end = ep.start_s, ep.start_s + ep.duration_ms / 1000.0
    busy: _Busy = {}
    for tl in pool:
        for k, s in _overlaps(tl, start, end):
            sid = tl.stack[k]
            if sid in busy_entries:
                seconds, samples = busy.get(sid, (0.0, 0.0))
                busy[sid] = (seconds + s, samples + tl.samples[k] * s / tl.duration_s[k])
    if sum(s for s, _ in busy.values()) < params.gil_workers_min_busy * (end - start):
        return None
    # Sample times are estimates good to ~0.1 s and CPU polls come every 50 ms: the window
    # reaches `kind_margin_s` beyond the episode, or, where polls do not cover that (the
    # profile's first and last moments), is the episode alone.
    margin = params.kind_margin_s
    for lo, hi in ((start - margin, end + margin), (start, end)):
        loop_cpu = cpu_ratio(ep.pid, ep.tid, lo, hi)
        ratios = (cpu_ratio(tl.thread.pid, tl.thread.tid, lo, hi) for tl in pool)
        known = [r for r in ratios if r is not None]
        if loop_cpu is None or not known:
            continue
        if sum(known) < params.gil_workers_min_cpu:
            return None
        # The loop's CPU is set against its busy time, not the window: idle margins do
        # not dilute a loop that computes.
        tl, labels = runs.timeline, runs.labels
        loop_busy_s = sum(
            s for k, s in _overlaps(tl, lo, hi) if labels[k] in (STATE_BUSY, STATE_BLOCKED)
        )
        return GilStall(ep, loop_cpu * (hi - lo), loop_busy_s, sum(known)), busy
    return None


def gil_findings(
    stalls: GilStalls, duration_s: float, loop_threads: int, params: AnalysisParams
) -> list[Finding]:
    """One finding when the GIL stalls add up to more than a one-off; a warning when they
    took a noticeable share of the event loops' time."""
    stalled_ms = stalls.stalled_ms
    if not stalls.stalls or stalled_ms < params.one_off_factor * params.block_threshold_ms:
        return []
    # Only measured GIL holding makes the finding: workers busy on CPU may be in native
    # code that released the GIL (a machine short of cores starves the loop alike).
    if (
        stalls.gil_samples is None
        or stalls.worker_gil_samples < params.finding_min_samples
        or stalls.worker_gil_share < params.gil_workers_min_hold
        or sum(s.episode.samples for s in stalls.stalls) < params.finding_min_samples
    ):
        return []
    loop_ms = duration_s * 1000.0 * max(loop_threads, 1)
    share = stalled_ms / loop_ms if loop_ms > 0 else 0.0
    total = sum(h.samples for h in stalls.holders) or 1
    parts = [
        f"{h.function} ({h.file}:{h.line})"
        + (f" in {h.route}" if h.route else "")
        + f" {h.samples / total:.0%}"
        for h in stalls.holders[:4]
    ]
    pids = {s.episode.pid for s in stalls.stalls}
    top = stalls.holders[0] if stalls.holders else None
    return [
        Finding(
            kind="gil-contention",
            severity="warning" if share >= params.gil_warning_share else "info",
            title="threadpool CPU work starves the event loop of the GIL",
            detail=(
                f"{len(stalls.stalls)} blocking episode(s), {stalled_ms:.0f} ms "
                f"({share:.0%} of the event loop's time), had no line of your code on the "
                f"loop: the loop thread ran only {stalls.loop_cpu_ratio:.0%} of its busy "
                "time, waiting for the GIL, while threadpool workers ran "
                f"{stalls.workers_cpu:.1f} CPU-seconds per second, and held the GIL in "
                f"{stalls.worker_gil_share:.0%} of {stalls.gil_samples} GIL samples "
                "(py-spy --gil). Holding it: "
                + (", ".join(parts) if parts else "no line of your code")
            ),
            advice=(
                "Pure-Python CPU work in a thread still holds the GIL, and the event loop "
                "waits for it between every step. Move the work to a process pool "
                "(`await loop.run_in_executor(process_pool, fn, ...)` with a "
                "`concurrent.futures.ProcessPoolExecutor`), use code that releases the GIL "
                "while it computes (numpy, hashlib on large buffers, native extensions), or "
                "bound how many requests of that route run at once (an `anyio.CapacityLimiter`"
                " or `asyncio.Semaphore`)."
            ),
            pid=next(iter(pids)) if len(pids) == 1 else None,
            subject=(top.route or top.function) if top is not None else None,
        )
    ]
