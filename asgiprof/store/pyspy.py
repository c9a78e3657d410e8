"""Parse one py-spy chunk into per-thread sample runs of the shared model.

Two formats. `chrometrace` (what the sampler records): begin/end events per frame, written
when a thread's stack changes, each with the time py-spy took that sample, so every run
carries its measured start and end (`ThreadSamples.starts`/`ends`). `speedscope` (output
directories written before, and the `--gil` windows): every thread's samples in order but no
timestamps; the sampler records each chunk's wall-clock span and `place_samples` spreads the
samples over it, which reads CPU blocks short and sleeps long when py-spy falls behind a
busy target on a starved machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TypedDict

import orjson

from asgiprof.errors import CorruptProfileError
from asgiprof.model import Frame, Interner, ThreadInfo
from asgiprof.redact import redact_text


class SpeedscopeFrame(TypedDict, total=False):
    name: str
    file: str
    line: int | None


class SpeedscopeProfile(TypedDict, total=False):
    type: str
    name: str
    samples: list[list[int]]
    weights: list[float]


# Root frames added by py-spy's --threads and --subprocesses: not code, but identity.
# Native threads (granian's Rust workers) come without a name: `thread (27135)`.
_THREAD_FRAME = re.compile(r"^thread \((\d+|0x[0-9a-fA-F]+)\)(?:: ?(.*))?$", re.DOTALL)
_PROCESS_FRAME = re.compile(r'^process (\d+):"', re.DOTALL)
_PROFILE_NAME = re.compile(r'^(?:Process (\d+) )?Thread (\d+) "(.*)"$', re.DOTALL)
_NO_SAMPLE = object()  # equal to no sample, not even to a malformed one


@dataclass(slots=True)
class ThreadSamples:
    """One thread's samples in one chunk, run-length encoded: `counts[i]` consecutive
    samples of interned stack `stacks[i]`, in sample order."""

    thread: ThreadInfo
    stacks: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    # chrometrace only: each run's measured start and end, seconds since py-spy started
    # (counts are then estimated from the durations at the chunk's rate).
    starts: list[float] | None = None
    ends: list[float] | None = None

    @property
    def n_samples(self) -> int:
        return sum(self.counts)

    @property
    def stack_ids(self) -> list[int]:
        """One stack id per sample (expanded runs)."""
        return [sid for sid, n in zip(self.stacks, self.counts, strict=True) for _ in range(n)]


def _frame_of(raw: object) -> SpeedscopeFrame:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise CorruptProfileError("speedscope frame without a name")
    line = raw.get("line")
    file = raw.get("file")
    return {
        "name": raw["name"],
        "file": file if isinstance(file, str) else "",
        "line": line if isinstance(line, int) else 0,
    }


def is_chrometrace(data: bytes) -> bool:
    """A chrometrace document is a JSON list of events; a speedscope one is an object."""
    return data.lstrip()[:1] == b"["


def parse_chunk(
    data: bytes, interner: Interner, *, default_pid: int, rate_hz: float = 100.0
) -> list[ThreadSamples]:
    """Decode a speedscope or chrometrace document written by `py-spy record --threads
    [--subprocesses]` (`rate_hz`: the chunk's rate, for chrometrace's sample counts).

    Raises CorruptProfileError for anything that is not such a document (truncated files
    included); never returns partial garbage.
    """
    if is_chrometrace(data):
        return parse_trace(data, interner, default_pid=default_pid, rate_hz=rate_hz)
    raw_frames, profiles = _document(data)
    kinds = _frame_kinds(raw_frames, interner)
    # Stacks already seen in this chunk, shared by its threads: code-frame raw indexes (the
    # sample without its leading process/thread root frames) -> interned stack id. Most
    # samples repeat the sample before them (an idle thread, a long block) or a stack seen
    # before, so they cost one list comparison or one slice and one dict lookup.
    seen: dict[tuple[int, ...], int] = {}
    return [_thread_samples(prof, kinds, interner, seen, default_pid) for prof in profiles]


def _document(data: bytes) -> tuple[list[object], list[object]]:
    """The frame table and the profiles of a speedscope document."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CorruptProfileError(f"not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise CorruptProfileError("not a speedscope document")
    shared = doc.get("shared")
    profiles = doc.get("profiles")
    if not isinstance(shared, dict) or not isinstance(profiles, list):
        raise CorruptProfileError("speedscope document without shared frames or profiles")
    raw_frames = shared.get("frames")
    if not isinstance(raw_frames, list):
        raise CorruptProfileError("speedscope document without a frame table")
    return raw_frames, profiles


