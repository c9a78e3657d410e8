"""Rebuild the `Profile` from an output directory alone (`asgiprof report`, `diff`, `merge`)."""

from __future__ import annotations

import gc
import heapq
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Any

from asgiprof.errors import CorruptProfileError
from asgiprof.model import (
    COVERAGE_NOTE,
    NO_STACK,
    Chunk,
    Frame,
    GilSamples,
    Interner,
    LoadInfo,
    Profile,
    RateChange,
    Resources,
    RouteTable,
    SamplingInfo,
    TargetInfo,
    ThreadInfo,
    ThreadTimeline,
)
from asgiprof.store.access_log import count_requests
from asgiprof.store.fields import as_dict, as_float, as_int, as_list, read_json
from asgiprof.store.outdir import (
    FORMAT,
    META,
    RAW_DIR,
    RESOURCES,
    SERVER_LOG,
    chunk_files,
    chunk_meta,
    chunk_stem,
    load_load,
    load_routes,
)
from asgiprof.store.pyspy import ThreadSamples, parse_chunk, place_samples, seal
from asgiprof.store.resources import load_resources


def _as_target(data: Mapping[str, Any]) -> TargetInfo:
    exit_status = data.get("exit_status")
    app_spec = data.get("app_spec")
    return TargetInfo(
        pids=tuple(as_int(p) for p in as_list(data.get("pids", ()))),
        command=tuple(str(c) for c in as_list(data.get("command", ()))),
        server=str(data.get("server", "unknown")),
        cwd=str(data.get("cwd", "")),
        python=str(data.get("python", "")),
        app_spec=app_spec if isinstance(app_spec, str) else None,
        mode="attach" if data.get("mode") == "attach" else "run",
        exit_status=as_int(exit_status) if exit_status is not None else None,
    )


def _rate_change(data: Any) -> RateChange:
    if not isinstance(data, dict):
        raise TypeError("a rate change is not a JSON object")
    return RateChange(
        as_float(data.get("at_s")),
        as_int(data.get("from_hz")),
        as_int(data.get("to_hz")),
        str(data.get("reason", "")),
        data.get("scout") is True,
    )


def _trim_overlap(
    threads: list[ThreadSamples],
    longest: int,
    span_start_s: float,
    span_end_s: float,
    keep_from_s: float,
    rate_hz: float,
) -> int:
    """Drop, in place, every sample placed before `keep_from_s` in a chunk that spans
    span_start_s..span_end_s; returns how many instants (of the longest thread) went."""
    dropped_instants = 0
    for ts in threads:
        n = ts.n_samples
        first, period = place_samples(n, longest, span_start_s, span_end_s, rate_hz)
        if period <= 0 or first >= keep_from_s:
            continue
        drop = min(n, math.ceil((keep_from_s - first) / period - 1e-9))
        if n == longest:
            dropped_instants = max(dropped_instants, drop)
        while drop and ts.counts:
            if ts.counts[0] <= drop:
                drop -= ts.counts[0]
                del ts.counts[0], ts.stacks[0]
            else:
                ts.counts[0] -= drop
                drop = 0
    return dropped_instants


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Loading allocates many small tuples that all stay alive: pause the cyclic collector,
    whose passes over them would be wasted work."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True, slots=True)
class _Meta:
    """meta.json, checked."""

    target: TargetInfo
    rate_hz: int
    started_at: float
    duration_s: float
    stopped_by: str
    nonblocking: bool
    rate_changes: tuple[RateChange, ...]
    watchdog: tuple[str, ...]
    max_pause: float
    scout_hz: int

    @property
    def default_pid(self) -> int:
        return self.target.pids[0] if self.target.pids else 0


@dataclass(slots=True)
class _Samples:
    """What the chunks hold: per-thread timelines and each chunk's span and counts."""

    timelines: dict[tuple[int, int], ThreadTimeline] = field(default_factory=dict)
    chunks: list[Chunk] = field(default_factory=list)
    unsealed: int = 0  # chunks py-spy finished after asgiprof died
    prev_end_s: float = 0.0  # where the last chunk kept ended

    @property
    def last_end_s(self) -> float:
        return self.chunks[-1].end_s if self.chunks else 0.0


