"""Parse one py-spy speedscope chunk into per-thread sample runs of the shared model.

py-spy's speedscope output keeps every thread's samples in order but carries no
timestamps; the sampler records each chunk's wall-clock span and this module places the
samples inside it (see `place_samples`).
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


def parse_chunk(data: bytes, interner: Interner, *, default_pid: int) -> list[ThreadSamples]:
    """Decode a speedscope document written by `py-spy record --threads [--subprocesses]`.

    Raises CorruptProfileError for anything that is not such a document (truncated files
    included); never returns partial garbage.
    """
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
    kinds: _Kinds = []
    for raw in raw_frames:
        frame = _frame_of(raw)
        name = frame["name"]
        if not frame.get("file"):
            m = _THREAD_FRAME.match(name)
            if m:
                tid_text = m.group(1)
                tid = int(tid_text, 16) if tid_text.startswith("0x") else int(tid_text)
                kinds.append(("thread", tid, m.group(2) or ""))
                continue
            m = _PROCESS_FRAME.match(name)
            if m:
                kinds.append(("process", int(m.group(1)), ""))
                continue
        fid = interner.frame(Frame(name, frame.get("file", ""), frame.get("line") or 0))
        kinds.append(("code", fid, ""))
    return kinds


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


def seal(data: bytes) -> tuple[bytes | None, int]:
    """Check a chunk py-spy just wrote and mask the secrets its `--subprocesses` root frames
    copy from command lines (`process PID:"uvicorn app --token=..."`).

    Returns (the document to write back, or None when nothing was masked; the number of
    sampling instants, i.e. the longest thread's sample count). Raises CorruptProfileError.
    """
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CorruptProfileError(f"not valid JSON ({exc})") from exc
    shared = doc.get("shared") if isinstance(doc, dict) else None
    frames = shared.get("frames") if isinstance(shared, dict) else None
    profiles = doc.get("profiles") if isinstance(doc, dict) else None
    if not isinstance(frames, list) or not isinstance(profiles, list):
        raise CorruptProfileError("not a speedscope document")
    masked = False
    for frame in frames:
        name = frame.get("name") if isinstance(frame, dict) else None
        m = _PROCESS_COMMAND.match(name) if isinstance(name, str) else None
        if m is not None:
            safe = m[1] + redact_text(m[2]) + m[3]
            if safe != name:
                frame["name"] = safe
                masked = True
    intervals = max(
        (
            len(p["samples"])
            for p in profiles
            if isinstance(p, dict) and isinstance(p.get("samples"), list)
        ),
        default=0,
    )
    return (orjson.dumps(doc) if masked else None), intervals
