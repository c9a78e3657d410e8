"""What each route costs: its endpoint's own time plus its share of its dependencies.

FastAPI solves a route's dependencies before its endpoint runs, so no dependency stack shows
the route, and a route whose endpoint only returns its dependency's result is almost never
sampled at all. A dependency's loop, blocked and threadpool time is therefore split among
the routes whose dependency tree holds it, by the best evidence there is:

- requests per route from the server's access log (OUT/server.log, from `run` or `attach`):
  every request of a route runs its dependencies once, so shares of requests are shares of
  the dependency's time (exact when each call costs the same);
- otherwise the routes' endpoint samples, a proxy for their traffic (trivial endpoints are
  under-counted: the report says which evidence was used);
- an equal split when neither tells (none of the routes was seen).

Every request also pays loop time no stack attributes to a route: the server's protocol
code (in and outside the request's ASGI call: reading and parsing it, writing the response),
middleware, FastAPI's own work around the endpoint. With an access log it is split
among the routes by their requests; without one it stays unattributed (summary.json's
`request_overhead_ms` says how much), since endpoint samples measure work, not requests.

SQLAlchemy's AsyncSession does the ORM's work in greenlets, whose stacks show no route
(analyze/greenlets.py): that time is split among the routes seen using the session, by
the same evidence as a shared dependency's.

Every route that served requests is listed: with an access log, also routes no sample shows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from asgiprof.analyze.episodes import LoopThreadRuns
from asgiprof.analyze.greenlets import SessionWork
from asgiprof.analyze.loop import STATE_BLOCKED
from asgiprof.analyze.middleware import is_server_code
from asgiprof.analyze.result import (
    Culprit,
    DependencyStats,
    DependencySummary,
    RoutesEvidence,
    RouteStats,
    SplitEvidence,
)
from asgiprof.model import Profile, RequestCounts


@dataclass(frozen=True, slots=True)
class EndpointTime:
    """Sums over the stacks that show a route's endpoint."""

    samples: int = 0
    loop_ms: float = 0.0
    blocked_ms: float = 0.0
    threadpool_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class RequestOverhead:
    """Loop time on the request path outside every endpoint and dependency: the server's
    protocol code, middleware, FastAPI's own solving and serialising. Every request pays
    it; no stack of it shows which route it served."""

    loop_ms: float = 0.0
    blocked_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class RouteCosts:
    routes: list[RouteStats]
    dependencies: DependencySummary  # route lists ordered and shared by evidence
    evidence: RoutesEvidence
    unattributed_ms: float = 0.0  # request overhead no route was given (no access log)


def server_work(profile: Profile, sid: int) -> bool:
    """A loop stack in the server's protocol code outside any request's ASGI call (reading
    and parsing a request, writing a response, keep-alive): work done per request too."""
    return any(is_server_code(profile.frames[fid].file) for fid in profile.stacks[sid])


def request_overhead(
    loop_runs: Sequence[LoopThreadRuns],
    on_request_path: Callable[[int], bool],
    route_of: Callable[[int], str | None],
    in_dependency: Callable[[int], bool],
) -> RequestOverhead:
    """Busy loop time of request-path stacks that show no route and no dependency."""
    loop_ms = blocked_ms = 0.0
    overhead: dict[int, bool] = {}  # per stack id: decided once
    for lr in loop_runs:
        for dur, sid, _n, label in lr.busy_runs():
            is_overhead = overhead.get(sid)
            if is_overhead is None:
                is_overhead = overhead[sid] = (
                    route_of(sid) is None and on_request_path(sid) and not in_dependency(sid)
                )
            if is_overhead:
                loop_ms += dur * 1000.0
                if label == STATE_BLOCKED:
                    blocked_ms += dur * 1000.0
    return RequestOverhead(loop_ms, blocked_ms)


def _split(
    users: Sequence[str],
    endpoints: Mapping[str, EndpointTime],
    requests: Mapping[str, int] | None,
) -> tuple[list[tuple[str, float]], SplitEvidence]:
    """(route, share) of time shared by `users`, most first, and the evidence that decided
    the shares."""
    users = list(users)
    if not users:
        return [], "one-route"
    weights: dict[str, float] = {}
    how: SplitEvidence = "requests"
    if requests is not None:
        served = {r: float(n) for r in users if (n := requests.get(r, 0)) > 0}
        if served:
            weights = served
    if not weights:
        how = "endpoint-samples"
        weights = {r: float(endpoints[r].samples) for r in users if r in endpoints}
        weights = {r: w for r, w in weights.items() if w > 0}
    if not weights:
        how = "equal"
        weights = dict.fromkeys(users, 1.0)
    if len(users) == 1:
        how = "one-route"
    total = sum(weights.values())
    shares = sorted(((r, w / total) for r, w in weights.items()), key=lambda rs: (-rs[1], rs[0]))
    if how != "requests":
        # Without request counts no route is known to have served none: the unseen stay
        # listed, last, with no share of the time.
        shares.extend((r, 0.0) for r in sorted(set(users) - set(weights)))
    return shares, how


