"""Group busy event-loop samples into synchronous stretches, and long ones into episodes.

A stretch is a run of consecutive busy samples running one callback (the first frame the
loop calls). Its duration is its sample count times the sampling period: py-spy's
exponentially spaced samples make that count an unbiased estimate, and, unlike the gap
between two samples, it does not inflate a 1 ms callback into a 10 ms one. Back-to-back
callbacks of the same kind merge when no sample falls between them (documented limit);
a framework-only sample after user code ends the user code's stretch.
"""

from __future__ import annotations

import bisect
import itertools
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from asgiprof.analyze.advice import is_blocking_call
from asgiprof.analyze.frames import app_roots, is_asgi_dispatch, is_user, is_web_framework
from asgiprof.analyze.loop import STATE_BLOCKED, STATE_BUSY, STATE_OFF, LoopClassifier
from asgiprof.analyze.result import AnalysisParams, Episode, EpisodePart
from asgiprof.analyze.starved import SCHED_POLL_S, sched_shares, times_measured
from asgiprof.analyze.torn import TornStacks
from asgiprof.model import NO_STACK, Frame, Profile, ThreadTimeline


@dataclass(slots=True)
class LoopThreadRuns:
    """Per-run labels (loop.STATE_*) of one event-loop thread, aligned with its timeline."""

    timeline: ThreadTimeline
    labels: array[int] = field(default_factory=lambda: array("b"))
    # Long busy stretches that were many short callbacks merged (no line, no one stack
    # held them): a saturated loop, counted busy rather than blocked.
    saturated_ms: float = 0.0
    saturated_stretches: int = 0
    # Stretches of the threshold's length in which the thread mostly waited for a CPU
    # (analyze/starved.py): busy, never blocked, no evidence for their line.
    starved_ms: float = 0.0
    starved_stretches: int = 0
    # Stretches shorter than the threshold that one user line held (first run, end run,
    # frame id): candidates for `promote_short_stretches`.
    short: list[tuple[int, int, int]] = field(default_factory=list)
    # Per run, the stack that stands for it (`TornStacks.stand_ins`): its own, or for a torn
    # run the full stack of the code it continues (its own when none fits).
    stand_in: list[int] = field(default_factory=list)

    def busy_runs(self) -> Iterator[tuple[float, int, int, int]]:
        """(seconds, stack, samples, label) of each busy or blocked run, the stack being the
        run's stand-in: a torn sample is the code of the stack standing in for it."""
        tl = self.timeline
        for dur, sid, n, label in zip(
            tl.duration_s, self.stand_in, tl.samples, self.labels, strict=True
        ):
            if sid != NO_STACK and label in (STATE_BUSY, STATE_BLOCKED):
                yield dur, sid, n, label