# Per raw frame index: ("thread", tid, name) / ("process", pid, "") / ("code", frame id, "").
_Kinds = list[tuple[str, int, str]]


def _frame_kinds(raw_frames: list[object], interner: Interner) -> _Kinds:
    return [_kind_of(_frame_of(raw), interner) for raw in raw_frames]


def _kind_of(frame: SpeedscopeFrame, interner: Interner) -> tuple[str, int, str]:
    name = frame["name"]
    if not frame.get("file"):
        m = _THREAD_FRAME.match(name)
        if m:
            tid_text = m.group(1)
            tid = int(tid_text, 16) if tid_text.startswith("0x") else int(tid_text)
            return ("thread", tid, m.group(2) or "")
        m = _PROCESS_FRAME.match(name)
        if m:
            return ("process", int(m.group(1)), "")
    fid = interner.frame(Frame(name, frame.get("file", ""), frame.get("line") or 0))
    return ("code", fid, "")


@dataclass(slots=True)
class _Identity:
    """The thread a profile's samples belong to: from its name, then from root frames."""

    pid: int
    tid: int = 0
    name: str = ""


def _identity(profile_name: object, default_pid: int) -> _Identity:
    m = _PROFILE_NAME.match(str(profile_name))
    if not m:
        return _Identity(default_pid)
    return _Identity(int(m.group(1)) if m.group(1) else default_pid, int(m.group(2)), m.group(3))


def _thread_samples(
    prof: object,
    kinds: _Kinds,
    interner: Interner,
    seen: dict[tuple[int, ...], int],
    default_pid: int,
) -> ThreadSamples:
    """One profile (thread) of the document, run-length encoded."""
    if not isinstance(prof, dict) or not isinstance(prof.get("samples"), list):
        raise CorruptProfileError("speedscope profile without samples")
    who = _identity(prof.get("name", ""), default_pid)
    stacks: list[int] = []
    counts: list[int] = []
    prev: object = _NO_SAMPLE
    roots: list[int] | None = None  # this thread's leading root frames, once known
    n_roots = 0
    for sample in prof["samples"]:
        if sample == prev:
            counts[-1] += 1
            continue
        if not isinstance(sample, list):
            raise CorruptProfileError("speedscope sample is not a list of frame indexes")
        sid = -1
        if roots is not None and sample[:n_roots] == roots:
            sid = _seen_stack(tuple(sample[n_roots:]), kinds, interner, seen)
        if sid < 0:
            sid, leading = _any_stack(sample, kinds, interner, who)
            if leading >= 0:
                roots, n_roots = sample[:leading], leading
                seen[tuple(sample[leading:])] = sid
        if stacks and stacks[-1] == sid:  # another list for the same stack
            counts[-1] += 1
        else:
            stacks.append(sid)
            counts.append(1)
        prev = sample
    return ThreadSamples(ThreadInfo(who.pid, who.tid, who.name), stacks, counts)


def _seen_stack(
    key: tuple[int, ...], kinds: _Kinds, interner: Interner, seen: dict[tuple[int, ...], int]
) -> int:
    """The stack id of a sample after this thread's root frames, remembered in `seen`;
    -1 when a root frame follows (then the general path decides)."""
    try:
        sid = seen.get(key, -1)
    except TypeError:  # a list or object where a frame index belongs
        raise CorruptProfileError("speedscope sample refers to a missing frame") from None
    if sid < 0:
        sid = _code_stack(key, kinds, len(kinds), interner)
        if sid >= 0:
            seen[key] = sid
    return sid


def _any_stack(
    sample: list[object], kinds: _Kinds, interner: Interner, who: _Identity
) -> tuple[int, int]:
    """The general path: any frame may be a root frame, and updates `who`. Returns the
    stack id and the number of leading root frames when code frames alone follow them
    (else -1)."""
    code: list[int] = []
    leading = 0
    n_raw = len(kinds)
    for pos, idx in enumerate(sample):
        if not isinstance(idx, int) or not 0 <= idx < n_raw:
            raise CorruptProfileError("speedscope sample refers to a missing frame")
        kind, value, text = kinds[idx]
        if kind == "code":
            code.append(value)
            continue
        if leading == pos:
            leading += 1
        if kind == "thread":
            who.tid, who.name = value, text or who.name
        else:
            who.pid = value
    sid = interner.stack(tuple(code))
    return sid, (leading if leading + len(code) == len(sample) else -1)


def _code_stack(key: tuple[int, ...], kinds: _Kinds, n_raw: int, interner: Interner) -> int:
    """Interned stack id of raw frame indexes that are all code frames, else -1."""
    code: list[int] = []
    for idx in key:
        if not isinstance(idx, int) or not 0 <= idx < n_raw:
            raise CorruptProfileError("speedscope sample refers to a missing frame")
        kind, value, _ = kinds[idx]
        if kind != "code":
            return -1
        code.append(value)
    return interner.stack(tuple(code))


