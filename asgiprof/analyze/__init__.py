"""Analysis steps, run in a visible order by `analyze()`; see result.py for the output.

Every step is a plain function of the Profile (and earlier steps' results): no printing,
no files. Source lines come in through `read_line` so the caller decides where they live.
Each step of `_STEPS` is `step(facts) -> None`: it reads what the steps before it left in
`_Facts` and adds its own part; `_result` assembles the Analysis from them.

    threads (_Facts.start) -> episodes -> request paths (middleware) + dependencies
    -> culprits -> views and loop totals (_sums) -> middleware, dependency summaries
    -> route costs (endpoints + dependency shares, see route_costs.py) -> threadpool and
    resource summaries -> GIL stalls (culprit-less episodes while pool workers computed)
    -> findings -> sample labels, traffic -> notes -> timeline, fleet, per-process figures
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from asgiprof.analyze.blocks import group_blocks
from asgiprof.analyze.culprits import CulpritContexts, rank_culprits
from asgiprof.analyze.dependencies import (
    DependencyFrames,
    declared_dependencies,
    dependency_findings,
    dependency_summary,
)
from asgiprof.analyze.episodes import (
    LineEvidence,
    LoopThreadRuns,
    UserFrames,
    find_episodes,
    promote_short_stretches,
)
from asgiprof.analyze.fleet import fleet_summary
from asgiprof.analyze.frames import SourceReader
from asgiprof.analyze.gil import CpuRatio, find_gil_stalls, gil_findings, pool_threads
from asgiprof.analyze.greenlets import session_work
from asgiprof.analyze.kind import fit_line_cpu
from asgiprof.analyze.labels import sample_labels
from asgiprof.analyze.leaks import leak_findings, resource_summary
from asgiprof.analyze.loop import STATE_BLOCKED, STATE_BUSY, STATE_IDLE, LoopClassifier
from asgiprof.analyze.middleware import (
    RequestPaths,
    loop_stack_ids,
    middleware_findings,
    middleware_summary,
)
from asgiprof.analyze.processes import process_figures
from asgiprof.analyze.result import (
    ROUTE_VIEW_PREFIX,
    VIEW_ALL,
    VIEW_BLOCKING,
    VIEW_LOOP,
    VIEW_THREADPOOL,
    Analysis,
    AnalysisParams,
    Culprit,
    DependencySummary,
    Episode,
    Finding,
    GilStalls,
    LoopSummary,
    MiddlewareSummary,
    ResourceSummary,
    RouteStats,
    SampleLabels,
    ThreadpoolSummary,
    ThreadRole,
    TrafficSummary,
)
from asgiprof.analyze.roles import thread_roles, threads_with_role
from asgiprof.analyze.route_costs import (
    EndpointTime,
    RouteCosts,
    order_culprit_routes,
    request_overhead,
    route_costs,
    server_work,
)
from asgiprof.analyze.routes import RouteResolver
from asgiprof.analyze.threadpool import (
    WorkerStacks,
    threadpool_findings,
    threadpool_summary,
    worker_threads,
)
from asgiprof.analyze.timeline import loop_timeline
from asgiprof.analyze.traffic import traffic_summary
from asgiprof.model import COVERAGE_NOTE, NO_STACK, Frame, Profile, ThreadTimeline

__all__ = ["analyze"]


def _no_source(file: str, line: int) -> str | None:
    return None


def analyze(
    profile: Profile,
    params: AnalysisParams | None = None,
    read_line: SourceReader = _no_source,
) -> Analysis:
    """Analyse `profile`: the steps below, in this order (see the module docstring). Every
    step is `step(facts) -> None`: it reads what earlier steps put in `facts` and adds its
    own part."""
    facts = _Facts.start(profile, params or AnalysisParams(), read_line)
    for step in _STEPS:
        step(facts)
    return _result(facts)


# What the steps share: the inputs, then each step's part, in the order they are added.
@dataclass(slots=True)
class _Facts:
    profile: Profile
    params: AnalysisParams
    read_line: SourceReader
    cpu_ratio: CpuRatio
    classifier: LoopClassifier
    roles: dict[tuple[int, int], ThreadRole]
    loop_threads: list[ThreadTimeline]
    resolver: RouteResolver
    user_frames: UserFrames
    duration_s: float
    # _episodes
    episodes: list[Episode] = field(default_factory=list)
    loop_runs: list[LoopThreadRuns] = field(default_factory=list)
    evidence: dict[tuple[str, int], LineEvidence] = field(default_factory=dict)
    # _request_paths
    paths: RequestPaths = field(init=False)
    deps: DependencyFrames = field(init=False)
    # _culprits
    culprits: list[Culprit] = field(default_factory=list)
    # _sums
    sums: _Sums = field(init=False)
    loop: LoopSummary = field(init=False)
    # _diagnostics
    middleware: MiddlewareSummary = field(init=False)
    dependencies: DependencySummary = field(init=False)
    routes: list[RouteStats] = field(default_factory=list)
    costs: RouteCosts = field(init=False)
    threadpool: ThreadpoolSummary = field(init=False)
    resources: ResourceSummary = field(init=False)
    gil: GilStalls = field(default_factory=GilStalls)
    # _findings, _notes_and_labels
    findings: list[Finding] = field(default_factory=list)
    gil_found: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sample_labels: SampleLabels = field(init=False)
    traffic: TrafficSummary = field(init=False)

    @classmethod
    def start(cls, profile: Profile, params: AnalysisParams, read_line: SourceReader) -> _Facts:
        """The inputs and the thread roles every step reads."""
        from asgiprof.analyze.resources import cpu_ratio as _cpu_ratio

        def cpu_ratio(pid: int, tid: int, start_s: float, end_s: float) -> float | None:
            return _cpu_ratio(profile.resources, pid, tid, start_s, end_s)

        classifier = LoopClassifier(profile)
        roles = thread_roles(profile, classifier)
        duration_s = max(
            profile.sampling.duration_s,
            max((c.end_s for c in profile.sampling.chunks), default=0.0),
        )
        return cls(
            profile=profile,
            params=params,
            read_line=read_line,
            cpu_ratio=cpu_ratio,
            classifier=classifier,
            roles=roles,
            loop_threads=threads_with_role(profile, roles, "event-loop"),
            resolver=RouteResolver.for_profile(profile, read_line, classifier),
            user_frames=UserFrames(profile, classifier, read_line),
            duration_s=duration_s,
        )


def _episodes(f: _Facts) -> None:
    f.episodes, f.loop_runs, f.evidence = find_episodes(
        f.profile,
        f.loop_threads,
        f.classifier,
        f.user_frames,
        f.resolver.route_of,
        f.cpu_ratio,
        f.params,
    )


def _request_paths(f: _Facts) -> None:
    """Where on the request path each loop stack is: middleware layers, dependencies."""
    index = f.resolver.index

    def is_endpoint(frame: Frame) -> bool:
        return index.match(frame.file, frame.line) is not None

    busy_stacks = loop_stack_ids(f.loop_runs, f.classifier)
    f.paths = RequestPaths(f.profile, f.classifier, is_endpoint, busy_stacks)
    f.deps = DependencyFrames(
        f.profile, declared_dependencies(f.profile.routes.routes, f.read_line)
    )
    f.deps.learn_loop_names(busy_stacks)


def _culprits(f: _Facts) -> None:
    """Rank the lines once, promote their short stretches to episodes, fit each line's CPU,
    then rank again with every episode and the fitted kinds."""
    contexts = CulpritContexts(paths=f.paths, deps=f.deps)
    culprits = rank_culprits(f.profile, f.episodes, f.read_line, f.params, contexts)
    lines = {(c.file, c.line) for c in culprits}
    short = promote_short_stretches(f.loop_runs, lines, f.user_frames, f.resolver.route_of)
    if short:
        f.episodes = sorted([*f.episodes, *short], key=lambda e: (e.start_s, e.pid, e.tid))
    fitted = fit_line_cpu(f.loop_runs, f.episodes, f.cpu_ratio)
    python = {line for line, ev in f.evidence.items() if ev.python_running}
    culprits = rank_culprits(f.profile, f.episodes, f.read_line, f.params, contexts, fitted, python)
    # Why a kind is unknown (its evidence says), and which lines are one block of one
    # function (one fix).
    f.culprits = group_blocks(
        [replace(c, kind_reason=c.kind_evidence) if c.kind == "unknown" else c for c in culprits]
    )


@dataclass(slots=True)
class _Sums:
    """Flamegraph views, per-route sums and loop totals, from one pass over the runs."""

    views: dict[str, dict[int, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )
    route_samples: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    route_loop: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    route_blocked: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    route_pool: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    busy_ms: float = 0.0
    blocked_ms: float = 0.0
    idle_ms: float = 0.0
    first_request_s: float | None = None  # the first sample of request handling

    def add_request(self, start: float) -> None:
        if self.first_request_s is None or start < self.first_request_s:
            self.first_request_s = start

    def add_loop(self, label: int, sid: int, ms: float, route: str | None) -> None:
        self.views[VIEW_LOOP][sid] += ms
        if label == STATE_IDLE:
            self.idle_ms += ms
        elif label in (STATE_BUSY, STATE_BLOCKED):
            self.busy_ms += ms
            if route is not None:
                self.route_loop[route] += ms
            if label == STATE_BLOCKED:
                self.blocked_ms += ms
                self.views[VIEW_BLOCKING][sid] += ms
                if route is not None:
                    self.route_blocked[route] += ms

    def add_pool(self, sid: int, ms: float, route: str | None) -> None:
        self.views[VIEW_THREADPOOL][sid] += ms
        if route is not None:
            self.route_pool[route] += ms

    def endpoint_time(self) -> dict[str, EndpointTime]:
        return {
            r: EndpointTime(
                self.route_samples[r], self.route_loop[r], self.route_blocked[r], self.route_pool[r]
            )
            for r in self.route_samples
        }


def _sums(f: _Facts) -> None:
    """Views and per-route sums in one pass over the runs, then the loop's figures."""
    sums = _Sums()
    runs_of = {id(lr.timeline): lr for lr in f.loop_runs}
    for tl in f.profile.threads:
        role = f.roles.get((tl.thread.pid, tl.thread.tid), "other")
        lr = runs_of.get(id(tl))
        labels = lr.labels if lr is not None else None
        for i, (start, dur, sid, n) in enumerate(tl.runs()):
            if sid == NO_STACK:
                continue
            ms = dur * 1000.0
            sums.views[VIEW_ALL][sid] += ms
            # A torn loop sample's route is that of the stack standing in for it.
            route = f.resolver.route_of(sid if lr is None else lr.stand_in[i])
            label = labels[i] if labels is not None else None
            if route is not None or (
                label in (STATE_BUSY, STATE_BLOCKED) and f.paths.owner(sid) is not None
            ):
                sums.add_request(start)
            if route is not None:
                sums.route_samples[route] += n
                sums.views[ROUTE_VIEW_PREFIX + route][sid] += ms
            if label is not None:
                sums.add_loop(label, sid, ms, route)
            elif role == "threadpool":
                sums.add_pool(sid, ms, route)
    f.sums = sums
    active = sums.busy_ms + sums.idle_ms
    f.loop = LoopSummary(
        busy_ms=sums.busy_ms,
        blocked_ms=sums.blocked_ms,
        idle_ms=sums.idle_ms,
        utilization=sums.busy_ms / active if active > 0 else 0.0,
        longest_block_ms=max((e.duration_ms for e in f.episodes), default=0.0),
        episodes=len(f.episodes),
        threads=tuple((t.thread.pid, t.thread.tid) for t in f.loop_threads),
    )