class UserFrames:
    """The user-code frames of each stack (cached), and which of them sit at an `await`.

    User code is what is not the standard library or site-packages, plus the app's own
    package wherever it is installed (`frames.app_roots`, from the route table).

    On an event-loop stack only frames from the running callback up count: a server
    started by the user's own `main()` or `<module>` has those frames below the loop on
    every stack, and they are never what blocks it.

    A user line that hands over to framework code which leads back into user code on
    other stacks (a middleware's `await self.app(...)`, `await call_next(request)`) is a
    pass-through: the framework is working between two pieces of user code (routing,
    writing a response, waiting for the GIL), and that line did not block anything. It is
    left out of the stack's user frames.
    """

    def __init__(
        self,
        profile: Profile,
        classifier: LoopClassifier | None = None,
        read_line: Callable[[str, int], str | None] | None = None,
    ) -> None:
        self.profile = profile
        self.classifier = classifier
        self.read_line = read_line
        roots = app_roots(profile.routes.routes)
        self._user = [is_user(f, roots) for f in profile.frames]
        self._pass_through = _pass_through_edges(profile, self._user)
        self._chains: dict[int, tuple[tuple[int, ...], int]] = {}
        self._await: dict[int, bool] = {}
        self._caller_samples: Counter[int] = Counter()
        self._callee_samples: Counter[tuple[int, int]] = Counter()

    def _chain(self, stack_id: int) -> tuple[tuple[int, ...], int]:
        """(user frame ids outermost first, stack index of the outermost), cached."""
        hit = self._chains.get(stack_id)
        if hit is not None:
            return hit
        stack = self.profile.stacks[stack_id]
        lowest = 0
        if self.classifier is not None:
            callback = self.classifier.classify(stack_id).callback
            if callback >= 0:
                lowest = stack.index(callback)
        chain: list[int] = []
        first = -1
        for i in range(lowest, len(stack)):
            fid = stack[i]
            if not self._user[fid]:
                continue
            if i + 1 < len(stack) and (fid, stack[i + 1]) in self._pass_through:
                continue
            if first < 0:
                first = i
            chain.append(fid)
        hit = self._chains[stack_id] = (tuple(chain), first)
        return hit

    def chain(self, stack_id: int) -> tuple[int, ...]:
        """The stack's user frames above the callback, outermost first, pass-throughs out."""
        return self._chain(stack_id)[0]

    def deepest(self, stack_id: int) -> int | None:
        chain = self._chain(stack_id)[0]
        return chain[-1] if chain else None

    def outer_key(self, stack_id: int) -> tuple[int, ...] | None:
        """The stack up to its outermost user frame: samples sharing it run the same piece
        of the app's code (maybe for different requests); None without user frames."""
        chain, first = self._chain(stack_id)
        if not chain:
            return None
        return self.profile.stacks[stack_id][: first + 1]

    def learn_calls(self, loop_threads: list[ThreadTimeline]) -> None:
        """Count, over every busy loop sample, how often each user frame had each user frame
        right above it in its chain (see `always_calls`)."""
        for tl in loop_threads:
            for sid, n in zip(tl.stack, tl.samples, strict=True):
                if sid == NO_STACK:
                    continue
                chain = self.chain(sid)
                for outer, inner in itertools.pairwise(chain):
                    self._callee_samples[outer, inner] += n
                for fid in chain:
                    self._caller_samples[fid] += n

    def always_calls(self, outer: int, inner: int) -> bool:
        """Was `inner` above `outer` on at least 90% of the samples showing `outer`?"""
        total = self._caller_samples.get(outer, 0)
        return total > 0 and self._callee_samples.get((outer, inner), 0) * 10 >= total * 9

    def held_by_known_call(self, stack_id: int, holder: int) -> bool:
        """Does the stack, above `holder`, run a call the advice catalogue knows blocks?"""
        stack = self.profile.stacks[stack_id]
        above = [self.profile.frames[f] for f in stack[stack.index(holder) + 1 :]]
        return is_blocking_call(above)

    def is_await(self, fid: int) -> bool:
        """Is the frame's line an `await`, `async with` or `async for`? A coroutine can
        only suspend there; anywhere else it is running a synchronous call."""
        hit = self._await.get(fid)
        if hit is None:
            frame = self.profile.frames[fid]
            code = self.read_line(frame.file, frame.line) if self.read_line else None
            hit = self._await[fid] = is_await_line(code)
        return hit


def _pass_through_edges(profile: Profile, user: list[bool]) -> frozenset[tuple[int, int]]:
    """(user frame, framework callee) pairs seen with more user code above the callee, or
    whose callee is a web framework's ASGI app (its endpoints may never have been sampled).

    The callee is matched by function, not line, so every line of e.g. starlette's
    `ExceptionMiddleware.__call__` counts once one of them was seen leading to user code.
    """
    frames = profile.frames
    function_of: dict[int, tuple[str, str]] = {}
    lines_of: dict[tuple[str, str], list[int]] = {}  # a function's frame ids, one per line
    dispatch: set[int] = set()  # framework ASGI apps, pass-throughs even if never seen so
    for fid, frame in enumerate(frames):
        key = (frame.file, frame.function)
        function_of[fid] = key
        lines_of.setdefault(key, []).append(fid)
        if is_asgi_dispatch(frame):
            dispatch.add(fid)
    seen: set[tuple[int, tuple[str, str]]] = set()
    for stack in profile.stacks:
        user_above = False
        for i in range(len(stack) - 1, -1, -1):
            fid = stack[i]
            if not user[fid]:
                continue
            if i + 1 < len(stack) and not user[stack[i + 1]]:
                callee = stack[i + 1]
                # Only a web framework hands the request on: a library calling back into
                # user code (`json.dumps(default=...)`, `sorted(key=...)`, validators)
                # runs inside the user line's own call.
                if callee in dispatch or (user_above and is_web_framework(frames[callee])):
                    seen.add((fid, function_of[callee]))
            user_above = True
    return frozenset((fid, callee) for fid, key in seen for callee in lines_of[key])


