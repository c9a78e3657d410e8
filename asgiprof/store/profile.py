"""Rebuild the `Profile` from an output directory alone (`asgiprof report`, `diff`, `merge`)."""

from __future__ import annotations

import gc
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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
    Profile,
    RateChange,
    Resources,
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


def load_profile(out: Path) -> Profile:
    """Rebuild the Profile from an output directory (raises CorruptProfileError).

    A damaged chunk is skipped and named in `problems`; so is a chunk py-spy finished after
    asgiprof died (it has no span file: its file time places it, and its secrets are masked
    here). Anything else unreadable is a CorruptProfileError naming the file.
    """
    if not out.is_dir():
        raise CorruptProfileError(f"{out} is not a directory: give the --out folder of a profile")
    meta = read_json(out / META)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CorruptProfileError(f"{out / META} is not an asgiprof {FORMAT} profile")
    try:
        target = _as_target(as_dict(meta.get("target", {}), "its target"))
        s = as_dict(meta.get("sampling", {}), "its sampling")
        rate_hz = as_int(s.get("rate_hz", 100))
        started_at = as_float(s.get("started_at", 0.0))
        saved_duration_s = as_float(s.get("duration_s", 0.0))
        stopped_by = str(s.get("stopped_by", "unknown"))
        nonblocking = s.get("nonblocking", False)
        if not isinstance(nonblocking, bool):
            raise TypeError(f"expected true or false for nonblocking, got {nonblocking!r:.40}")
        rate_changes = tuple(_rate_change(r) for r in as_list(s.get("rate_changes", [])))
        watchdog = tuple(str(w) for w in as_list(s.get("watchdog", [])))
    except (TypeError, ValueError) as exc:
        raise CorruptProfileError(
            f"{out / META} is damaged ({exc}): it cannot be reported; py-spy's own files are "
            f"in {out / RAW_DIR}"
        ) from exc
    if not 0 < rate_hz <= 100_000:
        raise CorruptProfileError(f"{out / META} is damaged (sampling rate {rate_hz} Hz)")
    default_pid = target.pids[0] if target.pids else 0

    frames: list[Frame] = []
    stacks: list[tuple[int, ...]] = []
    interner = Interner(frames, stacks)
    timelines: dict[tuple[int, int], ThreadTimeline] = {}
    chunks: list[Chunk] = []
    problems: list[str] = []
    unsealed = 0

    raw_dir = out / RAW_DIR
    paths = chunk_files(out)
    prev_end_s = 0.0
    with _gc_paused():  # every chunk: many small objects, all kept
        for path in paths:
            stem = path.name.removesuffix(".speedscope.json")
            cmeta = chunk_meta(raw_dir / f"{stem}.json")
            try:
                data = path.read_bytes()
                if cmeta is None:
                    unsealed += 1
                    data = _seal_late(path, data)
                threads = parse_chunk(data, interner, default_pid=default_pid)
            except CorruptProfileError as exc:
                # A truncated last chunk (py-spy killed mid-write) must not cost the others.
                problems.append(f"unreadable chunk skipped: {path.name}: {exc.message}")
                continue
            except OSError as exc:
                problems.append(f"unreadable chunk skipped: {path.name}: {exc.strerror}")
                continue
            longest = max((t.n_samples for t in threads), default=0)
            if cmeta is None:
                # asgiprof died before writing the chunk's span: py-spy's file time ends it.
                try:
                    end_s = path.stat().st_mtime - started_at
                except OSError:
                    end_s = prev_end_s + longest / rate_hz
                cmeta = {
                    "start_s": end_s - longest / rate_hz,
                    "end_s": end_s,
                    "samples": sum(t.n_samples for t in threads),
                    "errors": 0,
                    "intervals": longest,
                    "lag_s": 0.0,
                    "rate_hz": 0,
                }
            chunk_rate = cmeta["rate_hz"] or rate_hz
            # Each chunk starts while the one before it still samples (a few ms, so that
            # no instant goes unsampled): cut the overlap from this chunk's start, by time
            # alone, so that no instant counts twice and what is cut does not depend on
            # what the target was doing. A chunk that ends before the previous one is damage.
            span_start_s, span_end_s = cmeta["start_s"], max(cmeta["end_s"], cmeta["start_s"])
            start_s = max(span_start_s, prev_end_s)
            end_s = max(span_end_s, start_s)
            prev_end_s = end_s
            cut = 0
            if start_s > span_start_s and longest:
                cut = _trim_overlap(threads, longest, span_start_s, span_end_s, start_s, chunk_rate)
            intervals = max(0, (cmeta["intervals"] or longest) - cut)
            samples = max(0, cmeta["samples"] - cut * sum(1 for t in threads if t.n_samples))
            chunks.append(
                Chunk(
                    f"{RAW_DIR}/{path.name}",
                    start_s,
                    end_s,
                    samples,
                    cmeta["errors"],
                    intervals,
                    cmeta["lag_s"],
                    cmeta["rate_hz"],
                    round(start_s - span_start_s, 6),
                )
            )
            longest = max((t.n_samples for t in threads), default=0)
            for ts in threads:
                key = (ts.thread.pid, ts.thread.tid)
                tl = timelines.get(key)
                if tl is None:
                    tl = timelines[key] = ThreadTimeline(ts.thread)
                elif not tl.thread.name and ts.thread.name:
                    tl.thread = ThreadInfo(ts.thread.pid, ts.thread.tid, ts.thread.name)
                first, period = place_samples(ts.n_samples, longest, start_s, end_s, chunk_rate)
                if len(tl) and tl.stack[-1] != NO_STACK:
                    last_end = tl.start_s[-1] + tl.duration_s[-1]
                    if first > last_end:
                        tl.append(last_end, first - last_end, NO_STACK, 0)
                _append_runs(tl, ts.stacks, ts.counts, first, period)

    gil = _load_gil(raw_dir, interner, default_pid, problems)

    if paths and not chunks:
        raise CorruptProfileError(
            f"no readable py-spy output in {raw_dir}: " + "; ".join(problems[:3])
        )

    res_path = out / RESOURCES
    resources = load_resources(res_path) if res_path.exists() else Resources()

    last_end_s = chunks[-1].end_s if chunks else 0.0
    duration_s = saved_duration_s
    if stopped_by == "running":
        # meta.json is rewritten when sampling ends: asgiprof was killed before that.
        stopped_by = "unfinished"
        duration_s = last_end_s
        problems.append(
            f"asgiprof stopped before it finished (killed?): this report covers the "
            f"{last_end_s:.1f} s saved until then"
            + (
                f", {unsealed} chunk(s) of which py-spy wrote after asgiprof died"
                if unsealed
                else ""
            )
        )
    duration_s = max(duration_s, last_end_s)
    sampling = SamplingInfo(
        rate_hz=rate_hz,
        started_at=started_at,
        duration_s=duration_s,
        samples=sum(c.samples for c in chunks),
        errors=sum(c.errors for c in chunks),
        chunks=tuple(chunks),
        stopped_by=stopped_by,
        nonblocking=nonblocking,
        rate_changes=rate_changes,
        watchdog=watchdog,
    )
    problems.extend(sampling_problems(sampling))
    load = load_load(out)
    if load is not None and load.failure is not None:
        problems.append(f"{load.failure}: the profile may not show the load you meant (load.log)")
    problems.extend(f"watchdog: {event}" for event in watchdog)
    routes = load_routes(out)
    if routes.dependency_error is not None:
        problems.append(routes.dependency_error)
    if stopped_by == "target-exit" and target.exit_status is None:
        problems.append(
            "the target exited while sampled (its exit status is known only to its parent "
            "process): the report covers the time until then"
        )
    profile = Profile(
        target=target,
        sampling=sampling,
        frames=frames,
        stacks=stacks,
        threads=sorted(timelines.values(), key=lambda t: (t.thread.pid, t.thread.tid)),
        routes=routes,
        resources=resources,
        problems=problems,
        load=load,
        requests=count_requests(out / SERVER_LOG, routes.routes),
        gil=gil,
    )
    return profile


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


