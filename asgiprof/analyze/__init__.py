"""Analysis steps, run in a visible order by `analyze()`; see result.py for the output.

Every step is a plain function of the Profile (and earlier steps' results): no printing,
no files. Source lines come in through `read_line` so the caller decides where they live.

    threads -> episodes -> request paths (middleware) + dependencies -> culprits
    -> views -> middleware, dependency summaries -> route costs (endpoints + dependency
    shares, see route_costs.py) -> threadpool and resource summaries
    -> GIL stalls (culprit-less episodes while pool workers computed) -> findings -> notes
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from asgiprof.analyze.blocks import group_blocks
from asgiprof.analyze.culprits import CulpritContexts, SourceReader, rank_culprits
from asgiprof.analyze.dependencies import (
    DependencyFrames,
    declared_dependencies,
    dependency_findings,
    dependency_summary,
)
from asgiprof.analyze.episodes import UserFrames, find_episodes, promote_short_stretches
from asgiprof.analyze.fleet import fleet_summary
from asgiprof.analyze.gil import find_gil_stalls, gil_findings, pool_threads
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
from asgiprof.analyze.result import (
    ROUTE_VIEW_PREFIX,
    VIEW_ALL,
    VIEW_BLOCKING,
    VIEW_LOOP,
    VIEW_THREADPOOL,
    Analysis,
    AnalysisParams,
    Culprit,
    Episode,
    Finding,
    LoopSummary,
)
from asgiprof.analyze.roles import thread_roles, threads_with_role
from asgiprof.analyze.route_costs import (
    EndpointTime,
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
    """Analyse `profile` (see the module docstring for the order of the steps)."""
    params = params or AnalysisParams()
    from asgiprof.analyze.resources import cpu_ratio as _cpu_ratio

    def cpu_ratio(pid: int, tid: int, start_s: float, end_s: float) -> float | None:
        return _cpu_ratio(profile.resources, pid, tid, start_s, end_s)

    classifier = LoopClassifier(profile)
    roles = thread_roles(profile, classifier)
    loop_threads = threads_with_role(profile, roles, "event-loop")
    resolver = RouteResolver.for_profile(profile)
    user_frames = UserFrames(profile, classifier, read_line)

    episodes, loop_runs, evidence = find_episodes(
        profile, loop_threads, classifier, user_frames, resolver.route_of, cpu_ratio, params
    )
    # Where on the request path each loop stack is: middleware layers, dependencies.
    index = resolver.index

    def is_endpoint(frame: Frame) -> bool:
        return index.match(frame.file, frame.line) is not None

    busy_stacks = loop_stack_ids(loop_runs, classifier)
    paths = RequestPaths(profile, classifier, is_endpoint, busy_stacks)
    deps = DependencyFrames(profile, declared_dependencies(profile.routes.routes, read_line))
    deps.learn_loop_names(busy_stacks)
    contexts = CulpritContexts(paths=paths, deps=deps)
    culprits = rank_culprits(profile, episodes, read_line, params, contexts)
    lines = {(c.file, c.line) for c in culprits}
    short = promote_short_stretches(loop_runs, lines, user_frames, resolver.route_of)
    if short:
        episodes = sorted([*episodes, *short], key=lambda e: (e.start_s, e.pid, e.tid))
    fitted = fit_line_cpu(loop_runs, episodes, cpu_ratio)
    python = {line for line, ev in evidence.items() if ev.python_running}
    culprits = rank_culprits(profile, episodes, read_line, params, contexts, fitted, python)
    # Why a kind is unknown (its evidence says), and which lines are one block of one
    # function (one fix).
    culprits = group_blocks(
        [replace(c, kind_reason=c.kind_evidence) if c.kind == "unknown" else c for c in culprits]
    )

    # Views and per-route sums in one pass over the runs.
    views: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    route_samples: dict[str, int] = defaultdict(int)
    route_loop: dict[str, float] = defaultdict(float)
    route_blocked: dict[str, float] = defaultdict(float)
    route_pool: dict[str, float] = defaultdict(float)
    busy_ms = blocked_ms = idle_ms = 0.0
    first_request_s: float | None = None  # the first sample of request handling
    labels_of = {id(lr.timeline): lr.labels for lr in loop_runs}
    for tl in profile.threads:
        role = roles.get((tl.thread.pid, tl.thread.tid), "other")
        labels = labels_of.get(id(tl))
        for i, (start, dur, sid, n) in enumerate(tl.runs()):
            if sid == NO_STACK:
                continue
            ms = dur * 1000.0
            views[VIEW_ALL][sid] += ms
            route = resolver.route_of(sid)
            if route is not None or (
                labels is not None
                and labels[i] in (STATE_BUSY, STATE_BLOCKED)
                and paths.owner(sid) is not None
            ):
                if first_request_s is None or start < first_request_s:
                    first_request_s = start
            if route is not None:
                route_samples[route] += n
                views[ROUTE_VIEW_PREFIX + route][sid] += ms
            if labels is not None:
                views[VIEW_LOOP][sid] += ms
                label = labels[i]
                if label == STATE_IDLE:
                    idle_ms += ms
                elif label in (STATE_BUSY, STATE_BLOCKED):
                    busy_ms += ms
                    if route is not None:
                        route_loop[route] += ms
                    if label == STATE_BLOCKED:
                        blocked_ms += ms
                        views[VIEW_BLOCKING][sid] += ms
                        if route is not None:
                            route_blocked[route] += ms
            elif role == "threadpool":
                views[VIEW_THREADPOOL][sid] += ms
                if route is not None:
                    route_pool[route] += ms

    active = busy_ms + idle_ms
    loop = LoopSummary(
        busy_ms=busy_ms,
        blocked_ms=blocked_ms,
        idle_ms=idle_ms,
        utilization=busy_ms / active if active > 0 else 0.0,
        longest_block_ms=max((e.duration_ms for e in episodes), default=0.0),
        episodes=len(episodes),
        threads=tuple((t.thread.pid, t.thread.tid) for t in loop_threads),
    )
    duration_s = max(
        profile.sampling.duration_s,
        max((c.end_s for c in profile.sampling.chunks), default=0.0),
    )
    middleware = middleware_summary(paths, loop_runs)
    worker_stacks = WorkerStacks.for_profile(profile)
    workers = worker_threads(profile, worker_stacks)
    dependencies = dependency_summary(deps, loop_runs, workers, worker_stacks.busy_entries(workers))
    endpoint_time = {
        r: EndpointTime(route_samples[r], route_loop[r], route_blocked[r], route_pool[r])
        for r in route_samples
    }
    overhead = request_overhead(
        loop_runs,
        lambda sid: paths.owner(sid) is not None or server_work(profile, sid),
        resolver.route_of,
        lambda sid: deps.on_loop(sid) is not None,
    )
    costs = route_costs(endpoint_time, dependencies, profile.requests, overhead)
    routes, dependencies = costs.routes, costs.dependencies
    culprits = order_culprit_routes(culprits, dependencies)
    threadpool = threadpool_summary(
        profile,
        workers,
        worker_stacks,
        resolver.route_of,
        deps,
        params.threadpool_limit,
        duration_s,
        params.timeline_bins,
    )
    resources = resource_summary(profile.resources, params, first_request_s)
    pool, pool_entries = pool_threads(profile, worker_stacks, loop_threads)
    gil = find_gil_stalls(
        profile,
        episodes,
        loop_runs,
        pool,
        pool_entries,
        user_frames,
        resolver.route_of,
        cpu_ratio,
        params,
    )
    gil_found = gil_findings(gil, duration_s, len(loop_threads), params)
    # Leaks come last: blocking is measured on every sample, a leak is a trend to confirm.
    findings: list[Finding] = [
        *threadpool_findings(threadpool, params, profile.sampling.rate_hz),
        *gil_found,
        *middleware_findings(middleware, params),
        *dependency_findings(dependencies, culprits, params, read_line),
        *leak_findings(resources),
    ]
    explained = [s.episode for s in gil.stalls] if gil_found else []
    notes = _notes(params, profile, loop_threads, episodes, culprits, explained)
    saturated_ms = sum(lr.saturated_ms for lr in loop_runs)
    if saturated_ms > 0:
        stretches = sum(lr.saturated_stretches for lr in loop_runs)
        # With threads starving the loop of the GIL, its callbacks are slow, not many.
        remedy = (
            "see the gil-contention finding first: threads holding the GIL slow every callback"
            if gil_found
            else "the server needs more workers or less work per request"
        )
        notes.append(
            f"the loop was saturated: {saturated_ms:.0f} ms in {stretches} long busy "
            "stretch(es) were many short callbacks back to back (no one line or stack held "
            f"them), counted as busy, not blocked: {remedy}"
        )
    per_sample = sample_labels(profile, loop_runs, episodes, culprits, resolver.route_of, params)
    traffic = traffic_summary(loop, routes, middleware, params)
    if traffic.level == "none" and loop.busy_ms == 0:
        # Nothing ran: what py-spy missed of an idle loop changes nothing in the report.
        notes = [n for n in notes if not n.startswith(COVERAGE_NOTE)]
    return Analysis(
        params=params,
        profile=profile,
        loop=loop,
        episodes=episodes,
        culprits=culprits,
        routes=routes,
        timeline=loop_timeline(loop_runs, duration_s, params.timeline_bins),
        thread_roles=roles,
        views={k: dict(v) for k, v in views.items()},
        notes=notes,
        middleware=middleware,
        dependencies=dependencies,
        threadpool=threadpool,
        resources=resources,
        findings=findings,
        sample_labels=per_sample,
        fleet=fleet_summary(profile, episodes, culprits, per_sample),
        routes_evidence=costs.evidence,
        request_overhead_ms=costs.unattributed_ms,
        traffic=traffic,
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
