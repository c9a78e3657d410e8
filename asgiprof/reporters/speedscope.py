"""`profile.speedscope.json`: the samples in speedscope's file format (sampled profiles).

Contract: `speedscope_document(analysis)` returns the plain document, `REPORTER.render`
writes it with orjson (sorted keys, so the bytes are deterministic). One profile per sampled
thread, in time order, one sample per run of identical stacks weighted by its wall time in
milliseconds (gaps between chunks are left out), named `<role> pid P tid T (NAME)`; then one
merged profile for the blocking episodes and one per route, weighted from the Analysis views.
Frame indexes are root first, into `shared.frames`, which lists only frames used.
"""

from __future__ import annotations

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


def _thread_profile(name: str, timeline: ThreadTimeline, frames: _Frames) -> SampledProfile:
    samples: list[list[int]] = []
    weights: list[float] = []
    start: float | None = None
    for start_s, duration_s, stack_id, _n in timeline.runs():
        if stack_id == NO_STACK:
            continue
        if start is None:
            start = start_s * 1000.0
        samples.append(frames.stack(stack_id))
        weights.append(_ms(duration_s * 1000.0))
    start_ms = _ms(start or 0.0)
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


def speedscope_document(analysis: Analysis) -> SpeedscopeFile:
    profile = analysis.profile
    frames = _Frames(analysis)
    timelines = sorted(
        (tl for tl in profile.threads if len(tl)),
        key=lambda tl: (
            _ROLE_ORDER.get(analysis.thread_roles.get((tl.thread.pid, tl.thread.tid), "other"), 3),
            tl.thread.pid,
            tl.thread.tid,
        ),
    )
    profiles = [_thread_profile(thread_profile_name(analysis, tl), tl, frames) for tl in timelines]
    blocking = analysis.views.get(VIEW_BLOCKING, {})
    if any(ms > 0 for ms in blocking.values()):
        profiles.append(_merged_profile("blocking episodes (event loop)", blocking, frames))
    ranked = {ROUTE_VIEW_PREFIX + r.route: i for i, r in enumerate(analysis.routes)}
    route_views = sorted(
        (vid for vid in analysis.views if vid.startswith(ROUTE_VIEW_PREFIX)),
        key=lambda vid: (ranked.get(vid, len(ranked)), vid),
    )
    for vid in route_views:
        if any(ms > 0 for ms in analysis.views[vid].values()):
            name = "route " + vid[len(ROUTE_VIEW_PREFIX) :]
            profiles.append(_merged_profile(name, analysis.views[vid], frames))
    command = " ".join(profile.target.command)
    return {
        "$schema": SCHEMA_URL,
        "shared": {"frames": frames.frames},
        "profiles": profiles,
        "name": f"asgiprof: {command}" if command else "asgiprof",
        "activeProfileIndex": 0,
        "exporter": f"asgiprof {__version__}",
    }


class SpeedscopeReporter:
    name = "speedscope"
    filename = "profile.speedscope.json"

    def render(self, analysis: Analysis, out_dir: Path) -> Path:
        path = out_dir / self.filename
        path.write_bytes(orjson.dumps(speedscope_document(analysis), option=orjson.OPT_SORT_KEYS))
        return path


REPORTER = SpeedscopeReporter()