def _diagnostics(f: _Facts) -> None:
    """Middleware, dependencies, route costs, the threadpool, resources and GIL stalls."""
    f.middleware = middleware_summary(f.paths, f.loop_runs)
    worker_stacks = WorkerStacks.for_profile(f.profile)
    workers = worker_threads(f.profile, worker_stacks)
    dependencies = dependency_summary(
        f.deps, f.loop_runs, workers, worker_stacks.busy_entries(workers)
    )
    paths, deps, profile = f.paths, f.deps, f.profile
    overhead = request_overhead(
        f.loop_runs,
        lambda sid: paths.owner(sid) is not None or server_work(profile, sid),
        f.resolver.route_of,
        lambda sid: deps.on_loop(sid) is not None,
    )
    session = session_work(
        profile,
        f.loop_runs,
        f.classifier,
        f.resolver.route_of,
        deps.routes_on_loop,
    )
    f.costs = route_costs(f.sums.endpoint_time(), dependencies, profile.requests, overhead, session)
    f.routes, f.dependencies = f.costs.routes, f.costs.dependencies
    f.culprits = order_culprit_routes(f.culprits, f.dependencies)
    f.threadpool = threadpool_summary(
        profile,
        workers,
        worker_stacks,
        f.resolver.route_of,
        deps,
        f.params.threadpool_limit,
        f.duration_s,
        f.params.timeline_bins,
    )
    f.resources = resource_summary(profile.resources, f.params, f.sums.first_request_s)
    pool, pool_entries = pool_threads(profile, worker_stacks, f.loop_threads)
    f.gil = find_gil_stalls(
        profile,
        f.episodes,
        f.loop_runs,
        pool,
        pool_entries,
        f.user_frames,
        f.resolver.route_of,
        f.cpu_ratio,
        f.params,
    )


