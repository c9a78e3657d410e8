"""`profile.speedscope.json`: the samples in speedscope's file format (sampled profiles).

Contract: `speedscope_document(analysis)` returns the plain document, `REPORTER.render`
writes it with orjson (sorted keys, so the bytes are deterministic). One profile per sampled
thread, in time order, one sample per run of identical stacks weighted by its wall time in
milliseconds (gaps between chunks are left out), named `<role> pid P tid T (NAME)`; then one
merged profile for the blocking episodes and one per route, weighted from the Analysis views.
Frame indexes are root first, into `shared.frames`, which lists only frames used.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from itertools import compress
from pathlib import Path
from typing import Final, Literal, TypedDict

import orjson

from asgiprof import __version__
from asgiprof.analyze.result import ROUTE_VIEW_PREFIX, VIEW_BLOCKING, Analysis
from asgiprof.model import NO_STACK, ThreadTimeline

SCHEMA_URL: Final = "https://www.speedscope.app/file-format-schema.json"

# Event-loop threads first: speedscope opens the first profile (activeProfileIndex 0).
_ROLE_ORDER: Final = {"event-loop": 0, "threadpool": 1, "other": 2}


class SpeedscopeFrame(TypedDict, total=False):
    name: str
    file: str
    line: int


class SampledProfile(TypedDict):
    type: Literal["sampled"]
    name: str
    unit: Literal["milliseconds"]
    startValue: float
    endValue: float
    samples: list[list[int]]
    weights: list[float]


class Shared(TypedDict):
    frames: list[SpeedscopeFrame]


# "$schema" is not an identifier, hence the functional TypedDict form.
SpeedscopeFile = TypedDict(
    "SpeedscopeFile",
    {
        "$schema": str,
        "shared": Shared,
        "profiles": list[SampledProfile],
        "name": str,
        "activeProfileIndex": int,
        "exporter": str,
    },
)


def _ms(x: float) -> float:
    return round(x, 3) + 0.0


def thread_profile_name(analysis: Analysis, timeline: ThreadTimeline) -> str:
    t = timeline.thread
    role = analysis.thread_roles.get((t.pid, t.tid), "other")
    return f"{role} pid {t.pid} tid {t.tid} ({t.name or '?'})"


class _Frames:
    """Profile frame ids -> speedscope frame indexes, in order of first use."""

    def __init__(self, analysis: Analysis) -> None:
        self._profile = analysis.profile
        self.index: dict[int, int] = {}
        self.frames: list[SpeedscopeFrame] = []
        self._stacks: dict[int, list[int]] = {}

    def stack(self, stack_id: int) -> list[int]:
        cached = self._stacks.get(stack_id)
        if cached is not None:
            return cached
        out: list[int] = []
        for fid in self._profile.stacks[stack_id]:
            idx = self.index.get(fid)
            if idx is None:
                idx = self.index[fid] = len(self.frames)
                f = self._profile.frames[fid]
                frame: SpeedscopeFrame = {"name": f.function or "(unknown)", "file": f.file}
                if f.line > 0:
                    frame["line"] = f.line
                self.frames.append(frame)
            out.append(idx)
        self._stacks[stack_id] = out
        return out


class _WeightsMs(dict[float, float]):
    """seconds -> `_ms(seconds * 1000.0)`, computed once per distinct value."""

    def __missing__(self, seconds: float) -> float:
        ms = self[seconds] = _ms(seconds * 1000.0)
        return ms


def _thread_profile(name: str, timeline: ThreadTimeline, frames: _Frames) -> SampledProfile:
    # Whole-array steps instead of a loop over runs: a 10-minute profile of a busy
    # 40-thread server has about a million runs.
    stacks, durations = timeline.stack, timeline.duration_s
    first = 0 if len(stacks) else -1
    if NO_STACK in stacks:  # gaps between chunks are left out
        kept = list(map(NO_STACK.__ne__, stacks))
        first = kept.index(True) if True in kept else -1
        stacks = array("i", compress(stacks, kept))
        durations = array("d", compress(durations, kept))
    # Speedscope frame indexes are given in order of first use, as run by run.
    lists = {sid: frames.stack(sid) for sid in dict.fromkeys(stacks)}
    samples = list(map(lists.__getitem__, stacks))
    # Runs last whole numbers of sampling periods: few distinct durations to round.
    weights = list(map(_WeightsMs().__getitem__, durations))
    start_ms = _ms(timeline.start_s[first] * 1000.0 if first >= 0 else 0.0)
    return {
        "type": "sampled",
        "name": name,
        "unit": "milliseconds",
        "startValue": start_ms,
        "endValue": _ms(start_ms + sum(weights)),
        "samples": samples,
        "weights": weights,
    }


def _merged_profile(
    name: str, weights_by_stack: dict[int, float], frames: _Frames
) -> SampledProfile:
    # Merged views have no time order; stack id order keeps the bytes stable.
    items = [(sid, ms) for sid, ms in sorted(weights_by_stack.items()) if ms > 0]
    weights = [_ms(ms) for _, ms in items]
    return {
        "type": "sampled",
        "name": name,
        "unit": "milliseconds",
        "startValue": 0.0,
        "endValue": _ms(sum(weights)),
        "samples": [frames.stack(sid) for sid, _ in items],
        "weights": weights,
    }


def _profiles(analysis: Analysis, frames: _Frames) -> Iterator[SampledProfile]:
    """Thread profiles, then the merged views, one at a time (see `render`)."""
    profile = analysis.profile
    timelines = sorted(
        (tl for tl in profile.threads if len(tl)),
        key=lambda tl: (
            _ROLE_ORDER.get(analysis.thread_roles.get((tl.thread.pid, tl.thread.tid), "other"), 3),
            tl.thread.pid,
            tl.thread.tid,
        ),
    )
    for tl in timelines:
        yield _thread_profile(thread_profile_name(analysis, tl), tl, frames)
    blocking = analysis.views.get(VIEW_BLOCKING, {})
    if any(ms > 0 for ms in blocking.values()):
        yield _merged_profile("blocking episodes (event loop)", blocking, frames)
    for vid in analysis.route_views():
        if any(ms > 0 for ms in analysis.views[vid].values()):
            name = "route " + vid[len(ROUTE_VIEW_PREFIX) :]
            yield _merged_profile(name, analysis.views[vid], frames)


def _header(analysis: Analysis) -> dict[str, str | int]:
    command = " ".join(analysis.profile.target.command)
    return {
        "$schema": SCHEMA_URL,
        "name": f"asgiprof: {command}" if command else "asgiprof",
        "activeProfileIndex": 0,
        "exporter": f"asgiprof {__version__}",
    }


def speedscope_document(analysis: Analysis) -> SpeedscopeFile:
    frames = _Frames(analysis)
    profiles = list(_profiles(analysis, frames))
    head = _header(analysis)
    return {
        "$schema": SCHEMA_URL,
        "shared": {"frames": frames.frames},
        "profiles": profiles,
        "name": str(head["name"]),
        "activeProfileIndex": 0,
        "exporter": str(head["exporter"]),
    }


class SpeedscopeReporter:
    name = "speedscope"
    filename = "profile.speedscope.json"

    def render(self, analysis: Analysis, out_dir: Path) -> Path:
        """Write the bytes of `orjson.dumps(speedscope_document(analysis), OPT_SORT_KEYS)`
        one profile at a time, so the whole document never sits in memory (~100 MB for a
        busy 10-minute profile). Sorted keys put the header first, then "profiles", and
        "shared" last, once every profile has named the frames it uses."""
        path = out_dir / self.filename
        frames = _Frames(analysis)
        sort = orjson.OPT_SORT_KEYS
        with path.open("wb") as f:
            f.write(orjson.dumps(_header(analysis), option=sort)[:-1] + b',"profiles":[')
            for i, profile in enumerate(_profiles(analysis, frames)):
                f.write(
                    b"," + orjson.dumps(profile, option=sort)
                    if i
                    else orjson.dumps(profile, option=sort)
                )
            f.write(b'],"shared":' + orjson.dumps({"frames": frames.frames}, option=sort) + b"}")
        return path


REPORTER = SpeedscopeReporter()
