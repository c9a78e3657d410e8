"""Work SQLAlchemy's AsyncSession runs in greenlets, and the routes it is done for.

`await session.execute(...)` runs the ORM's synchronous code (building the statement,
processing rows into objects) in a greenlet on the loop thread. py-spy reads a greenlet's
frames without the task below them: the stack starts at `Session.execute` or `Session.get`,
with no loop, no endpoint and no route. On a busy app using the ORM this is a large part
of the loop's time (1.9 s of 9.4 s in a measured run), and no frame of it names its route.

The routes it is done for are those whose own samples show the AsyncSession (an endpoint,
or a dependency of the route, caught in `sqlalchemy/ext/asyncio` as it hands work to its
greenlet or takes the result back): the session's greenlet time is shared among them
(route_costs.py splits it by requests served, like a shared dependency's).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from asgiprof.analyze.episodes import LoopThreadRuns
from asgiprof.analyze.loop import STATE_BLOCKED, STATE_OFF, LoopClassifier
from asgiprof.model import Profile

_SQLALCHEMY = re.compile(r"[/\\]sqlalchemy[/\\]")
_ASYNC_SESSION = re.compile(r"[/\\]sqlalchemy[/\\]ext[/\\]asyncio[/\\]")


@dataclass(frozen=True, slots=True)
class SessionWork:
    """Loop time in AsyncSession greenlets, and the routes seen using the session."""

    loop_ms: float = 0.0
    blocked_ms: float = 0.0
    routes: tuple[str, ...] = ()  # most samples in the session first


def session_work(
    profile: Profile,
    loop_runs: Sequence[LoopThreadRuns],
    classifier: LoopClassifier,
    route_of: Callable[[int], str | None],
    dependency_routes: Callable[[int], tuple[str, ...]],
) -> SessionWork:
    """Greenlet time with no route of its own, and the routes whose samples (endpoint or
    dependency stacks) show the AsyncSession."""
    greenlet: dict[int, bool] = {}
    users: dict[str, int] = {}
    loop_ms = blocked_ms = 0.0
    for lr in loop_runs:
        for dur, sid, n, label in lr.busy_runs():
            in_greenlet = greenlet.get(sid)
            if in_greenlet is None:
                in_greenlet = greenlet[sid] = _in_greenlet(profile, sid, classifier, route_of)
            if in_greenlet:
                loop_ms += dur * 1000.0
                if label == STATE_BLOCKED:
                    blocked_ms += dur * 1000.0
                continue
            if not _shows_session(profile, sid):
                continue
            route = route_of(sid)
            for r in (route,) if route is not None else dependency_routes(sid):
                users[r] = users.get(r, 0) + n
    ranked = sorted(users, key=lambda r: (-users[r], r))
    return SessionWork(loop_ms, blocked_ms, tuple(ranked))


def _in_greenlet(
    profile: Profile, sid: int, classifier: LoopClassifier, route_of: Callable[[int], str | None]
) -> bool:
    """A stack of SQLAlchemy's own code with no loop below it and no route."""
    stack = profile.stacks[sid]
    return (
        bool(stack)
        and _SQLALCHEMY.search(profile.frames[stack[0]].file) is not None
        and classifier.classify(sid).state == STATE_OFF
        and route_of(sid) is None
    )


def _shows_session(profile: Profile, sid: int) -> bool:
    return any(_ASYNC_SESSION.search(profile.frames[fid].file) for fid in profile.stacks[sid])