def _findings(f: _Facts) -> None:
    f.gil_found = gil_findings(f.gil, f.duration_s, len(f.loop_threads), f.params)
    # Leaks come last: blocking is measured on every sample, a leak is a trend to confirm.
    f.findings = [
        *threadpool_findings(f.threadpool, f.params, f.profile.sampling.rate_hz),
        *f.gil_found,
        *middleware_findings(f.middleware, f.params),
        *dependency_findings(f.dependencies, f.culprits, f.params, f.read_line),
        *leak_findings(f.resources),
    ]


def _labels_and_traffic(f: _Facts) -> None:
    f.sample_labels = sample_labels(
        f.profile, f.loop_runs, f.episodes, f.culprits, f.resolver.route_of, f.params
    )
    f.traffic = traffic_summary(
        f.loop, f.routes, f.middleware, f.params, f.profile.sampling.rate_hz
    )


def _notes_step(f: _Facts) -> None:
    explained = [s.episode for s in f.gil.stalls] if f.gil_found else []
    notes = _notes(f.params, f.profile, f.loop_threads, f.episodes, f.culprits, explained)
    saturated_ms = sum(lr.saturated_ms for lr in f.loop_runs)
    if saturated_ms > 0:
        stretches = sum(lr.saturated_stretches for lr in f.loop_runs)
        # With threads starving the loop of the GIL, its callbacks are slow, not many.
        remedy = (
            "see the gil-contention finding first: threads holding the GIL slow every callback"
            if f.gil_found
            else "the server needs more workers or less work per request"
        )
        notes.append(
            f"the loop was saturated: {saturated_ms:.0f} ms in {stretches} long busy "
            "stretch(es) were many short callbacks back to back (no one line or stack held "
            f"them), counted as busy, not blocked: {remedy}"
        )
    starved_ms = sum(lr.starved_ms for lr in f.loop_runs)
    if starved_ms > 0:
        stretches = sum(lr.starved_stretches for lr in f.loop_runs)
        notes.append(
            f"the machine was short of CPU: in {stretches} stretch(es), {starved_ms:.0f} ms, "
            "the loop thread mostly waited for a CPU in the middle of quick code (its "
            "scheduler times, polled every 10 ms); counted as busy, not as its line's "
            "blocking: give the server more CPU or fewer neighbours"
        )
    if f.traffic.level == "none" and f.loop.busy_ms == 0:
        # Nothing ran: what py-spy missed of an idle loop changes nothing in the report.
        notes = [n for n in notes if not n.startswith(COVERAGE_NOTE)]
    f.notes = notes


