"""Which threads run an event loop, and whether each loop sample is idle or busy.

Found by stacks, never thread names: a loop thread is one whose stacks pass through a
loop entry frame. Above the deepest entry frame, the loop's own frames are skipped; what
remains is either the selector wait (idle), nothing at all (uvloop waits in C, so an idle
uvloop shows no Python frame above its entry), or the callback being run (busy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from asgiprof.analyze.frames import bare_function
from asgiprof.model import Frame, Profile

# (path suffix, bare function name) of frames that start running a loop.
LOOP_ENTRY_FRAMES: Final = frozenset(
    {
        ("asyncio/runners.py", "run"),
        ("asyncio/base_events.py", "run_until_complete"),
        ("asyncio/base_events.py", "run_forever"),
        ("uvloop/__init__.py", "run"),
    }
)
# The loop's own machinery between the entry frame and the callback it runs.
LOOP_INTERNAL_FRAMES: Final = frozenset(
    {
        ("asyncio/base_events.py", "run_forever"),
        ("asyncio/base_events.py", "_run_once"),
        ("asyncio/events.py", "_run"),
    }
)
SELECTOR_FILES: Final = ("selectors.py",)

STATE_OFF: Final = 0  # this sample is not inside a running loop
STATE_IDLE: Final = 1
STATE_BUSY: Final = 2


def _key(frame: Frame) -> tuple[str, str]:
    file = frame.file.replace("\\", "/")
    for suffix, func in LOOP_ENTRY_FRAMES | LOOP_INTERNAL_FRAMES:
        if file.endswith(suffix) and bare_function(frame.function) == func:
            return suffix, func
    return "", ""


@dataclass(frozen=True, slots=True)
class LoopSample:
    state: int
    callback: int  # frame id of the callback's first frame (busy only), else -1


class LoopClassifier:
    """Classifies stacks, caching per stack id (most samples repeat a few stacks)."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        keys = [_key(f) for f in profile.frames]
        self._entry = [k in LOOP_ENTRY_FRAMES for k in keys]
        self._internal = [k in LOOP_INTERNAL_FRAMES for k in keys]
        self._selector = [
            f.file.replace("\\", "/").endswith(SELECTOR_FILES) for f in profile.frames
        ]
        self._cache: dict[int, LoopSample] = {}

    def classify(self, stack_id: int) -> LoopSample:
        hit = self._cache.get(stack_id)
        if hit is None:
            hit = self._cache[stack_id] = self._classify(self.profile.stacks[stack_id])
        return hit

    def _classify(self, stack: tuple[int, ...]) -> LoopSample:
        entry = -1
        for i, fid in enumerate(stack):
            if self._entry[fid]:
                entry = i
        if entry < 0:
            return LoopSample(STATE_OFF, -1)
        i = entry + 1
        while i < len(stack) and self._internal[stack[i]]:
            i += 1
        if i >= len(stack) or self._selector[stack[i]]:
            return LoopSample(STATE_IDLE, -1)
        return LoopSample(STATE_BUSY, stack[i])

    def is_loop_thread(self, stack_ids: set[int]) -> bool:
        return any(self.classify(s).state != STATE_OFF for s in stack_ids)