def load_profile(out: Path) -> Profile:
    """Rebuild the Profile from an output directory (raises CorruptProfileError).

    A damaged chunk is skipped and named in `problems`; so is a chunk py-spy finished after
    asgiprof died (it has no span file: its file time places it, and its secrets are masked
    here). Anything else unreadable is a CorruptProfileError naming the file.
    """
    meta = _read_meta(out)
    frames: list[Frame] = []
    stacks: list[tuple[int, ...]] = []
    interner = Interner(frames, stacks)
    problems: list[str] = []
    raw_dir = out / RAW_DIR
    paths = chunk_files(out)
    samples = _Samples()
    with _gc_paused():  # every chunk: many small objects, all kept
        for path in paths:
            _read_chunk(path, meta, interner, samples, problems)
    gil = _load_gil(raw_dir, interner, meta.default_pid, problems)
    if paths and not samples.chunks:
        raise CorruptProfileError(
            f"no readable py-spy output in {raw_dir}: " + "; ".join(problems[:3])
        )
    res_path = out / RESOURCES
    resources = load_resources(res_path) if res_path.exists() else Resources()
    sampling = _sampling(meta, samples, problems)
    problems.extend(sampling_problems(sampling))
    load = load_load(out)
    routes = load_routes(out)
    problems.extend(_caveats(meta, sampling, load, routes))
    return Profile(
        target=meta.target,
        sampling=sampling,
        frames=frames,
        stacks=stacks,
        threads=sorted(samples.timelines.values(), key=lambda t: (t.thread.pid, t.thread.tid)),
        routes=routes,
        resources=resources,
        problems=problems,
        load=load,
        requests=count_requests(out / SERVER_LOG, routes.routes),
        gil=gil,
    )


def _read_meta(out: Path) -> _Meta:
    if not out.is_dir():
        raise CorruptProfileError(f"{out} is not a directory: give the --out folder of a profile")
    meta = read_json(out / META)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CorruptProfileError(f"{out / META} is not an asgiprof {FORMAT} profile")
    try:
        s = as_dict(meta.get("sampling", {}), "its sampling")
        nonblocking = s.get("nonblocking", False)
        if not isinstance(nonblocking, bool):
            raise TypeError(f"expected true or false for nonblocking, got {nonblocking!r:.40}")
        checked = _Meta(
            target=_as_target(as_dict(meta.get("target", {}), "its target")),
            rate_hz=as_int(s.get("rate_hz", 100)),
            started_at=as_float(s.get("started_at", 0.0)),
            duration_s=as_float(s.get("duration_s", 0.0)),
            stopped_by=str(s.get("stopped_by", "unknown")),
            nonblocking=nonblocking,
            rate_changes=tuple(_rate_change(r) for r in as_list(s.get("rate_changes", []))),
            watchdog=tuple(str(w) for w in as_list(s.get("watchdog", []))),
            max_pause=min(1.0, max(0.0, as_float(s.get("max_pause", 0.0)))),
            scout_hz=max(0, as_int(s.get("scout_hz", 0))),
        )
    except (TypeError, ValueError) as exc:
        raise CorruptProfileError(
            f"{out / META} is damaged ({exc}): it cannot be reported; py-spy's own files are "
            f"in {out / RAW_DIR}"
        ) from exc
    if not 0 < checked.rate_hz <= 100_000:
        raise CorruptProfileError(f"{out / META} is damaged (sampling rate {checked.rate_hz} Hz)")
    return checked


def _read_chunk(
    path: Path, meta: _Meta, interner: Interner, samples: _Samples, problems: list[str]
) -> None:
    """Parse one chunk, place it after the chunks before it and add its threads' runs; a
    damaged chunk is skipped and named in `problems`."""
    cmeta = chunk_meta(path.with_name(f"{chunk_stem(path)}.json"))
    rate_hz = (cmeta["rate_hz"] if cmeta else 0) or meta.rate_hz
    try:
        data = path.read_bytes()
        if cmeta is None:
            samples.unsealed += 1
            data = _seal_late(path, data)
        threads = parse_chunk(data, interner, default_pid=meta.default_pid, rate_hz=rate_hz)
    except CorruptProfileError as exc:
        # A truncated last chunk (py-spy killed mid-write) must not cost the others.
        problems.append(f"unreadable chunk skipped: {path.name}: {exc.message}")
        return
    except OSError as exc:
        problems.append(f"unreadable chunk skipped: {path.name}: {exc.strerror}")
        return
    if cmeta is None:
        cmeta = _unsealed_span(path, threads, meta, samples.prev_end_s)
    chunk = _place_chunk(path, threads, cmeta, samples.prev_end_s, meta.rate_hz)
    samples.prev_end_s = chunk.end_s
    samples.chunks.append(chunk)
    chunk_rate = cmeta["rate_hz"] or meta.rate_hz
    _add_runs(samples.timelines, threads, chunk.start_s, chunk.end_s, chunk_rate)


