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
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from asgiprof.analyze.frames import is_asgi_dispatch, is_user
from asgiprof.analyze.loop import STATE_BUSY, STATE_IDLE, LoopClassifier
from asgiprof.analyze.result import AnalysisParams, Episode, EpisodePart
from asgiprof.model import NO_STACK, Profile, ThreadTimeline

LABEL_OFF = 0
LABEL_IDLE = 1
LABEL_BUSY = 2
LABEL_BLOCKED = 3


@dataclass(slots=True)
class LoopThreadRuns:
    """Per-run labels (LABEL_*) of one event-loop thread, aligned with its timeline."""

    timeline: ThreadTimeline
    labels: array[int] = field(default_factory=lambda: array("b"))
    # Long busy stretches that were many short callbacks merged (no line, no one stack
    # held them): a saturated loop, counted busy rather than blocked.
    saturated_ms: float = 0.0
    saturated_stretches: int = 0
    # Stretches shorter than the threshold that one user line held (first run, end run,
    # frame id): candidates for `promote_short_stretches`.
    short: list[tuple[int, int, int]] = field(default_factory=list)


class UserFrames:
    """Deepest user-code frame id per stack (None when the stack has none), cached.

    On an event-loop stack only frames from the running callback up count: a server
    started by the user's own `main()` or `<module>` has those frames below the loop on
    every stack, and they are never what blocks it.

    A user line that hands over to framework code which leads back into user code on
    other stacks (a middleware's `await self.app(...)`, `await call_next(request)`) is a
    pass-through: when it is the deepest user frame the framework is working between two
    pieces of user code (routing, writing a response, waiting for the GIL), and that
    line did not block anything. Such stacks count as having no user frame.
    """

    def __init__(self, profile: Profile, classifier: LoopClassifier | None = None) -> None:
        self.profile = profile
        self.classifier = classifier
        self._user = [is_user(f) for f in profile.frames]
        self._pass_through = _pass_through_edges(profile, self._user)
        self._cache: dict[int, int | None] = {}

    def deepest(self, stack_id: int) -> int | None:
        if stack_id in self._cache:
            return self._cache[stack_id]
        stack = self.profile.stacks[stack_id]
        lowest = 0
        if self.classifier is not None:
            callback = self.classifier.classify(stack_id).callback
            if callback >= 0:
                lowest = stack.index(callback)
        found: int | None = None
        for i in range(len(stack) - 1, lowest - 1, -1):
            if self._user[stack[i]]:
                if i + 1 == len(stack) or (stack[i], stack[i + 1]) not in self._pass_through:
                    found = stack[i]
                break
        self._cache[stack_id] = found
        return found


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
                if user_above or stack[i + 1] in dispatch:
                    seen.add((fid, function_of[stack[i + 1]]))
            user_above = True
    return frozenset((fid, callee) for fid, key in seen for callee in lines_of[key])


@dataclass(slots=True)
class _Stretch:
    start_s: float = 0.0
    duration_s: float = 0.0
    samples: int = 0
    callback: int = -1
    first_run: int = 0
    route: str | None = None  # the first route seen in this stretch
    end_run: int = 0
    saw_user: bool = False  # some run had a user frame
    stacks: Counter[int] = field(default_factory=Counter)


