"""Which threads run an event loop, and whether each loop sample is idle or busy.

Found by stacks, never thread names: a loop thread is one whose stacks pass through a
loop entry frame. Above the deepest entry frame, the loop's own frames are skipped; what
remains is either the selector wait (idle), nothing at all (uvloop and granian's loops run
in C, so an idle C loop shows no Python frame above its entry), or the callback being run
(busy). Each stack shape below was recorded with `py-spy record --idle --threads` on the
server, loop and CPython version named beside it (tests/unit/test_loop.py replays them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from asgiprof.analyze.frames import bare_function
from asgiprof.model import Frame, Profile

# (path suffix, bare function name) of the frames that run a loop. For a loop written in C
# (uvloop, rloop) the entry is the last Python frame: the one that called into the loop.
LOOP_ENTRY_FRAMES: Final = frozenset(
    {
        # asyncio.run: function `run` (3.9, 3.10), `Runner.run` (3.11+). Both call
        # loop.run_until_complete, which for uvloop is C: idle uvloop = this frame on top.
        ("asyncio/runners.py", "run"),
        ("asyncio/base_events.py", "run_until_complete"),
        ("asyncio/base_events.py", "run_forever"),
        # uvloop.run() on 3.9/3.10 calls loop.run_until_complete itself.
        ("uvloop/__init__.py", "run"),
        # uvicorn (and gunicorn's UvicornWorker) on 3.9/3.10: its own copy of asyncio.run
        # with a loop_factory calls loop.run_until_complete directly.
        ("uvicorn/_compat.py", "asyncio_run"),
        # hypercorn on 3.9/3.10: the `taskgroup` backport's Runner.run / run.
        ("taskgroup/runners.py", "run"),
        # granian's worker functions call loop.run_until_complete / run_forever themselves
        # (processes: mp.py; threads on free-threaded builds: mt.py).
        *(
            (f"granian/server/{module}.py", function)
            for module in ("mp", "mt")
            for function in (
                "_spawn_asgi_worker",
                "_spawn_asgi_lifespan_worker",
                "_spawn_rsgi_worker",
            )
        ),
    }
)
# The asyncio loop's own machinery between the entry frame and the callback it runs.
LOOP_INTERNAL_FRAMES: Final = frozenset(
    {
        ("asyncio/base_events.py", "run_forever"),
        ("asyncio/base_events.py", "_run_once"),
        ("asyncio/events.py", "_run"),
    }
)
# The asyncio loop waits for I/O in its selector (`selectors.py`, directly above
# `_run_once`); a sample there is idle.
SELECTOR_FILES: Final = ("selectors.py",)

# A loop-thread sample's state. `classify` answers OFF, IDLE or BUSY; episode detection
# then marks the busy runs inside a blocking episode BLOCKED (episodes.py's run labels).
STATE_OFF: Final = 0  # this sample is not inside a running loop
STATE_IDLE: Final = 1
STATE_BUSY: Final = 2
STATE_BLOCKED: Final = 3


def _matches(frame: Frame, table: frozenset[tuple[str, str]]) -> bool:
    file = frame.file.replace("\\", "/")
    function = bare_function(frame.function)
    return any(file.endswith(suffix) and function == name for suffix, name in table)


@dataclass(frozen=True, slots=True)
class LoopSample:
    state: int
    callback: int  # frame id of the callback's first frame (busy only), else -1


class LoopClassifier:
    """Classifies stacks, caching per stack id (most samples repeat a few stacks)."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._entry = [_matches(f, LOOP_ENTRY_FRAMES) for f in profile.frames]
        self._internal = [_matches(f, LOOP_INTERNAL_FRAMES) for f in profile.frames]
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
        # The deepest entry: `Runner.run` above `asyncio_run` above `Server.run`, or
        # `run_forever` above `run_until_complete`, is the one that runs the callbacks.
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