def route_costs(
    endpoints: Mapping[str, EndpointTime],
    dependencies: DependencySummary,
    requests: RequestCounts | None,
    overhead: RequestOverhead = RequestOverhead(),
    session: SessionWork | None = None,
) -> RouteCosts:
    """Routes (endpoint time + dependency shares + request overhead share), most expensive
    first, and the dependency summary with each dependency's routes ordered by their share.
    The request overhead is split by requests only: without an access log nothing tells
    how many requests each route served (endpoint samples measure work, not requests)."""
    usable = dict(requests.by_route) if requests is not None and requests.by_route else None
    tally = _Tally.of_endpoints(endpoints)
    deps: list[DependencyStats] = []
    for dep in dependencies.dependencies:
        shares, how = _split(dep.routes, endpoints, usable)
        tally.add_dependency(dep, shares)
        deps.append(
            replace(
                dep,
                routes=tuple(r for r, _ in shares) if shares else dep.routes,
                shares=tuple(s for _, s in shares),
                split_by=how,
            )
        )
    if session is not None and session.loop_ms > 0 and session.routes:
        shares, _how = _split(session.routes, endpoints, usable)
        tally.add_session(session, shares)
    unattributed = overhead.loop_ms
    if usable is not None and overhead.loop_ms > 0:
        tally.add_overhead(overhead.loop_ms, usable)
        unattributed = 0.0
    return RouteCosts(
        routes=tally.routes(endpoints, usable),
        dependencies=replace(dependencies, dependencies=tuple(deps)),
        evidence="access-log" if usable is not None else "endpoint-samples",
        unattributed_ms=unattributed,
    )


@dataclass(slots=True)
class _Tally:
    """Per route, ms: loop, blocked and threadpool time, the dependencies' part of loop and
    threadpool time, and the request overhead's part of loop time."""

    loop: dict[str, float]
    blocked: dict[str, float]
    pool: dict[str, float]
    from_deps: dict[str, float] = field(default_factory=dict)
    overhead_of: dict[str, float] = field(default_factory=dict)
    session_of: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of_endpoints(cls, endpoints: Mapping[str, EndpointTime]) -> _Tally:
        return cls(
            loop={r: e.loop_ms for r, e in endpoints.items()},
            blocked={r: e.blocked_ms for r, e in endpoints.items()},
            pool={r: e.threadpool_ms for r, e in endpoints.items()},
        )

    def add_dependency(self, dep: DependencyStats, shares: list[tuple[str, float]]) -> None:
        for route, share in shares:
            self.loop[route] = self.loop.get(route, 0.0) + dep.loop_ms * share
            self.blocked[route] = self.blocked.get(route, 0.0) + dep.blocked_ms * share
            self.pool[route] = self.pool.get(route, 0.0) + dep.threadpool_ms * share
            self.from_deps[route] = (
                self.from_deps.get(route, 0.0) + (dep.loop_ms + dep.threadpool_ms) * share
            )

    def add_session(self, work: SessionWork, shares: list[tuple[str, float]]) -> None:
        for route, share in shares:
            self.loop[route] = self.loop.get(route, 0.0) + work.loop_ms * share
            self.blocked[route] = self.blocked.get(route, 0.0) + work.blocked_ms * share
            self.session_of[route] = self.session_of.get(route, 0.0) + work.loop_ms * share

    def add_overhead(self, loop_ms: float, requests: Mapping[str, int]) -> None:
        """The request overhead split by requests served."""
        served = sum(requests.values())
        for route, n in requests.items():
            # Not its blocked time: framework samples inside a blocking episode belong to
            # the request that blocked, not to every route's requests alike.
            self.loop[route] = self.loop.get(route, 0.0) + loop_ms * n / served
            self.overhead_of[route] = loop_ms * n / served

    def routes(
        self, endpoints: Mapping[str, EndpointTime], requests: Mapping[str, int] | None
    ) -> list[RouteStats]:
        """Every route seen (or served, with request counts), most expensive first."""
        names = set(self.loop)
        if requests is not None:
            names.update(requests)
        routes = [
            RouteStats(
                route=r,
                samples=endpoints[r].samples if r in endpoints else 0,
                loop_ms=self.loop.get(r, 0.0),
                blocked_ms=self.blocked.get(r, 0.0),
                threadpool_ms=self.pool.get(r, 0.0),
                requests=requests.get(r, 0) if requests is not None else None,
                dependency_ms=self.from_deps.get(r, 0.0),
                overhead_ms=self.overhead_of.get(r, 0.0),
                session_ms=self.session_of.get(r, 0.0),
            )
            for r in names
        ]
        routes.sort(
            key=lambda rs: (-(rs.loop_ms + rs.threadpool_ms), -(rs.requests or 0), rs.route)
        )
        return routes


def order_culprit_routes(culprits: list[Culprit], dependencies: DependencySummary) -> list[Culprit]:
    """A culprit inside a dependency names its dependency's routes in the same evidence
    order (most used first; with an access log, only routes that served requests): its
    `route` is then the route that paid most for it, never the alphabetically first."""
    routes = {d.name: d.routes for d in dependencies.dependencies if d.routes}
    ordered: list[Culprit] = []
    for c in culprits:
        users = routes.get(c.context_name or "") if c.context == "dependency" else None
        ordered.append(replace(c, routes=users, route=users[0]) if users else c)
    return ordered