@dataclass(slots=True)
class _Stretch:
    """Consecutive busy samples of one callback: either framework-only (no user frame), or
    one holding user frame's samples (see `_Candidate`)."""

    start_s: float = 0.0
    duration_s: float = 0.0
    samples: int = 0
    first_run: int = 0
    end_run: int = 0
    stacks: Counter[int] = field(default_factory=Counter)

    def add(self, start_s: float, duration_s: float, sid: int, n: int) -> None:
        if not self.samples:
            self.start_s = start_s
        self.duration_s += duration_s
        self.samples += n
        self.stacks[sid] += n


@dataclass(slots=True)
class _Candidate:
    """A run of consecutive samples that one user frame held: maybe one synchronous call."""

    holder: int  # frame id
    stretch: _Stretch


@dataclass(slots=True)
class LineEvidence:
    """What the samples say about one user line (or one framework stack) across every loop
    thread (see `is_blocking`).

    `samples` were held by the line; `stays` of them were followed by another sample held by
    it in the same synchronous run. `chance` is how many stays interleaving alone predicts
    (each sample times the line's share of its thread's loop samples, idle included).
    """

    samples: int = 0
    stays: int = 0
    chance: float = 0.0
    visits: int = 0  # runs held by the line ...
    long_visits: int = 0  # ... of two samples or more
    leaf_pairs: int = 0  # consecutive same-run pairs ...
    leaf_changes: int = 0  # ... whose deepest frame differed: Python code executing
    deeper_user: int = 0  # samples with user code deeper than the line (a `key=` function)

    def add(self, samples: int, share: float) -> None:
        """One run of `samples` samples held by the line, whose share of its thread's loop
        samples is `share`."""
        self.samples += samples
        self.stays += samples - 1
        self.visits += 1
        self.long_visits += samples >= 2
        self.chance += samples * share

    @property
    def python_running(self) -> bool:
        """Did the innermost frame change between most consecutive samples while the line held
        the loop? Then Python code was executing (on the CPU, or waiting for the GIL), not
        mostly one C call (a sync DB call shows its driver's Python now and then, but waits
        in one place)."""
        if self.deeper_user >= 3 and self.deeper_user * 10 >= self.samples:
            # The call keeps calling back into the user's Python code (a `key=` function):
            # a call that waits in C never does.
            return True
        return self.leaf_pairs >= 4 and self.leaf_changes * 2 >= self.leaf_pairs

    @property
    def share(self) -> float:
        return self.chance / self.samples if self.samples else 0.0

    @property
    def excess(self) -> float:
        """How much stickier the line is than chance, 0..1: (stays - chance) / (samples -
        chance). A block of the threshold's length scores ~0.57 at any share; back-to-back
        steps of a few ms ~0.2."""
        room = self.samples - self.chance
        return (self.stays - self.chance) / room if room > 0 else 0.0

    @property
    def long_share(self) -> float:
        """Share of the line's runs that lasted two samples or more. A line that blocks does
        so on most calls it is caught in (a 20 ms block holds a second sample ~70% of the
        time); a quick line the OS happened to leave waiting for a core now and then
        (the loop thread descheduled mid-line on a machine short of CPU) rarely."""
        return self.long_visits / self.visits if self.visits else 0.0