def _unsealed_span(
    path: Path, threads: list[ThreadSamples], meta: _Meta, prev_end_s: float
) -> dict[str, Any]:
    """asgiprof died before writing the chunk's span: py-spy's file time ends it."""
    longest = max((t.n_samples for t in threads), default=0)
    try:
        end_s = path.stat().st_mtime - meta.started_at
    except OSError:
        end_s = prev_end_s + longest / meta.rate_hz
    return {
        "start_s": end_s - longest / meta.rate_hz,
        "end_s": end_s,
        "samples": sum(t.n_samples for t in threads),
        "errors": 0,
        "intervals": longest,
        "lag_s": 0.0,
        "rate_hz": 0,
        "pause_s": None,
        "written_s": end_s,
    }


def _place_chunk(
    path: Path,
    threads: list[ThreadSamples],
    cmeta: dict[str, Any],
    prev_end_s: float,
    rate_hz: int,
) -> Chunk:
    """The chunk's kept span and counts, its overlap with the chunk before cut (in place)."""
    longest = max((t.n_samples for t in threads), default=0)
    chunk_rate = cmeta["rate_hz"] or rate_hz
    # Each chunk starts while the one before it still samples (a few ms, so that
    # no instant goes unsampled): cut the overlap from this chunk's start, by time
    # alone, so that no instant counts twice and what is cut does not depend on
    # what the target was doing. A chunk that ends before the previous one is damage.
    span_start_s, span_end_s = cmeta["start_s"], max(cmeta["end_s"], cmeta["start_s"])
    timed = any(t.starts is not None for t in threads)
    if timed:  # measured times: the chunk starts at its first sample (seen late, or not)
        written_s = max(cmeta["written_s"], span_end_s)
        span_start_s = min(span_start_s, _align_trace(threads, span_start_s, written_s))
        _clip_trace(threads, span_end_s)
    start_s = max(span_start_s, prev_end_s)
    end_s = max(span_end_s, start_s)
    cut = 0
    if timed:
        cut = _trim_trace(threads, start_s, chunk_rate)
    elif start_s > span_start_s and longest:
        cut = _trim_overlap(threads, longest, span_start_s, span_end_s, start_s, chunk_rate)
    intervals = max(0, (cmeta["intervals"] or longest) - cut)
    samples = max(0, cmeta["samples"] - cut * sum(1 for t in threads if t.n_samples))
    if timed:
        _apportion(threads, samples)
    pause_s = cmeta["pause_s"]
    if pause_s is not None and span_end_s > span_start_s:  # the cut part paused it too
        pause_s = round(pause_s * (end_s - start_s) / (span_end_s - span_start_s), 6)
    return Chunk(
        f"{RAW_DIR}/{path.name}",
        start_s,
        end_s,
        samples,
        cmeta["errors"],
        intervals,
        cmeta["lag_s"],
        cmeta["rate_hz"],
        round(start_s - span_start_s, 6),
        pause_s,
    )


def _add_runs(
    timelines: dict[tuple[int, int], ThreadTimeline],
    threads: list[ThreadSamples],
    start_s: float,
    end_s: float,
    chunk_rate: float,
) -> None:
    """Append each thread's runs of one chunk to its timeline, a gap (NO_STACK) before them
    when the thread was not sampled since its last run."""
    longest = max((t.n_samples for t in threads), default=0)
    for ts in threads:
        key = (ts.thread.pid, ts.thread.tid)
        tl = timelines.get(key)
        if tl is None:
            tl = timelines[key] = ThreadTimeline(ts.thread)
        elif not tl.thread.name and ts.thread.name:
            tl.thread = ThreadInfo(ts.thread.pid, ts.thread.tid, ts.thread.name)
        if ts.starts is not None and ts.ends is not None:
            _append_timed_runs(tl, ts.stacks, ts.counts, ts.starts, ts.ends)
            continue
        first, period = place_samples(ts.n_samples, longest, start_s, end_s, chunk_rate)
        _gap_before(tl, first)
        _append_runs(tl, ts.stacks, ts.counts, first, period)


