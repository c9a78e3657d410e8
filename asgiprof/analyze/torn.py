"""Loop-thread samples py-spy read only in part, and which code each one continues.

py-spy walks a thread's frames from the innermost one out. When the thread runs on while
it reads (always with `--nonblocking`, now and then otherwise) or the frames sit in a
greenlet (SQLAlchemy's async sessions), the walk stops early: the sample holds the
innermost frames without the thread's root (the loop entry and what started it). Such a
sample is neither idle nor outside the loop: the loop was running those frames. Fast
changing Python code tears most (json.dumps(indent=...) calling `default=` tore on about
half of its samples in a measured busy app), so dropping torn samples cuts exactly the
CPU-bound blocks short, and breaks them into pieces that no longer look like one call.

A torn sample stands for a full stack of the same code: one whose innermost frames are the
torn ones (or, when no full stack ends that way, one running the torn outermost function),
of the piece of code running just before or just after it, or of the only piece of code
that fits. When nothing fits it stays off the loop, as before.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from asgiprof.analyze.loop import STATE_OFF, LoopClassifier
from asgiprof.model import NO_STACK, Profile, ThreadTimeline

# What a full stack runs: episodes.py's segment key (callback and outermost user frame).
Key = tuple[int, ...]


class TornStacks:
    def __init__(
        self,
        profile: Profile,
        loop_threads: list[ThreadTimeline],
        classifier: LoopClassifier,
        key_of: Callable[[int], Key | None],
    ) -> None:
        self.profile = profile
        self.classifier = classifier
        self.key_of = key_of
        stacks = profile.stacks
        seen = {sid for tl in loop_threads for sid in set(tl.stack) if sid != NO_STACK}
        inside = {
            sid for sid in seen if stacks[sid] and classifier.classify(sid).state != STATE_OFF
        }
        self.roots = {stacks[sid][0] for sid in inside}
        self._torn: dict[int, bool] = {}
        # Full stacks that run a piece of user code, by innermost frame.
        self._keys: dict[int, Key] = {}
        self._by_leaf: dict[int, list[int]] = defaultdict(list)
        for sid in sorted(inside):
            key = key_of(sid)
            if key is not None:
                self._keys[sid] = key
                self._by_leaf[stacks[sid][-1]].append(sid)
        self._owners: dict[int, dict[Key, int]] = {}
        self._by_function: dict[tuple[str, str], dict[Key, int]] | None = None

    def is_torn(self, sid: int) -> bool:
        hit = self._torn.get(sid)
        if hit is None:
            stack = self.profile.stacks[sid] if sid != NO_STACK else ()
            hit = self._torn[sid] = (
                bool(stack)
                and stack[0] not in self.roots
                and self.classifier.classify(sid).state == STATE_OFF
            )
        return hit

    def owners(self, sid: int) -> dict[Key, int]:
        """The pieces of code (keys) whose full stacks the torn stack fits, each with one
        such stack."""
        hit = self._owners.get(sid)
        if hit is not None:
            return hit
        torn = self.profile.stacks[sid]
        hit = {}
        for full in self._by_leaf.get(torn[-1], ()):
            stack = self.profile.stacks[full]
            if len(stack) > len(torn) and stack[-len(torn) :] == torn:
                hit.setdefault(self._keys[full], full)
        if not hit:
            frame = self.profile.frames[torn[0]]
            hit = dict(self._function_owners().get((frame.file, frame.function), {}))
        self._owners[sid] = hit
        return hit

    def _function_owners(self) -> dict[tuple[str, str], dict[Key, int]]:
        if self._by_function is None:
            frames = self.profile.frames
            self._by_function = defaultdict(dict)
            for stacks in self._by_leaf.values():
                for full in stacks:
                    key = self._keys[full]
                    for fid in self.profile.stacks[full]:
                        f = frames[fid]
                        self._by_function[f.file, f.function].setdefault(key, full)
        return self._by_function

    def stand_ins(self, tl: ThreadTimeline) -> list[int]:
        """Per run of the thread, the stack that stands for it: its own, or for a torn run a
        full stack of the code it continues (NO_STACK when none fits)."""
        stacks = list(tl.stack)
        torn = [sid != NO_STACK and self.is_torn(sid) for sid in stacks]
        if not any(torn):
            return stacks
        keys = [
            None if t or sid == NO_STACK else self.key_of(sid)
            for sid, t in zip(stacks, torn, strict=True)
        ]
        before = _nearest(keys, torn, range(len(stacks)))
        after = _nearest(keys, torn, range(len(stacks) - 1, -1, -1))
        out = stacks[:]
        for i, sid in enumerate(stacks):
            if not torn[i]:
                continue
            owners = self.owners(sid)
            pick = next((owners[k] for k in (before[i], after[i]) if k in owners), None)
            if pick is None and len(owners) == 1:
                pick = next(iter(owners.values()))
            out[i] = NO_STACK if pick is None else pick
        return out


def _nearest(keys: list[Key | None], torn: list[bool], order: range) -> list[Key | None]:
    """For each run, the key of the nearest run that is not torn, walking in `order`."""
    out: list[Key | None] = [None] * len(keys)
    last: Key | None = None
    for i in order:
        if torn[i]:
            out[i] = last
        else:
            last = keys[i]
    return out