def find_episodes(
    profile: Profile,
    loop_threads: list[ThreadTimeline],
    classifier: LoopClassifier,
    user_frames: UserFrames,
    route_of: Callable[[int], str | None],
    cpu_ratio: Callable[[int, int, float, float], float | None],
    params: AnalysisParams,
) -> tuple[list[Episode], list[LoopThreadRuns]]:
    """Label every run of every event-loop thread and return the blocking episodes."""
    threshold_s = params.block_threshold_ms / 1000.0
    episodes: list[Episode] = []
    labelled: list[LoopThreadRuns] = []
    pending_by_thread: list[list[_Stretch]] = []
    for tl in loop_threads:
        labels = array("b", bytes(len(tl)))
        labelled.append(LoopThreadRuns(tl, labels))
        cur: _Stretch | None = None

        pending_by_thread.append([])

        def close(stretch: _Stretch, end_run: int) -> None:
            is_episode = stretch.duration_s >= threshold_s
            label = LABEL_BLOCKED if is_episode else LABEL_BUSY
            labels = labelled[-1].labels
            for k in range(stretch.first_run, end_run):
                labels[k] = label
            if is_episode:
                stretch.end_run = end_run
                pending_by_thread[-1].append(stretch)
            elif stretch.saw_user:
                fid = _dominant_line(stretch, user_frames)
                if fid is not None:
                    labelled[-1].short.append((stretch.first_run, end_run, fid))

        for i, (start, dur, sid, n) in enumerate(tl.runs()):
            state = classifier.classify(sid).state if sid != NO_STACK else LABEL_OFF
            if state == STATE_BUSY:
                callback = classifier.classify(sid).callback
                has_user = user_frames.deepest(sid) is not None
                route = route_of(sid)
                # Under load one request's handler follows another's with no idle sample
                # between them. A new callback, another route, or framework-only samples
                # after user code (its request answered, the next ones being parsed and
                # routed) start a new stretch: the framework work queued behind a block is
                # not the blocking line's time.
                if cur is not None and (
                    cur.callback != callback
                    or (not has_user and cur.saw_user)
                    or (route is not None and cur.route is not None and route != cur.route)
                ):
                    close(cur, i)
                    cur = None
                if cur is None:
                    cur = _Stretch(start, 0.0, 0, callback, i)
                if cur.route is None:
                    cur.route = route
                if has_user:
                    cur.saw_user = True
                cur.duration_s += dur
                cur.samples += n
                cur.stacks[sid] += n
                continue
            if cur is not None:
                close(cur, i)
                cur = None
            labels[i] = LABEL_IDLE if state == STATE_IDLE else LABEL_OFF
        if cur is not None:
            close(cur, len(tl))
        for stretch in pending_by_thread[-1]:
            ratio: float | None = None
            if _is_isolated(tl, labels, stretch, params.kind_margin_s):
                margin = params.kind_margin_s
                end = stretch.start_s + stretch.duration_s
                runnable = cpu_ratio(
                    tl.thread.pid, tl.thread.tid, stretch.start_s - margin, end + margin
                )
                if runnable is not None:
                    # The idle margins add (almost) nothing: scale back to the episode.
                    ratio = min(
                        1.0, runnable * (stretch.duration_s + 2 * margin) / stretch.duration_s
                    )
            episode = _episode(tl, stretch, user_frames, route_of, ratio, params.block_threshold_ms)
            if episode.culprit is None and not _one_place(stretch):
                runs = labelled[-1]
                for k in range(stretch.first_run, stretch.end_run):
                    labels[k] = LABEL_BUSY
                runs.saturated_ms += episode.duration_ms
                runs.saturated_stretches += 1
                continue
            episodes.append(episode)
    episodes.sort(key=lambda e: (e.start_s, e.pid, e.tid))
    return episodes, labelled