def find_episodes(
    profile: Profile,
    loop_threads: list[ThreadTimeline],
    classifier: LoopClassifier,
    user_frames: UserFrames,
    route_of: Callable[[int], str | None],
    cpu_ratio: Callable[[int, int, float, float], float | None],
    params: AnalysisParams,
) -> tuple[list[Episode], list[LoopThreadRuns], dict[tuple[str, int], LineEvidence]]:
    """Label every run of every event-loop thread; return the blocking episodes, the
    labelled runs and the evidence weighed for each user line.

    Three steps: (1) per thread, cut the busy samples into candidate runs, each held by one
    user frame (`_candidates`); (2) per line, weigh the evidence that its runs are single
    synchronous calls rather than many short steps interleaved (`is_blocking`); (3) runs of
    lines that block and reach the threshold are episodes, the rest is busy.
    """
    user_frames.learn_calls(loop_threads)
    weighed = _Weighed(profile.frames, user_frames)
    torn = TornStacks(
        profile, loop_threads, classifier, lambda sid: segment_key(classifier, user_frames, sid)
    )
    per_thread: list[tuple[LoopThreadRuns, list[_Candidate], list[_Stretch]]] = []
    cut = _Cut(profile, user_frames, route_of, cpu_ratio, params)
    for tl in loop_threads:
        runs = LoopThreadRuns(tl, array("b", bytes(len(tl))), stand_in=torn.stand_ins(tl))
        candidates, framework, loop_samples = _candidates(
            runs, classifier, user_frames, route_of, torn
        )
        if cut.timed:
            candidates = [c for c in candidates if not _starved(profile, runs, c.stretch, params)]
            framework = [st for st in framework if not _starved(profile, runs, st, params)]
        per_thread.append((runs, candidates, framework))
        weighed.add_lines(tl, candidates, loop_samples)
        weighed.add_framework(framework, loop_samples)
    blocking = weighed.blocking_lines(params)
    episodes: list[Episode] = []
    for runs, candidates, framework in per_thread:
        cut.line_episodes(runs, candidates, blocking, episodes)
        cut.framework_episodes(runs, framework, weighed.stacks, episodes)
        _count_saturation(runs, cut.threshold_s)
    episodes.sort(key=lambda e: (e.start_s, e.pid, e.tid))
    return episodes, [runs for runs, _, _ in per_thread], weighed.lines


@dataclass(slots=True)
class _Weighed:
    """Step 2's evidence across every loop thread: per user line (and whether it is an
    `await`), and per framework stack."""

    frames: list[Frame]
    user_frames: UserFrames
    lines: dict[tuple[str, int], LineEvidence] = field(default_factory=dict)
    await_lines: dict[tuple[str, int], bool] = field(default_factory=dict)
    stacks: dict[int, LineEvidence] = field(default_factory=dict)

    def add_lines(
        self, tl: ThreadTimeline, candidates: list[_Candidate], loop_samples: int
    ) -> None:
        held: Counter[int] = Counter()
        for cand in candidates:
            held[cand.holder] += cand.stretch.samples
        for cand in candidates:
            frame = self.frames[cand.holder]
            ev = self.lines.setdefault((frame.file, frame.line), LineEvidence())
            self.await_lines[frame.file, frame.line] = self.user_frames.is_await(cand.holder)
            share = held[cand.holder] / max(loop_samples, 1)
            ev.add(cand.stretch.samples, share)
            _count_leaf_changes(tl, cand.stretch, ev, cand.holder, self.user_frames)

    def add_framework(self, framework: list[_Stretch], loop_samples: int) -> None:
        by_stack: Counter[int] = Counter()
        for st in framework:
            by_stack[st.stacks.most_common(1)[0][0]] += st.samples
        for st in framework:
            sid = st.stacks.most_common(1)[0][0]
            ev = self.stacks.setdefault(sid, LineEvidence())
            ev.add(st.samples, by_stack[sid] / max(loop_samples, 1))

    def blocking_lines(self, params: AnalysisParams) -> dict[tuple[str, int], LineEvidence]:
        return {
            line: ev
            for line, ev in self.lines.items()
            if is_blocking(ev, self.await_lines[line], params)
        }


@dataclass(slots=True)
class _Cut:
    """Step 3: label a thread's episodes blocked and build them; the rest stays busy."""

    profile: Profile
    user_frames: UserFrames
    route_of: Callable[[int], str | None]
    cpu_ratio: Callable[[int, int, float, float], float | None]
    params: AnalysisParams
    threshold_s: float = field(init=False)
    # Sample times measured: the scheduler's 10 ms polls can be lined up with stretches.
    timed: bool = field(init=False)

    def __post_init__(self) -> None:
        self.threshold_s = self.params.block_threshold_ms / 1000.0
        self.timed = times_measured(self.profile)

    def episode(self, runs: LoopThreadRuns, st: _Stretch, holder: int | None) -> Episode:
        _label(runs.labels, st, STATE_BLOCKED)
        return _episode(
            runs.timeline,
            st,
            holder,
            self.user_frames,
            self.route_of,
            self.cpu_ratio,
            runs.labels,
            self.params,
            self.timed,
        )

    def line_episodes(
        self,
        runs: LoopThreadRuns,
        candidates: list[_Candidate],
        blocking: Mapping[tuple[str, int], LineEvidence],
        out: list[Episode],
    ) -> None:
        """Candidates of blocking lines: episodes when long enough, else kept as short."""
        for cand in candidates:
            st = cand.stretch
            frame = self.profile.frames[cand.holder]
            long_enough = st.duration_s >= self.threshold_s
            if long_enough and _is_importing(self.profile, st.stacks.most_common(1)[0][0]):
                # A worker importing the app inside its running loop (uvicorn 0.30+ with
                # --workers or --reload) before it serves: startup, not a request's line.
                out.append(self.episode(runs, st, None))
                continue
            if (frame.file, frame.line) not in blocking:
                continue
            if not long_enough:
                runs.short.append((st.first_run, st.end_run, cand.holder))
                continue
            out.append(self.episode(runs, st, cand.holder))

    def framework_episodes(
        self,
        runs: LoopThreadRuns,
        framework: list[_Stretch],
        evidence: Mapping[int, LineEvidence],
        out: list[Episode],
    ) -> None:
        """Framework-only stretches whose stack blocks (no user line to await on)."""
        for st in framework:
            if st.duration_s < self.threshold_s:
                continue
            ev = evidence[st.stacks.most_common(1)[0][0]]
            if not is_blocking(ev, True, self.params):
                continue
            out.append(self.episode(runs, st, None))


