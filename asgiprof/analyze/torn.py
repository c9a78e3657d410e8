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
that fits. When nothing fits it is still loop time (busy: a loop waiting in its selector
holds one stack, which py-spy reads whole), running code of its own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

from asgiprof.analyze.loop import STATE_OFF, LoopClassifier
from asgiprof.model import NO_STACK, Profile, ThreadTimeline

# What a full stack runs: episodes.py's segment key (callback and outermost user frame).
Key = tuple[int, ...]


def read_whole(sid: int, stacks: Sequence[tuple[int, ...]], classifier: LoopClassifier) -> bool:
    """A loop-thread stack py-spy read down to the loop (idle or busy)."""
    return sid != NO_STACK and bool(stacks[sid]) and classifier.classify(sid).state != STATE_OFF


def loop_roots(
    sids: Iterable[int], stacks: Sequence[tuple[int, ...]], classifier: LoopClassifier
) -> set[int]:
    """The outermost frames of loop-thread stacks py-spy read whole."""
    return {stacks[sid][0] for sid in sids if read_whole(sid, stacks, classifier)}


def is_torn(
    sid: int, stacks: Sequence[tuple[int, ...]], roots: set[int], classifier: LoopClassifier
) -> bool:
    """A loop-thread stack without a loop entry whose outermost frame is no loop root: the
    loop was running these frames, py-spy read only them. (Also the live panel's test.)"""
    stack = stacks[sid] if sid != NO_STACK else ()
    return bool(stack) and stack[0] not in roots and classifier.classify(sid).state == STATE_OFF


class TornStacks:
    """Which loop-thread stacks are torn, and the full stacks of the same process each one
    fits (a fleet merged from several servers running the same files must not lend one
    process's code to another's torn samples)."""

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
        inside: dict[int, set[int]] = defaultdict(set)  # pid -> its loop stacks
        for tl in loop_threads:
            inside[tl.thread.pid].update(
                sid for sid in set(tl.stack) if read_whole(sid, stacks, classifier)
            )
        self.roots = {stacks[sid][0] for sids in inside.values() for sid in sids}
        self._torn: dict[int, bool] = {}
        # Per process, full stacks that run a piece of user code, by innermost frame.
        self._keys: dict[int, Key] = {}
        self._by_leaf: dict[tuple[int, int], list[int]] = defaultdict(list)
        for pid, sids in inside.items():
            for sid in sorted(sids):
                key = key_of(sid)
                if key is not None:
                    self._keys[sid] = key
                    self._by_leaf[pid, stacks[sid][-1]].append(sid)
        self._owners: dict[tuple[int, int], dict[Key, int]] = {}
        self._by_function: dict[tuple[int, str, str], dict[Key, int]] | None = None

    def is_torn(self, sid: int) -> bool:
        hit = self._torn.get(sid)
        if hit is None:
            hit = self._torn[sid] = is_torn(sid, self.profile.stacks, self.roots, self.classifier)
        return hit

    def owners(self, pid: int, sid: int) -> dict[Key, int]:
        """The pieces of code (keys) whose full stacks in process `pid` the torn stack fits,
        each with one such stack."""
        hit = self._owners.get((pid, sid))
        if hit is not None:
            return hit
        torn = self.profile.stacks[sid]
        hit = {}
        for full in self._by_leaf.get((pid, torn[-1]), ()):
            stack = self.profile.stacks[full]
            if len(stack) > len(torn) and stack[-len(torn) :] == torn:
                hit.setdefault(self._keys[full], full)
        if not hit:
            frame = self.profile.frames[torn[0]]
            hit = dict(self._function_owners().get((pid, frame.file, frame.function), {}))
        self._owners[pid, sid] = hit
        return hit

    def _function_owners(self) -> dict[tuple[int, str, str], dict[Key, int]]:
        if self._by_function is None:
            frames = self.profile.frames
            self._by_function = defaultdict(dict)
            for (pid, _), sids in self._by_leaf.items():
                for full in sids:
                    key = self._keys[full]
                    for fid in self.profile.stacks[full]:
                        f = frames[fid]
                        self._by_function[pid, f.file, f.function].setdefault(key, full)
        return self._by_function

    def stand_ins(self, tl: ThreadTimeline) -> list[int]:
        """Per run of the thread, the stack that stands for it: its own, or for a torn run a
        full stack of the code it continues (its own when none fits)."""
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
            owners = self.owners(tl.thread.pid, sid)
            pick = next((owners[k] for k in (before[i], after[i]) if k in owners), None)
            if pick is None and len(owners) == 1:
                pick = next(iter(owners.values()))
            if pick is not None:
                out[i] = pick
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