def _gap_before(tl: ThreadTimeline, first: float) -> None:
    """A gap (NO_STACK) before a run starting at `first` when the thread was not sampled
    since its last run."""
    if len(tl) and tl.stack[-1] != NO_STACK:
        last_end = tl.start_s[-1] + tl.duration_s[-1]
        if first > last_end:
            tl.append(last_end, first - last_end, NO_STACK, 0)


def _append_timed_runs(
    tl: ThreadTimeline, stacks: list[int], counts: list[int], starts: list[float], ends: list[float]
) -> None:
    """Append a chrometrace chunk's runs at their measured times (a run never starts before
    the timeline's end: py-spy's clock and ours differ by microseconds at handover)."""
    for sid, n, start, end in zip(stacks, counts, starts, ends, strict=True):
        if len(tl):
            start = max(start, tl.start_s[-1] + tl.duration_s[-1])
        if end <= start:
            continue
        _gap_before(tl, start)
        tl.append(start, end - start, sid, n)


def _align_trace(threads: list[ThreadSamples], span_start_s: float, span_end_s: float) -> float:
    """Move a chrometrace chunk's times (seconds since py-spy started, which it did before
    attaching) onto the profile's clock, in place. Both measured ends bound the shift from
    above: the sampler sees py-spy's "sampling" line after its first sample, and the file
    after its last event (py-spy stamps it when it writes). The smaller bound is the closer
    one: usually the start (5-60 ms closer in the busy-app runs of bench/README.md), the end
    when our poll saw the start late. Returns the first sample's time."""
    timed = [t for t in threads if t.starts and t.ends]
    if not timed:
        return span_start_s
    first = min(t.starts[0] for t in timed if t.starts)
    last = max(t.ends[-1] for t in timed if t.ends)
    offset = min(span_start_s - first, span_end_s - last)
    for t in timed:
        t.starts = [s + offset for s in t.starts or ()]
        t.ends = [e + offset for e in t.ends or ()]
    return first + offset


def _clip_trace(threads: list[ThreadSamples], end_s: float) -> None:
    """End a chrometrace chunk's runs at `end_s`, in place: py-spy stamps its last runs'
    ends when it writes, after its sampling stopped at the signal."""
    for t in threads:
        if not t.starts or not t.ends:
            continue
        while t.starts and t.starts[-1] >= end_s:
            del t.starts[-1], t.ends[-1], t.stacks[-1], t.counts[-1]
        if t.ends and t.ends[-1] > end_s:
            t.ends[-1] = end_s


def _trim_trace(threads: list[ThreadSamples], keep_from_s: float, rate_hz: float) -> int:
    """Cut, in place, what a chrometrace chunk holds before `keep_from_s` (the chunk before
    it sampled then); returns the instants cut (time cut x rate)."""
    cut_s = 0.0
    for t in threads:
        if not t.starts or not t.ends:
            continue
        cut_s = max(cut_s, min(keep_from_s, t.ends[-1]) - t.starts[0])
        while t.starts and t.ends[0] <= keep_from_s:
            del t.starts[0], t.ends[0], t.stacks[0], t.counts[0]
        if t.starts and t.starts[0] < keep_from_s:
            kept = (t.ends[0] - keep_from_s) / (t.ends[0] - t.starts[0])
            t.counts[0] = max(1, round(t.counts[0] * kept))
            t.starts[0] = keep_from_s
    return max(0, round(cut_s * rate_hz))


def _apportion(threads: list[ThreadSamples], total: int) -> None:
    """Share a chrometrace chunk's `total` samples (py-spy's count, of every thread) out over
    its runs in proportion to their measured durations, at least one each, in place.

    chrometrace records stack changes, not samples: a run's count is estimated from its
    duration. Rounding each on its own counts a one-sample run (whose duration is one
    exponentially spaced interval) as 1.2-1.3 samples on average, so fast-changing stacks
    read ~5% more samples than py-spy took; shared out from the total, the counts add up.
    """
    runs = [
        (t, i, t.ends[i] - t.starts[i])
        for t in threads
        if t.starts is not None and t.ends is not None
        for i in range(len(t.counts))
    ]
    span = sum(d for _, _, d in runs)
    if not runs or span <= 0 or total < len(runs):
        return
    quotas = [total * d / span for _, _, d in runs]
    counts = [max(1, math.floor(q)) for q in quotas]
    short = total - sum(counts)
    if short > 0:  # largest remainders get the samples left over (fewer than the runs)
        for k in sorted(range(len(runs)), key=lambda k: counts[k] - quotas[k])[:short]:
            counts[k] += 1
    # The runs of one sample that were shorter than a sample's share made up the surplus:
    # the runs most over their quota give it back, one sample at a time.
    heap = [(quotas[k] - counts[k], k) for k in range(len(runs)) if counts[k] > 1]
    heapq.heapify(heap)
    while short < 0 and heap:
        _, k = heapq.heappop(heap)
        counts[k] -= 1
        short += 1
        if counts[k] > 1:
            heapq.heappush(heap, (quotas[k] - counts[k], k))
    for (t, i, _), n in zip(runs, counts, strict=True):
        t.counts[i] = n