def _count_saturation(runs: LoopThreadRuns, threshold_s: float) -> None:
    """Busy stretches (no idle sample, no episode) of at least the threshold: many short
    steps back to back, the loop saturated rather than blocked."""
    tl, labels = runs.timeline, runs.labels
    length = 0.0
    for k in range(len(tl) + 1):
        if k < len(tl) and labels[k] == STATE_BUSY:
            length += tl.duration_s[k]
            continue
        if length >= threshold_s:
            runs.saturated_ms += length * 1000.0
            runs.saturated_stretches += 1
        length = 0.0


def _starved(profile: Profile, runs: LoopThreadRuns, st: _Stretch, params: AnalysisParams) -> bool:
    """Did the loop thread wait for a CPU through most of a stretch of the threshold's
    length, running little of it? Then it is counted (busy) in `runs.starved_ms`."""
    if st.duration_s * 1000.0 < params.block_threshold_ms:
        return False
    thread = runs.timeline.thread
    shares = sched_shares(
        profile.resources, thread.pid, thread.tid, st.start_s, st.start_s + st.duration_s
    )
    if shares is None:
        return False
    run, wait = shares
    if wait < params.starved_min_wait or run > params.starved_max_run:
        return False
    runs.starved_ms += st.duration_s * 1000.0
    runs.starved_stretches += 1
    return True


def is_blocking(ev: LineEvidence, await_line: bool, params: AnalysisParams) -> bool:
    """Do a line's runs look like single synchronous calls rather than chance?

    Under load the loop runs many short steps back to back, and consecutive samples (~10 ms
    apart) of different requests often sit at the same line: runs at a line then occur
    about as often as its share of the loop predicts. A synchronous call of the threshold's
    length keeps the next sample on its line most of the time whatever its share. When a
    line holds most of the loop, that comparison has no power; then a line that is a plain
    call (not an `await`) is taken as blocking, since a coroutine only suspends at an await.

    The comparison takes a line's runs to be followed by random draws of the loop. A plain
    call is followed by the code after it in its request, rarely by itself again: one that
    holds a share s of the loop then scores (p - s) / (1 - s) for a within-call stay p, so
    the bar is lowered by (1 - s) for plain lines. Measured (a Django app whose two
    middlewares sleep 25 and 20 ms in turn, 91% of the loop between them): the 20 ms line at
    a 39% share scored 0.31 and was not found; with the bar, 0.21 at that share, it is. No
    line of the clean busy apps holds two samples in more than 20% of its runs (bench/README
    "Two blocking lines in a row"), so none gets past `min_long_share` either way.
    """
    bar = params.min_stickiness * (1.0 if await_line else 1.0 - ev.share)
    if ev.excess >= bar and ev.long_share >= params.min_long_share:
        return True
    return not await_line and ev.share >= params.dominant_share


_AWAIT = re.compile(r"(?:^|[^\w.])(?:await|async\s+with|async\s+for)\b")


def is_await_line(code: str | None) -> bool:
    return code is not None and _AWAIT.search(code) is not None


def _label(labels: array[int], st: _Stretch, label: int) -> None:
    for k in range(st.first_run, st.end_run):
        labels[k] = label