# -- chrometrace -----------------------------------------------------------------------------
# py-spy's chrometrace recorder (src/chrometrace.rs) writes, for each sample of a thread
# whose stack differs from its previous sample, end events for the frames that left (leaf
# first) and begin events for the frames that came (root first), all stamped with one
# time: microseconds since py-spy started (before it attached). When it stops it ends every
# open frame at the time it writes. A run of one stack thus lasts from the sample that
# first saw it to the sample that first saw another: measured, not spread evenly.

_FrameKey = tuple[str, str, int]


@dataclass(slots=True)
class _TraceThread:
    """One thread's open frames while its events are read, and its runs so far."""

    who: _Identity
    frames: list[_FrameKey] = field(default_factory=list)  # open frames, root first
    code: list[int] = field(default_factory=list)  # their code frames' ids, root first
    at_us: int = -1  # time of the latest group of events
    run_sid: int = -1  # the stack of the open run (-1: none)
    run_us: int = 0
    stacks: list[int] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)


def parse_trace(
    data: bytes, interner: Interner, *, default_pid: int, rate_hz: float = 100.0
) -> list[ThreadSamples]:
    """Decode a chrometrace document written by `py-spy record --format chrometrace
    --threads [--subprocesses]`. Raises CorruptProfileError."""
    try:
        events = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CorruptProfileError(f"not valid JSON ({exc})") from exc
    if not isinstance(events, list):
        raise CorruptProfileError("not a chrometrace document")
    kinds: dict[_FrameKey, tuple[str, int, str]] = {}
    seen: dict[tuple[int, ...], int] = {}
    threads: dict[tuple[int, int], _TraceThread] = {}
    for event in events:
        phase, key, pid, tid, ts = _event_fields(event)
        th = threads.get((pid, tid))
        if th is None:
            th = threads[pid, tid] = _TraceThread(_Identity(pid or default_pid))
        if ts != th.at_us:
            if ts < th.at_us:
                raise CorruptProfileError("chrometrace events go back in time")
            _close_group(th, interner, seen)
            th.at_us = ts
        kind = kinds.get(key)
        if kind is None:
            kind = kinds[key] = _kind_of({"name": key[0], "file": key[1], "line": key[2]}, interner)
        _apply_event(th, phase, key, kind)
    result = []
    for th in threads.values():
        _close_group(th, interner, seen)
        _end_run(th)
        counts = [max(1, round((e - s) * rate_hz)) for s, e in zip(th.starts, th.ends, strict=True)]
        who = th.who
        result.append(
            ThreadSamples(
                ThreadInfo(who.pid, who.tid, who.name), th.stacks, counts, th.starts, th.ends
            )
        )
    return result


def _event_fields(event: object) -> tuple[str, _FrameKey, int, int, int]:
    """(phase, frame, pid, tid, ts) of one event, checked."""
    if not isinstance(event, dict):
        raise CorruptProfileError("chrometrace event is not an object")
    phase, name, args = event.get("ph"), event.get("name"), event.get("args")
    if phase not in ("B", "E") or not isinstance(name, str) or not isinstance(args, dict):
        raise CorruptProfileError("chrometrace event without a phase, a name or args")
    file, line = args.get("filename", ""), args.get("line")
    pid, tid, ts = event.get("pid"), event.get("tid"), event.get("ts")
    if type(pid) is not int or type(tid) is not int or type(ts) is not int or ts < 0:
        raise CorruptProfileError("chrometrace event without a pid, tid or time")
    if not isinstance(file, str):
        raise CorruptProfileError("chrometrace event whose file is not text")
    return phase, (name, file, line if type(line) is int else 0), pid, tid, ts


def _apply_event(th: _TraceThread, phase: str, key: _FrameKey, kind: tuple[str, int, str]) -> None:
    what, value, text = kind
    if phase == "B":
        th.frames.append(key)
        if what == "code":
            th.code.append(value)
        elif what == "thread":
            th.who.tid, th.who.name = value, text or th.who.name
        else:
            th.who.pid = value
        return
    if not th.frames or th.frames[-1] != key:
        raise CorruptProfileError("chrometrace ends a frame that is not the innermost open one")
    th.frames.pop()
    if what == "code":
        th.code.pop()