# Below these, the report says how much py-spy missed (see `sampling_problems`).
MIN_COVERAGE = 0.9


MAX_ERROR_SHARE = 0.01


def sampling_problems(sampling: SamplingInfo) -> list[str]:
    """Sentences for the report when py-spy fell behind or failed to read samples."""
    problems: list[str] = []
    intervals = sampling.intervals
    # What the rates asked for (one rate: rate x duration).
    expected = (
        round(intervals / sampling.coverage)
        if sampling.coverage > 0
        else round(sampling.rate_hz * sampling.duration_s)
    )
    if expected >= sampling.rate_hz and intervals and sampling.coverage < MIN_COVERAGE:
        lag = (
            f"; it reported falling up to {sampling.max_lag_s:.1f} s behind"
            if sampling.max_lag_s
            else ""
        )
        problems.append(
            f"{COVERAGE_NOTE}{intervals} of the {expected} instants asked for "
            f"({sampling.coverage:.0%}): it fell {sampling.behind_s:.1f} s behind its rate"
            f"{lag}; times are estimates, lower --rate or load the machine less"
        )
    for change in sampling.rate_changes:
        verb = "lowered" if change.to_hz < change.from_hz else "raised"
        problems.append(
            f"the sampler {verb} its rate from {change.from_hz} to {change.to_hz} Hz at "
            f"{change.at_s:.1f} s: {change.reason}"
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