def _count_leaf_changes(
    tl: ThreadTimeline, st: _Stretch, ev: LineEvidence, holder: int, user_frames: UserFrames
) -> None:
    profile = user_frames.profile
    previous = -1
    for k in range(st.first_run, st.end_run):
        sid = tl.stack[k]
        leaf = profile.stacks[sid][-1] if profile.stacks[sid] else -1
        n = tl.samples[k]
        if previous >= 0:
            ev.leaf_pairs += 1
            ev.leaf_changes += leaf != previous
        ev.leaf_pairs += n - 1
        previous = leaf
        chain = user_frames.chain(sid)
        if chain and chain[-1] != holder:
            ev.deeper_user += n


def segment_key(
    classifier: LoopClassifier, user_frames: UserFrames, sid: int
) -> tuple[int, ...] | None:
    """What a busy stack runs: its callback and the stack up to its outermost user frame
    (one piece of the app's code, maybe of several requests); None for other stacks."""
    if sid == NO_STACK:
        return None
    sample = classifier.classify(sid)
    outer = user_frames.outer_key(sid) if sample.state == STATE_BUSY else None
    return None if outer is None else (sample.callback, *outer)


def _candidates(
    runs: LoopThreadRuns,
    classifier: LoopClassifier,
    user_frames: UserFrames,
    route_of: Callable[[int], str | None],
    torn: TornStacks,
) -> tuple[list[_Candidate], list[_Stretch], int]:
    """Label idle and off runs, and cut the busy ones into candidate runs and framework
    stretches; also return the thread's loop samples (idle and busy).

    Busy samples form a segment while they share the callback and the outermost user frame
    at the same stack prefix (`segment_key`). In a segment the holder is the deepest user
    frame on most of its samples: the line stays put while a library calls back into deeper
    user code (`json.dumps(default=...)`, `key=` functions, validators), which then shows as
    its calls. When the holder is at an `await`, only samples of one unchanging stack can be
    one call (a coroutine advancing changes its frames), so every run of one stack is its
    own candidate. A torn sample counts as the full stack that stands in for it
    (`TornStacks.stand_ins`); one that nothing stands in for is busy (a loop waiting in its
    selector holds one stack, which reads whole) running unknown code, a stretch of its own.
    """
    tl, labels, stand_in = runs.timeline, runs.labels, runs.stand_in
    candidates: list[_Candidate] = []
    framework: list[_Stretch] = []
    segment: list[int] = []  # run indexes
    key: tuple[int, ...] | None = None
    loop_samples = 0

    def close_segment() -> None:
        if segment:
            candidates.extend(_split_segment(tl, segment, user_frames, stand_in))
            segment.clear()

    for i, (start, dur, sid, n) in enumerate(
        zip(tl.start_s, tl.duration_s, stand_in, tl.samples, strict=True)
    ):
        state = _run_state(sid, classifier, torn)
        labels[i] = state
        if state != STATE_OFF:
            loop_samples += n
        this_key = segment_key(classifier, user_frames, sid)
        if this_key is None:
            close_segment()
            key = None
            if state == STATE_BUSY:
                # Framework code alone: only one unchanging stack can be one call (see
                # `_split_segment` on await lines), so each run is its own stretch.
                fw = _Stretch(first_run=i, end_run=i + 1)
                fw.add(start, dur, sid, n)
                framework.append(fw)
            continue
        if this_key != key or (segment and route_of(sid) != route_of(stand_in[segment[-1]])):
            close_segment()
            key = this_key
        segment.append(i)
    close_segment()
    return candidates, framework, loop_samples


def _run_state(sid: int, classifier: LoopClassifier, torn: TornStacks) -> int:
    if sid == NO_STACK:
        return STATE_OFF
    return STATE_BUSY if torn.is_torn(sid) else classifier.classify(sid).state