def _close_group(th: _TraceThread, interner: Interner, seen: dict[tuple[int, ...], int]) -> None:
    """The events at `th.at_us` are all read: the stack they left starts a run there."""
    if th.at_us < 0:
        return
    if not th.frames:
        _end_run(th)
        return
    key = tuple(th.code)
    sid = seen.get(key)
    if sid is None:
        sid = seen[key] = interner.stack(key)
    if sid != th.run_sid:  # root frames alone changed (a renamed thread): the run goes on
        _end_run(th)
        th.run_sid, th.run_us = sid, th.at_us


def _end_run(th: _TraceThread) -> None:
    if th.run_sid >= 0 and th.at_us > th.run_us:
        th.stacks.append(th.run_sid)
        th.starts.append(th.run_us / 1e6)
        th.ends.append(th.at_us / 1e6)
    th.run_sid = -1


def place_samples(
    n_samples: int, longest: int, start_s: float, end_s: float, rate_hz: float
) -> tuple[float, float]:
    """(time of the first sample, seconds per sample) for a thread with `n_samples`.

    The thread with the most samples spans the chunk, whose start and end the sampler
    measured (py-spy's "sampling" line, its output file appearing): a sample stands for
    span / samples seconds. That is 1/rate on average when py-spy keeps up (its spacing is
    exponential around 1/rate, so per chunk it varies by about 1/sqrt(samples)), and more
    when it falls behind a busy target: then 1/rate would undercount the time. A thread
    with fewer samples started (or ended) inside the chunk: we align it to the end, since
    servers start threads lazily (worker threads) far more often than they end them.
    """
    span = max(end_s - start_s, 0.0)
    nominal = 1.0 / rate_hz
    period = span / longest if longest > 0 else nominal
    # A span far longer than the samples explain means a clock went wrong, not py-spy
    # (samples must still fit inside the span, so no lower bound).
    period = min(period, nominal * 4)
    first = end_s - n_samples * period
    return max(first, start_s), period


_PROCESS_COMMAND = re.compile(r'^(process \d+:")(.*)("\s*)$', re.DOTALL)


def seal(data: bytes, samples: int = 0) -> tuple[bytes | None, int]:
    """Check a chunk py-spy just wrote and mask the secrets its `--subprocesses` root frames
    copy from command lines (`process PID:"uvicorn app --token=..."`).

    Returns (the document to write back, or None when nothing was masked; the number of
    sampling instants: the longest thread's sample count, or for chrometrace, which does not
    count samples, py-spy's `samples` (thread stacks) over the threads' sampled time).
    Raises CorruptProfileError.
    """
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CorruptProfileError(f"not valid JSON ({exc})") from exc
    if isinstance(doc, list):
        return _seal_trace(doc, samples)
    shared = doc.get("shared") if isinstance(doc, dict) else None
    frames = shared.get("frames") if isinstance(shared, dict) else None
    profiles = doc.get("profiles") if isinstance(doc, dict) else None
    if not isinstance(frames, list) or not isinstance(profiles, list):
        raise CorruptProfileError("not a speedscope document")
    masked = False
    for frame in frames:
        masked = _mask_name(frame) or masked
    intervals = max(
        (
            len(p["samples"])
            for p in profiles
            if isinstance(p, dict) and isinstance(p.get("samples"), list)
        ),
        default=0,
    )
    return (orjson.dumps(doc) if masked else None), intervals


def _mask_name(holder: object) -> bool:
    """Mask the command line in a process root frame's `name`; True when it changed."""
    name = holder.get("name") if isinstance(holder, dict) else None
    m = _PROCESS_COMMAND.match(name) if isinstance(name, str) else None
    if m is None or not isinstance(holder, dict):
        return False
    safe = m[1] + redact_text(m[2]) + m[3]
    if safe == name:
        return False
    holder["name"] = safe
    return True


def _seal_trace(events: list[object], samples: int) -> tuple[bytes | None, int]:
    masked = False
    spans: dict[tuple[int, int], list[int]] = {}
    for event in events:
        if not isinstance(event, dict):
            raise CorruptProfileError("chrometrace event is not an object")
        masked = _mask_name(event) or masked
        ts, pid, tid = event.get("ts"), event.get("pid"), event.get("tid")
        if type(ts) is int and type(pid) is int and type(tid) is int:
            span = spans.setdefault((pid, tid), [ts, ts])
            span[0], span[1] = min(span[0], ts), max(span[1], ts)
    # Every live thread is sampled at every instant (--idle): instants = stacks per
    # second of thread time x the chunk's span.
    thread_us = sum(hi - lo for lo, hi in spans.values())
    chunk_us = max((hi for _, hi in spans.values()), default=0) - min(
        (lo for lo, _ in spans.values()), default=0
    )
    intervals = round(samples * chunk_us / thread_us) if thread_us > 0 else 0
    return (orjson.dumps(events) if masked else None), intervals