_STEPS: tuple[Callable[[_Facts], None], ...] = (
    _episodes,
    _request_paths,
    _culprits,
    _sums,
    _diagnostics,
    _findings,
    _labels_and_traffic,
    _notes_step,
)


def _result(f: _Facts) -> Analysis:
    timeline = loop_timeline(f.loop_runs, f.duration_s, f.params.timeline_bins)
    return Analysis(
        params=f.params,
        profile=f.profile,
        loop=f.loop,
        episodes=f.episodes,
        culprits=f.culprits,
        routes=f.routes,
        timeline=timeline,
        thread_roles=f.roles,
        views={k: dict(v) for k, v in f.sums.views.items()},
        notes=f.notes,
        middleware=f.middleware,
        dependencies=f.dependencies,
        threadpool=f.threadpool,
        resources=f.resources,
        findings=f.findings,
        sample_labels=f.sample_labels,
        fleet=fleet_summary(f.profile, f.episodes, f.culprits, f.sample_labels),
        routes_evidence=f.costs.evidence,
        request_overhead_ms=f.costs.unattributed_ms,
        traffic=f.traffic,
        processes=process_figures(f.loop_runs, f.episodes, f.culprits, timeline),
        gil=f.gil,
    )


def _notes(
    params: AnalysisParams,
    profile: Profile,
    loop_threads: list[ThreadTimeline],
    episodes: list[Episode],
    culprits: list[Culprit],
    gil_stalls: list[Episode],
) -> list[str]:
    notes: list[str] = []
    if not loop_threads:
        notes.append(
            "no event-loop thread was found in the samples: is this an ASGI server, and was "
            "it serving while sampled?"
        )
    if profile.routes.source == "none":
        why = profile.routes.error or "unknown reason"
        notes.append(f"route table not read ({why}): routes are endpoint function names")
    one_off_ms = params.one_off_factor * params.block_threshold_ms
    ranked = {(c.file, c.line) for c in culprits}
    one_offs = [e for e in episodes if e.culprit is not None and e.culprit not in ranked]
    if one_offs:
        ms = sum(e.duration_ms for e in one_offs)
        longest = max(e.duration_ms for e in one_offs)
        notes.append(
            f"{len(one_offs)} episode(s) of lines that blocked the loop only once (the longest "
            f"{longest:.0f} ms, {ms:.0f} ms in all) were not ranked as culprits: one stall under "
            f"{one_off_ms:.0f} ms is as likely the OS scheduling the loop out as the line"
        )
    # Episodes the gil-contention finding explains are not counted again here.
    stalled = {id(e) for e in gil_stalls}
    orphans = [e for e in episodes if e.culprit is None and id(e) not in stalled]
    if orphans:
        ms = sum(e.duration_ms for e in orphans)
        other = "other " if stalled else ""
        besides = f" (the gil-contention finding explains {len(stalled)} more)" if stalled else ""
        notes.append(
            f"{len(orphans)} {other}blocking episode(s), {ms:.0f} ms{besides}, had no single "
            "line of your code holding the loop (framework or library code, or many short "
            "callbacks): see the 'blocking' flamegraph"
        )
    notes.extend(profile.problems)  # store.load_profile's caveats, already sentences
    status = profile.target.exit_status
    if status is not None:
        how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
        notes.append(f"the target {how} while sampled: the report covers the time until then")
    return notes
