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
_THREAD_FRAME = re.compile(r"^thread \((\d+|0x[0-9a-fA-F]+)\): ?(.*)$", re.DOTALL)
_PROCESS_FRAME = re.compile(r'^process (\d+):"', re.DOTALL)
_PROFILE_NAME = re.compile(r'^(?:Process (\d+) )?Thread (\d+) "(.*)"$', re.DOTALL)


@dataclass(slots=True)
class ThreadSamples:
    """One thread's samples in one chunk, as interned stack ids in sample order."""

    thread: ThreadInfo
    stack_ids: list[int] = field(default_factory=list)


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

    # Per raw frame index: ("thread", tid, name) / ("process", pid) / ("code", frame id).
    kinds: list[tuple[str, int, str]] = []
    for raw in raw_frames:
        frame = _frame_of(raw)
        name = frame["name"]
        if not frame.get("file"):
            m = _THREAD_FRAME.match(name)
            if m:
                tid_text = m.group(1)
                tid = int(tid_text, 16) if tid_text.startswith("0x") else int(tid_text)
                kinds.append(("thread", tid, m.group(2)))
                continue
            m = _PROCESS_FRAME.match(name)
            if m:
                kinds.append(("process", int(m.group(1)), ""))
                continue
        fid = interner.frame(Frame(name, frame.get("file", ""), frame.get("line") or 0))
        kinds.append(("code", fid, ""))

    result: list[ThreadSamples] = []
    n_raw = len(kinds)
    for prof in profiles:
        if not isinstance(prof, dict) or not isinstance(prof.get("samples"), list):
            raise CorruptProfileError("speedscope profile without samples")
        pid, tid, tname = default_pid, 0, ""
        m = _PROFILE_NAME.match(str(prof.get("name", "")))
        if m:
            pid = int(m.group(1)) if m.group(1) else default_pid
            tid, tname = int(m.group(2)), m.group(3)
        stack_cache: dict[tuple[int, ...], int] = {}
        ids: list[int] = []
        for sample in prof["samples"]:
            if not isinstance(sample, list):
                raise CorruptProfileError("speedscope sample is not a list of frame indexes")
            key = tuple(sample)
            sid = stack_cache.get(key)
            if sid is None:
                code: list[int] = []
                for idx in key:
                    if not isinstance(idx, int) or not 0 <= idx < n_raw:
                        raise CorruptProfileError("speedscope sample refers to a missing frame")
                    kind, value, text = kinds[idx]
                    if kind == "code":
                        code.append(value)
                    elif kind == "thread":
                        tid, tname = value, text or tname
                    else:
                        pid = value
                sid = stack_cache[key] = interner.stack(tuple(code))
            ids.append(sid)
        result.append(ThreadSamples(ThreadInfo(pid, tid, tname), ids))
    return result


def place_samples(
    n_samples: int, longest: int, start_s: float, end_s: float, rate_hz: float
) -> tuple[float, float]:
    """(time of the first sample, seconds per sample) for a thread with `n_samples`.

    py-spy spaces samples by an exponential distribution around 1/rate, so a sample stands
    for 1/rate seconds on average; the thread with the most samples spans the chunk. A
    thread with fewer samples started (or ended) inside the chunk: we align it to the end,
    since servers start threads lazily (worker threads) far more often than they end them.
    """
    span = max(end_s - start_s, 0.0)
    period = 1.0 / rate_hz
    if longest > 0 and longest * period > span:
        period = span / longest  # py-spy fell behind or the clock disagrees: fit the span
    first = end_s - n_samples * period
    return max(first, start_s), period