def _sampling(meta: _Meta, samples: _Samples, problems: list[str]) -> SamplingInfo:
    last_end_s = samples.last_end_s
    stopped_by, duration_s = meta.stopped_by, meta.duration_s
    if stopped_by == "running":
        # meta.json is rewritten when sampling ends: asgiprof was killed before that.
        stopped_by = "unfinished"
        duration_s = last_end_s
        problems.append(
            f"asgiprof stopped before it finished (killed?): this report covers the "
            f"{last_end_s:.1f} s saved until then"
            + (
                f", {samples.unsealed} chunk(s) of which py-spy wrote after asgiprof died"
                if samples.unsealed
                else ""
            )
        )
    chunks = samples.chunks
    return SamplingInfo(
        rate_hz=meta.rate_hz,
        started_at=meta.started_at,
        duration_s=max(duration_s, last_end_s),
        samples=sum(c.samples for c in chunks),
        errors=sum(c.errors for c in chunks),
        chunks=tuple(chunks),
        stopped_by=stopped_by,
        nonblocking=meta.nonblocking,
        rate_changes=meta.rate_changes,
        watchdog=meta.watchdog,
        max_pause=meta.max_pause,
        scout_hz=meta.scout_hz,
    )


def _caveats(
    meta: _Meta, sampling: SamplingInfo, load: LoadInfo | None, routes: RouteTable
) -> list[str]:
    """The report's sentences about the load, the watchdog, the route table and the end."""
    caveats: list[str] = []
    if load is not None and load.failure is not None:
        caveats.append(f"{load.failure}: the profile may not show the load you meant (load.log)")
    caveats.extend(f"watchdog: {event}" for event in meta.watchdog)
    if routes.dependency_error is not None:
        caveats.append(routes.dependency_error)
    if sampling.stopped_by == "target-exit" and meta.target.exit_status is None:
        caveats.append(
            "the target exited while sampled (its exit status is known only to its parent "
            "process): the report covers the time until then"
        )
    return caveats


def _load_gil(
    raw_dir: Path, interner: Interner, default_pid: int, problems: list[str]
) -> GilSamples | None:
    """The `--gil` windows (record/gil_sampler.py): GIL-holding samples per thread; None
    when there are none (sampled before they existed, or every window failed)."""
    try:
        paths = sorted(raw_dir.glob("gil-*.speedscope.json")) if raw_dir.is_dir() else []
    except OSError:
        return None
    gil = GilSamples(windows=0, seconds=0.0)
    for path in paths:
        meta = chunk_meta(raw_dir / path.name.replace(".speedscope.json", ".json"))
        try:
            data = path.read_bytes()
            if meta is None:  # py-spy finished it after asgiprof died: never sealed
                data = _seal_late(path, data)
            threads = parse_chunk(data, interner, default_pid=default_pid)
        except (CorruptProfileError, OSError):
            problems.append(f"unreadable GIL window skipped: {path.name}")
            continue
        gil.windows += 1
        if meta is not None:
            gil.seconds += meta["end_s"] - meta["start_s"]
        for ts in threads:
            held = gil.held.setdefault((ts.thread.pid, ts.thread.tid), {})
            for sid, n in zip(ts.stacks, ts.counts, strict=True):
                held[sid] = held.get(sid, 0) + n
    return gil if gil.windows else None


# Below this, the report says how much time between chunks went unsampled (see
# `sampling_problems`; py-spy falling behind is `SamplingInfo.fell_behind`).
MIN_SPAN_COVERAGE = 0.98