def _episode(
    tl: ThreadTimeline,
    stretch: _Stretch,
    user_frames: UserFrames,
    route_of: Callable[[int], str | None],
    ratio: float | None,
    threshold_ms: float = 0.0,
) -> Episode:
    per_frame: Counter[int] = Counter()
    per_route: Counter[str] = Counter()
    frame_stacks: dict[int, Counter[int]] = {}
    for sid, n in stretch.stacks.items():
        fid = user_frames.deepest(sid)
        if fid is not None:
            per_frame[fid] += n
            frame_stacks.setdefault(fid, Counter())[sid] += n
        route = route_of(sid)
        if route is not None:
            per_route[route] += n
    culprit: tuple[str, int] | None = None
    dominant = stretch.stacks.most_common(1)[0][0]
    route = per_route.most_common(1)[0][0] if per_route else None
    if route is None and _is_importing(user_frames.profile, dominant):
        # A worker importing the app inside its running loop (uvicorn 0.30+ with --workers
        # or --reload) before it serves: startup, not a request blocking the loop.
        per_frame.clear()
    frames = user_frames.profile.frames
    ms_per_sample = stretch.duration_s * 1000.0 / stretch.samples
    # Lines that held the loop for a threshold's worth of samples of their own (two at
    # least) each get their own share; the line holding most of the episode gets the rest.
    shares = {
        fid: n * ms_per_sample
        for fid, n in per_frame.items()
        if n >= 2 and n * ms_per_sample >= threshold_ms
    }
    main = _holding_line(per_frame, stretch.samples)
    if main is not None:
        shares[main] = stretch.duration_s * 1000.0 - sum(
            ms for other, ms in shares.items() if other != main
        )
    elif shares:
        main = max(shares, key=lambda f: (shares[f], -f))
    if main is not None:
        culprit = (frames[main].file, frames[main].line)
    parts = tuple(
        EpisodePart(
            frames[fid].file,
            frames[fid].line,
            ms,
            frame_stacks[fid].most_common(1)[0][0],
            _route_of_stacks(frame_stacks[fid], route_of),
        )
        for fid, ms in sorted(shares.items(), key=lambda kv: -kv[1])
    )
    return Episode(
        pid=tl.thread.pid,
        tid=tl.thread.tid,
        start_s=stretch.start_s,
        duration_ms=stretch.duration_s * 1000.0,
        samples=stretch.samples,
        stack_id=dominant,
        culprit=culprit,
        route=route,
        cpu_ratio=ratio,
        parts=parts,
    )


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
                labels[k] = LABEL_BLOCKED
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


def _dominant_line(stretch: _Stretch, user_frames: UserFrames) -> int | None:
    per_frame: Counter[int] = Counter()
    for sid, n in stretch.stacks.items():
        fid = user_frames.deepest(sid)
        if fid is not None:
            per_frame[fid] += n
    return _holding_line(per_frame, stretch.samples)


def _holding_line(per_frame: Counter[int], samples: int) -> int | None:
    """The user frame deepest on more than half of `samples`, if one is: one stray sample
    in user code during a long framework stretch is not evidence against that line."""
    if not per_frame:
        return None
    fid, n = per_frame.most_common(1)[0]
    return fid if n * 2 > samples else None


def _route_of_stacks(stacks: Counter[int], route_of: Callable[[int], str | None]) -> str | None:
    routes: Counter[str] = Counter()
    for sid, n in stacks.items():
        route = route_of(sid)
        if route is not None:
            routes[route] += n
    return routes.most_common(1)[0][0] if routes else None


def _one_place(stretch: _Stretch) -> bool:
    """Did one stack hold most of the stretch? A synchronous call that blocks sits in one
    place; back-to-back short callbacks of a saturated loop are sampled all over."""
    return stretch.stacks.most_common(1)[0][1] * 2 > stretch.samples


def _is_importing(profile: Profile, stack_id: int) -> bool:
    return any(
        profile.frames[fid].file.startswith("<frozen importlib") for fid in profile.stacks[stack_id]
    )


def _is_isolated(
    tl: ThreadTimeline, labels: array[int], stretch: _Stretch, margin_s: float
) -> bool:
    """True when the loop was (mostly) idle within `margin_s` before and after the stretch.

    Sample times are estimates (py-spy gives order, not time; see pyspy_format), good to
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
        if stretch.first_run <= k < stretch.end_run or labels[k] not in (LABEL_BUSY, LABEL_BLOCKED):
            continue
        r_end = r_start + tl.duration_s[k]
        busy += max(0.0, min(r_end, end + margin_s) - max(r_start, start - margin_s))
    return busy <= 0.25 * 2 * margin_s