def _split_segment(
    tl: ThreadTimeline, segment: list[int], user_frames: UserFrames, stand_in: list[int]
) -> list[_Candidate]:
    held: Counter[int] = Counter()
    total = 0
    for k in segment:
        n = tl.samples[k]
        total += n
        for fid in user_frames.chain(stand_in[k]):
            held[fid] += n
    # Go deeper while the next frame is on most of the segment's samples. Under a plain
    # call it must also, across the whole profile, be nearly always there when its caller
    # is: a helper that blocks is on every sample of its caller's line; a `key=` or
    # `default=` function the library calls back thousands of times is on many samples but
    # not on all. (Under an `await` the deeper code is simply what the coroutine awaits.)
    chain = user_frames.chain(stand_in[segment[0]])
    holder = chain[0]
    for outer, inner in itertools.pairwise(chain):
        if held[inner] * 4 < total * 3:
            break
        if not user_frames.is_await(outer) and not user_frames.always_calls(outer, inner):
            break
        holder = inner
    if user_frames.is_await(holder):
        holders, still = _await_holders(segment, user_frames, stand_in)
    else:
        holders = [holder] * len(segment)
        still = [holder if holder in user_frames.chain(stand_in[k]) else -1 for k in segment]
    found: list[_Candidate] = []
    i = 0
    while i < len(segment):
        j = i + 1
        while j < len(segment) and still[j] == still[i] and still[i] >= 0:
            j += 1
        if still[i] >= 0 or holders[i] >= 0:
            stretch = _run_stretch(tl, segment[i], segment[j - 1] + 1, stand_in)
            found.append(_Candidate(holders[i], stretch))
        i = j
    return found


def _await_holders(
    segment: list[int], user_frames: UserFrames, stand_in: list[int]
) -> tuple[list[int], list[int]]:
    """Holders and still-keys of a segment held at an await line.

    Samples at an await line are one call only while the stack does not change; the deepest
    frame of such a stack is the line holding the loop, and runs of one plain-call line (not
    itself an await) join up again. A stack still at an await line of yours counts only when
    a known blocking call holds it (a sync client inside an "async" library): elsewhere in
    library code a quick step repeats its stack whenever the OS leaves the loop thread
    waiting for a core.
    """
    holders = [user_frames.chain(stand_in[k])[-1] for k in segment]
    still = [h if not user_frames.is_await(h) else -1 - i for i, h in enumerate(holders)]
    for i, k in enumerate(segment):
        if still[i] < 0 and not user_frames.held_by_known_call(stand_in[k], holders[i]):
            holders[i] = -1
    return holders, still


def _run_stretch(tl: ThreadTimeline, first: int, end: int, stand_in: list[int]) -> _Stretch:
    st = _Stretch(first_run=first, end_run=end)
    for k in range(first, end):
        st.add(tl.start_s[k], tl.duration_s[k], stand_in[k], tl.samples[k])
    return st


def _episode(
    tl: ThreadTimeline,
    stretch: _Stretch,
    holder: int | None,
    user_frames: UserFrames,
    route_of: Callable[[int], str | None],
    cpu_ratio: Callable[[int, int, float, float], float | None],
    labels: array[int],
    params: AnalysisParams,
    timed: bool,
) -> Episode:
    profile = user_frames.profile
    dominant = stretch.stacks.most_common(1)[0][0]
    route = _route_of_stacks(stretch.stacks, route_of)
    ratio, by_sched = _episode_cpu(profile, tl, stretch, labels, cpu_ratio, params, timed)
    culprit: tuple[str, int] | None = None
    parts: tuple[EpisodePart, ...] = ()
    ms = stretch.duration_s * 1000.0
    if holder is not None:
        frame = profile.frames[holder]
        culprit = (frame.file, frame.line)
        parts = (EpisodePart(frame.file, frame.line, ms, dominant, route),)
    return Episode(
        pid=tl.thread.pid,
        tid=tl.thread.tid,
        start_s=stretch.start_s,
        duration_ms=ms,
        samples=stretch.samples,
        stack_id=dominant,
        culprit=culprit,
        route=route,
        cpu_ratio=ratio,
        parts=parts,
        cpu_by_sched=by_sched,
    )


def _episode_cpu(
    profile: Profile,
    tl: ThreadTimeline,
    stretch: _Stretch,
    labels: array[int],
    cpu_ratio: Callable[[int, int, float, float], float | None],
    params: AnalysisParams,
    timed: bool,
) -> tuple[float | None, bool]:
    """The loop thread's share of an episode on a CPU or waiting for one, and whether it
    comes from the scheduler's 10 ms polls inside it (measured sample times only) rather
    than from 50 ms polls around an episode the loop idled around."""
    pid, tid = tl.thread.pid, tl.thread.tid
    end = stretch.start_s + stretch.duration_s
    if timed and stretch.duration_s >= 3 * SCHED_POLL_S:
        # Inside the episode only: a poll interval each side may hold its neighbours' time.
        shares = sched_shares(
            profile.resources, pid, tid, stretch.start_s + SCHED_POLL_S, end - SCHED_POLL_S
        )
        if shares is not None:
            return min(1.0, shares[0] + shares[1]), True
    if not _is_isolated(tl, labels, stretch, params.kind_margin_s):
        return None, False
    margin = params.kind_margin_s
    runnable = cpu_ratio(pid, tid, stretch.start_s - margin, end + margin)
    if runnable is None:
        return None, False
    # The idle margins add (almost) nothing: scale back to the episode.
    return min(1.0, runnable * (stretch.duration_s + 2 * margin) / stretch.duration_s), False