MAX_ERROR_SHARE = 0.01
# A chunk's pause share moves with its stacks (their depth, the threads alive): only a
# share this far over --max-pause lowers the sampler's rate, and a run's share this far
# over it, or this high whatever the limit, is said in the report (its latencies and
# throughput were the profiler's too).
PAUSE_SLACK = 1.2
NOTABLE_PAUSE = 0.1


def _scouting(sampling: SamplingInfo) -> str:
    """What --scout-rate did: how long the sampler ran at the full rate, and why."""
    scout = sampling.scout_hz
    # A loaded chunk's span starts after its overlap with the one before is cut.
    fast = [c for c in sampling.chunks if sampling.chunk_rate(c) > scout]
    full_s = sum(max(0.0, c.end_s - c.start_s) for c in fast)
    total_s = sampling.spanned_s
    raised = [c for c in sampling.rate_changes if c.scout and c.to_hz > c.from_hz]
    first = f"; first at {raised[0].at_s:.1f} s: {raised[0].reason}" if raised else ""
    return (
        f"--scout-rate {scout}: sampled at {scout} Hz while the event loop held no line "
        f"across samples, faster for {full_s:.1f} s of {total_s:.1f} s{first}. Blocks "
        f"shorter than ~{2000 // scout} ms seen only while scouting may be missed"
    )


def sampling_problems(sampling: SamplingInfo) -> list[str]:
    """Sentences for the report when py-spy fell behind or failed to read samples."""
    problems: list[str] = []
    intervals = sampling.intervals
    if sampling.fell_behind:
        lag = (
            f"; it reported falling up to {sampling.max_lag_s:.1f} s behind"
            if sampling.max_lag_s
            else ""
        )
        problems.append(
            f"{COVERAGE_NOTE}{intervals} of the {sampling.asked:.0f} instants asked for "
            f"({sampling.coverage:.0%}): it fell {sampling.behind_s:.1f} s behind its rate"
            f"{lag}; times are estimates, lower --rate or load the machine less"
        )
    if sampling.gaps_s > 0 and sampling.span_coverage < MIN_SPAN_COVERAGE:
        problems.append(
            f"{sampling.gaps_s:.1f} s ({1 - sampling.span_coverage:.0%}) between py-spy's "
            "chunks went unsampled (one py-spy ended before the next sampled): blocks "
            "there are missing"
        )
    if sampling.scout_hz:
        problems.append(_scouting(sampling))
    for change in sampling.rate_changes:
        if change.scout:
            continue  # summed up in the scouting note
        verb = "lowered" if change.to_hz < change.from_hz else "raised"
        problems.append(
            f"the sampler {verb} its rate from {change.from_hz} to {change.to_hz} Hz at "
            f"{change.at_s:.1f} s: {change.reason}"
        )
    pause = sampling.pause_share
    limit = sampling.max_pause
    if pause is not None and (
        pause >= NOTABLE_PAUSE or (limit > 0 and pause > limit * PAUSE_SLACK)
    ):
        allowed = f" (--max-pause {limit:.0%})" if limit > 0 else ""
        problems.append(
            f"py-spy held the target paused {pause:.1%} of the time{allowed}: it served "
            "less, and slower, while sampled. Each sample reads every thread's stack with "
            "the target stopped (~15 us a frame): a lower --max-pause lowers the rate, "
            "--nonblocking does not pause it"
        )
    if intervals and sampling.errors > MAX_ERROR_SHARE * intervals:
        problems.append(
            f"py-spy failed to read {sampling.errors} samples ({sampling.errors / intervals:.1%}"
            " of instants): those moments are missing from the report"
        )
    return problems


def _seal_late(path: Path, data: bytes) -> bytes:
    """A chunk py-spy finished after asgiprof died was never sealed: mask its secrets now
    (in place when the directory is writable)."""
    sealed, _ = seal(data)
    if sealed is None:
        return data
    try:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(sealed)
        os.replace(tmp, path)
    except OSError:
        pass
    return sealed


def _append_runs(
    tl: ThreadTimeline, stacks: list[int], counts: list[int], first: float, period: float
) -> None:
    """Append one chunk's runs to the timeline, in bulk (runs never merge across chunks)."""
    if not counts:
        return
    durations = [n * period for n in counts]
    starts = accumulate(durations[:-1], initial=first)  # the same sums, in the same order
    tl.start_s.extend(starts)
    tl.duration_s.extend(durations)
    tl.stack.extend(stacks)
    tl.samples.extend(counts)