def promote_short_stretches(
    loop_runs: list[LoopThreadRuns],
    lines: set[tuple[str, int]],
    user_frames: UserFrames,
    route_of: Callable[[int], str | None],
) -> list[Episode]:
    """Episodes of the stretches under the threshold that a culprit line held.

    py-spy's samples fall at random instants, so a stretch's sample count is Poisson: a
    30 ms block at 100 Hz gets one sample or none a fifth of the time and reads as 10 ms,
    under a 20 ms threshold. Once a line has proven that it blocks, its short stretches are
    the same calls, sampled short: counting them keeps its blocked time unbiased, and the
    loop's, instead of some 5% low for blocks near the threshold. (Its genuinely short calls
    count too: they also held the loop, and making the line async removes them alike.)
    No line becomes a culprit this way, and `max_ms` is unchanged.
    """
    frames = user_frames.profile.frames
    found: list[Episode] = []
    for runs in loop_runs:
        tl, labels = runs.timeline, runs.labels
        pid, tid = tl.thread.pid, tl.thread.tid
        for first, end, fid in runs.short:
            frame = frames[fid]
            if (frame.file, frame.line) not in lines:
                continue
            # A short stretch is a run or two: its line's longest run is its stack.
            duration_s, samples, best, stack = 0.0, 0, -1, NO_STACK
            for k in range(first, end):
                duration_s += tl.duration_s[k]
                samples += tl.samples[k]
                labels[k] = STATE_BLOCKED
                if tl.samples[k] > best and user_frames.deepest(tl.stack[k]) == fid:
                    best, stack = tl.samples[k], tl.stack[k]
            ms = duration_s * 1000.0
            route = route_of(stack)
            found.append(
                Episode(
                    pid=pid,
                    tid=tid,
                    start_s=tl.start_s[first],
                    duration_ms=ms,
                    samples=samples,
                    stack_id=stack,
                    culprit=(frame.file, frame.line),
                    route=route,
                    cpu_ratio=None,
                    parts=(EpisodePart(frame.file, frame.line, ms, stack, route),),
                )
            )
        runs.short.clear()
    return found


def _route_of_stacks(stacks: Counter[int], route_of: Callable[[int], str | None]) -> str | None:
    routes: Counter[str] = Counter()
    for sid, n in stacks.items():
        route = route_of(sid)
        if route is not None:
            routes[route] += n
    return routes.most_common(1)[0][0] if routes else None


def _is_importing(profile: Profile, stack_id: int) -> bool:
    return any(
        profile.frames[fid].file.startswith("<frozen importlib") for fid in profile.stacks[stack_id]
    )


def _is_isolated(
    tl: ThreadTimeline, labels: array[int], stretch: _Stretch, margin_s: float
) -> bool:
    """True when the loop was (mostly) idle within `margin_s` before and after the stretch.

    Sample times are estimates (py-spy gives order, not time; see store/pyspy.py), good to
    about a tenth of a second. Only an episode with idle margins can be matched to the
    thread's measured CPU time without mixing in its neighbours' CPU.
    """
    start, end = stretch.start_s, stretch.start_s + stretch.duration_s
    busy = 0.0
    lo = max(bisect.bisect_right(tl.start_s, start - margin_s) - 1, 0)
    for k in range(lo, len(tl)):
        r_start = tl.start_s[k]
        if r_start >= end + margin_s:
            break
        if stretch.first_run <= k < stretch.end_run or labels[k] not in (STATE_BUSY, STATE_BLOCKED):
            continue
        r_end = r_start + tl.duration_s[k]
        busy += max(0.0, min(r_end, end + margin_s) - max(r_start, start - margin_s))
    return busy <= 0.25 * 2 * margin_s
