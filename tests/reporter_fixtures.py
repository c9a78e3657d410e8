"""Hand-built Profiles and Analyses for reporter tests and benchmarks.

`sample_analysis()` is small and realistic (routes, culprits, episodes, timeline, views)
with hostile text in every string a target controls; `big_analysis()` is a seeded,
benchmark-sized one (10 minutes at 100 Hz, 40 threads, tens of thousands of stacks). Both
are synthesised from per-thread segments by `synthesize`, so every figure (views, loop
summary, episodes, culprits, routes, timeline) is consistent with the runs. `diagnose` then
adds the diagnostics: culprit contexts and calls, middleware layers, dependencies, the
threadpool (computed from the worker runs), resource series (through the analysis's own
growth fit) and the findings the analysis would draw from them.
"""

from __future__ import annotations

import dataclasses
import random
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from asgiprof.analyze.dependencies import dependency_findings
from asgiprof.analyze.frames import is_user, short_name
from asgiprof.analyze.leaks import leak_findings, resource_summary
from asgiprof.analyze.middleware import middleware_findings
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
    CulpritContext,
    DependencyStats,
    DependencySummary,
    Episode,
    EpisodePart,
    Finding,
    Kind,
    LoopRunLabels,
    LoopSummary,
    MiddlewareLayer,
    MiddlewareSummary,
    RouteStats,
    RunState,
    SampleLabels,
    ThreadpoolBin,
    ThreadpoolHolder,
    ThreadpoolProcess,
    ThreadpoolSummary,
    ThreadRole,
    TimelineBin,
)
from asgiprof.analyze.threadpool import threadpool_findings
from asgiprof.model import (
    NO_STACK,
    ConnectionSeries,
    Frame,
    Interner,
    Profile,
    ResourcePoint,
    Resources,
    Route,
    RouteTable,
    SamplingInfo,
    TargetInfo,
    ThreadInfo,
    ThreadTimeline,
)

# ---- hostile text: every reporter must show it as text, never interpret it -------------

SCRIPT = "</script><script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
QUOTES = "\"double\" 'single' `back`"
TEMPLATE = "{{ x }}{% if true %}"
MARKUP = "[bold]boom[/bold]"
UNICODE = "ünïcødé ✓ 漢字 \u2028sep\u2029 end"
URL = "https://evil.example/x.js"
HOSTILE = (SCRIPT, IMG, QUOTES, TEMPLATE, MARKUP, UNICODE)

STDLIB = "/usr/lib/python3.12"
SITE = "/srv/venv/lib/python3.12/site-packages"
APP = "/srv/app/main.py"

RUNNER = Frame("Runner.run", f"{STDLIB}/asyncio/runners.py", 118)
RUN_FOREVER = Frame("BaseEventLoop.run_forever", f"{STDLIB}/asyncio/base_events.py", 641)
RUN_ONCE = Frame("BaseEventLoop._run_once", f"{STDLIB}/asyncio/base_events.py", 1986)
RUN_ONCE_SELECT = Frame("BaseEventLoop._run_once", f"{STDLIB}/asyncio/base_events.py", 1949)
SELECT = Frame("EpollSelector.select", f"{STDLIB}/selectors.py", 468)
HANDLE = Frame("Handle._run", f"{STDLIB}/asyncio/events.py", 88)
RUN_ASGI = Frame("RequestResponseCycle.run_asgi", f"{SITE}/uvicorn/protocols/http/h11_impl.py", 403)
APP_CALL = Frame("Starlette.__call__", f"{SITE}/starlette/applications.py", 113)
RUN_ENDPOINT = Frame("run_endpoint_function", f"{SITE}/fastapi/routing.py", 212)
WORKER = Frame("WorkerThread.run", f"{SITE}/anyio/_backends/_asyncio.py", 967)
QUEUE_GET = Frame("Queue.get", f"{STDLIB}/queue.py", 171)
THREAD_BOOT = Frame("Thread._bootstrap", f"{STDLIB}/threading.py", 1030)

LOOP_BASE = (RUNNER, RUN_FOREVER)
IDLE_STACK = (*LOOP_BASE, RUN_ONCE_SELECT, SELECT)
REQUEST_BASE = (*LOOP_BASE, RUN_ONCE, HANDLE, RUN_ASGI, APP_CALL, RUN_ENDPOINT)
WORKER_BASE = (THREAD_BOOT, WORKER)
WORKER_IDLE = (*WORKER_BASE, QUEUE_GET)

# ---- the planted culprit and its hostile companions --------------------------------------

PLANTED_CODE = "time.sleep(0.2)  # planted blocking call"
PLANTED = Frame("get_user", APP, 42)
HOSTILE_FN = Frame(f"render_{SCRIPT}", f"/srv/app/{IMG}/views.py", 7)
HOSTILE_FN_CODE = f'html = "{SCRIPT}" + {TEMPLATE!r}  # {MARKUP} {IMG}'
QUOTED_FN = Frame(f"q_{QUOTES}_{TEMPLATE}", f"/srv/app/{MARKUP}_{UNICODE}.py", 13)
QUOTED_FN_CODE = f"x = {QUOTES!r} {UNICODE}"
SEMI_FN = Frame("semi;colon\nnewline", "/srv/app/odd;path.py", 5)
EXECUTE = Frame("Session.execute", f"{SITE}/sqlalchemy/orm/session.py", 2245)
SOCK_RECV = Frame("socket.recv_into", f"{STDLIB}/socket.py", 720)
HASH = Frame("hash_password", "/srv/app/auth.py", 31)
REPORT = Frame("build_report", "/srv/app/reports.py", 88)

# Diagnostics: a middleware layer and a dependency with hostile names.
MW_NAME = f"Audit{SCRIPT}Middleware"
MW_FILE = f"/srv/app/{IMG}/middleware.py"
SIGN_MW_NAME = f"Sign<{IMG}>Middleware"
DEP_NAME = f"current_user_{IMG}"
HOSTILE_FINDING_TITLE = f"hostile {SCRIPT} title {TEMPLATE}"
LEAK_PORT = 5432

ROUTE_USER = "GET /users/{user_id}"
ROUTE_ITEMS = f"POST /items/{IMG}"
ROUTE_TMPL = f"GET /{TEMPLATE}/{MARKUP}{SCRIPT}"
ROUTE_REPORT = "GET /report"
ROUTE_LOGIN = "POST /login"

ROUTES = (
    Route("GET", "/users/{user_id}", "main.get_user", APP, 40, 44, True),
    Route("POST", f"/items/{IMG}", "views.render", HOSTILE_FN.file, 5, 9, True),
    Route("GET", f"/{TEMPLATE}/{MARKUP}{SCRIPT}", "q", QUOTED_FN.file, 10, 15, True),
    Route("GET", "/report", "reports.build_report", REPORT.file, 80, 90, False),
    Route("POST", "/login", "auth.login", HASH.file, 25, 35, True),
)

SOURCE = {
    (PLANTED.file, PLANTED.line): PLANTED_CODE,
    (HOSTILE_FN.file, HOSTILE_FN.line): HOSTILE_FN_CODE,
    (QUOTED_FN.file, QUOTED_FN.line): QUOTED_FN_CODE,
    (HASH.file, HASH.line): "digest = bcrypt.hashpw(password, bcrypt.gensalt(14))",
}
ADVICE: dict[tuple[str, int], tuple[Kind, str]] = {
    (PLANTED.file, PLANTED.line): (
        "io",
        "time.sleep() blocks the event loop: use `await asyncio.sleep(...)` instead.",
    ),
    (HOSTILE_FN.file, HOSTILE_FN.line): ("cpu", f"advice with `{IMG}` and {SCRIPT}"),
    (HASH.file, HASH.line): (
        "cpu",
        "CPU-bound hashing on the loop: run it in a thread "
        "with `await anyio.to_thread.run_sync(...)`.",
    ),
}

Label = Literal["idle", "busy", "blocked", "work"]


@dataclass(frozen=True, slots=True)
class Segment:
    """`samples` consecutive samples of one stack on one thread."""

    stack: tuple[Frame, ...]
    samples: int
    label: Label  # idle/busy/blocked on event-loop threads; work/idle elsewhere
    route: str | None = None


@dataclass(frozen=True, slots=True)
class ThreadPlan:
    thread: ThreadInfo
    role: ThreadRole
    segments: Sequence[Segment]


def synthesize(
    target: TargetInfo,
    plans: Sequence[ThreadPlan],
    routes: RouteTable,
    rate_hz: int = 100,
    started_at: float = 1_700_000_000.0,
    source: dict[tuple[str, int], str] | None = None,
    advice: dict[tuple[str, int], tuple[Kind, str]] | None = None,
    timeline_bins: int = 600,
    notes: Sequence[str] = (),
) -> Analysis:
    """Build a Profile from segments and the Analysis those runs imply."""
    source = source or {}
    advice = advice or {}
    params = AnalysisParams(timeline_bins=timeline_bins)
    profile = Profile(
        target=target,
        sampling=SamplingInfo(rate_hz, started_at, 0.0, 0, 0),
        routes=routes,
    )
    interner = Interner(profile.frames, profile.stacks)
    period = 1.0 / rate_hz
    views: dict[str, defaultdict[int, float]] = defaultdict(lambda: defaultdict(float))
    route_samples: dict[str, int] = defaultdict(int)
    route_loop: dict[str, float] = defaultdict(float)
    route_blocked: dict[str, float] = defaultdict(float)
    route_pool: dict[str, float] = defaultdict(float)
    loop_ms = {"idle": 0.0, "busy": 0.0, "blocked": 0.0}
    episodes: list[Episode] = []
    loop_runs: list[tuple[float, float, Label]] = []
    run_states: dict[tuple[int, int], list[RunState | None]] = {}
    blocked_runs: list[tuple[tuple[int, int], int, int]] = []  # thread, run index, stack id
    stack_routes: dict[int, str] = {}
    roles: dict[tuple[int, int], ThreadRole] = {}
    stack_ids: dict[tuple[Frame, ...], int] = {}
    culprit_of: dict[int, tuple[str, int] | None] = {}
    end_s = 0.0
    total = 0
    for plan in plans:
        t = plan.thread
        roles[(t.pid, t.tid)] = plan.role
        tl = ThreadTimeline(t)
        profile.threads.append(tl)
        clock = 0.0
        for seg in plan.segments:
            sid = stack_ids.get(seg.stack)
            if sid is None:
                sid = stack_ids[seg.stack] = interner.stack(
                    tuple(interner.frame(f) for f in seg.stack)
                )
            dur = seg.samples * period
            tl.append(clock, dur, sid, seg.samples)
            if seg.route is not None:
                stack_routes[sid] = seg.route
            ms = dur * 1000.0
            total += seg.samples
            views[VIEW_ALL][sid] += ms
            if seg.route is not None:
                route_samples[seg.route] += seg.samples
                views[ROUTE_VIEW_PREFIX + seg.route][sid] += ms
            if plan.role == "event-loop":
                views[VIEW_LOOP][sid] += ms
                state: Label = "busy" if seg.label == "work" else seg.label
                loop_ms[state] += ms
                states = run_states.setdefault((t.pid, t.tid), [])
                states.append("busy" if state == "work" else state)
                if state == "blocked":
                    blocked_runs.append(((t.pid, t.tid), len(states) - 1, sid))
                loop_runs.append((clock, dur, state))
                if state != "idle" and seg.route is not None:
                    route_loop[seg.route] += ms
                if state == "blocked":
                    views[VIEW_BLOCKING][sid] += ms
                    if seg.route is not None:
                        route_blocked[seg.route] += ms
                    if sid not in culprit_of:
                        user = [f for f in seg.stack if is_user(f)]
                        culprit_of[sid] = (user[-1].file, user[-1].line) if user else None
                    culprit = culprit_of[sid]
                    # As analyze() builds them: a culprit is credited through its part.
                    parts = (
                        (EpisodePart(culprit[0], culprit[1], ms, sid, seg.route),)
                        if culprit is not None
                        else ()
                    )
                    episodes.append(
                        Episode(
                            pid=t.pid,
                            tid=t.tid,
                            start_s=clock,
                            duration_ms=ms,
                            samples=seg.samples,
                            stack_id=sid,
                            culprit=culprit,
                            route=seg.route,
                            cpu_ratio=None,
                            parts=parts,
                        )
                    )
            elif plan.role == "threadpool":
                # Like the analysis: every threadpool sample, idle ones included.
                views[VIEW_THREADPOOL][sid] += ms
                if seg.label != "idle" and seg.route is not None:
                    route_pool[seg.route] += ms
            clock += dur
        end_s = max(end_s, clock)
    profile.sampling = SamplingInfo(rate_hz, started_at, end_s, total, 0)
    profile.self_check()

    culprits = _culprits(profile, episodes, source, advice)
    # Per-sample labels as analyze() gives them: a blocked run's kind is its culprit's.
    kind_of = {(c.file, c.line): c.kind for c in culprits}
    run_kinds: dict[tuple[int, int], list[Kind | None]] = {
        key: [None] * len(states) for key, states in run_states.items()
    }
    for key, index, sid in blocked_runs:
        line = culprit_of.get(sid)
        run_kinds[key][index] = kind_of.get(line, "unknown") if line else "unknown"
    labels = SampleLabels(
        period_s=period,
        loop_runs={
            key: LoopRunLabels(tuple(states), tuple(run_kinds[key]))
            for key, states in run_states.items()
        },
        stack_routes=stack_routes,
        workers={tl.thread.pid: str(tl.thread.pid) for tl in profile.threads},
    )
    active = loop_ms["idle"] + loop_ms["busy"] + loop_ms["blocked"]
    busy_ms = loop_ms["busy"] + loop_ms["blocked"]
    loop = LoopSummary(
        busy_ms=busy_ms,
        blocked_ms=loop_ms["blocked"],
        idle_ms=loop_ms["idle"],
        utilization=busy_ms / active if active else 0.0,
        longest_block_ms=max((e.duration_ms for e in episodes), default=0.0),
        episodes=len(episodes),
        threads=tuple(k for k, r in roles.items() if r == "event-loop"),
    )
    route_stats = sorted(
        (
            RouteStats(r, route_samples[r], route_loop[r], route_blocked[r], route_pool[r])
            for r in route_samples
        ),
        key=lambda rs: (-(rs.loop_ms + rs.threadpool_ms), rs.route),
    )
    timeline = _timeline(loop_runs, end_s, timeline_bins)
    return Analysis(
        params=params,
        profile=profile,
        loop=loop,
        episodes=episodes,
        culprits=culprits,
        routes=route_stats,
        timeline=timeline,
        thread_roles=roles,
        views={k: dict(v) for k, v in views.items()},
        notes=list(notes),
        sample_labels=labels,
        processes=process_figures(profile, loop, episodes, culprits, timeline),
    )


def _culprits(
    profile: Profile,
    episodes: list[Episode],
    source: dict[tuple[str, int], str],
    advice: dict[tuple[str, int], tuple[Kind, str]],
) -> list[Culprit]:
    groups: dict[tuple[str, int], list[Episode]] = defaultdict(list)
    for e in episodes:
        if e.culprit is not None:
            groups[e.culprit].append(e)
    ranked = sorted(groups.items(), key=lambda kv: (-sum(e.duration_ms for e in kv[1]), kv[0]))
    out: list[Culprit] = []
    for rank, ((file, line), eps) in enumerate(ranked, start=1):
        longest = max(eps, key=lambda e: e.duration_ms)
        stack = profile.stack_frames(longest.stack_id)
        index = max(i for i, f in enumerate(stack) if (f.file, f.line) == (file, line))
        function = stack[index].function
        by_route: dict[str, float] = defaultdict(float)
        for e in eps:
            if e.route is not None:
                by_route[e.route] += e.duration_ms
        routes = tuple(sorted(by_route, key=lambda r: (-by_route[r], r)))
        kind: Kind = "unknown"
        text: str | None = None
        if (file, line) in advice:
            kind, text = advice[(file, line)]
        out.append(
            Culprit(
                rank=rank,
                file=file,
                line=line,
                function=function,
                code=source.get((file, line)),
                route=routes[0] if routes else None,
                routes=routes,
                kind=kind,
                blocked_ms=sum(e.duration_ms for e in eps),
                episodes=len(eps),
                max_ms=longest.duration_ms,
                stack=tuple(short_name(f) for f in stack),
                stack_id=longest.stack_id,
                advice=text,
                cpu_ratio=None,
                calls=tuple(short_name(f) for f in stack[index + 1 :]),
            )
        )
    return out


def _timeline(
    runs: list[tuple[float, float, Label]], duration_s: float, bins: int
) -> list[TimelineBin]:
    if duration_s <= 0 or bins <= 0:
        return []
    width = duration_s / bins
    acc = [[0.0, 0.0, 0.0] for _ in range(bins)]
    slot = {"idle": 0, "busy": 1, "blocked": 2}
    for start, dur, label in runs:
        t, end = start, min(start + dur, duration_s)
        while t < end - 1e-12:
            b = min(int(t / width), bins - 1)
            if b < bins - 1 and (b + 1) * width <= t:
                b += 1  # t / width rounded down across a bin edge
            upto = end if b == bins - 1 else min(end, (b + 1) * width)
            acc[b][slot[label]] += upto - t
            t = upto
    return [
        TimelineBin(b * width, width, a[0] * 1000, a[1] * 1000, a[2] * 1000)
        for b, a in enumerate(acc)
    ]


# ---- diagnostics: what `analyze` adds beyond culprits ---------------------------------------


def threadpool_from_runs(analysis: Analysis, limit: int) -> ThreadpoolSummary:
    """Busy workers over time from the threadpool threads' runs (a worker is busy unless its
    stack ends in the queue wait), binned like the event-loop timeline; holders by route."""
    profile = analysis.profile
    route_of: dict[int, str] = {}
    for vid, weights in analysis.views.items():
        if vid.startswith(ROUTE_VIEW_PREFIX):
            for sid in weights:
                route_of[sid] = vid[len(ROUTE_VIEW_PREFIX) :]
    idle = {
        sid
        for sid, stack in enumerate(profile.stacks)
        if stack and profile.frames[stack[-1]] == QUEUE_GET
    }
    events: dict[int, list[tuple[float, int]]] = defaultdict(list)
    runs: dict[int, list[tuple[float, float, str]]] = defaultdict(list)
    busy_ms: dict[str, float] = defaultdict(float)
    workers: dict[int, int] = defaultdict(int)
    for tl in profile.threads:
        if analysis.thread_roles.get((tl.thread.pid, tl.thread.tid)) != "threadpool":
            continue
        pid = tl.thread.pid
        workers[pid] += 1
        for start, dur, sid, _n in tl.runs():
            if sid == NO_STACK or sid in idle or dur <= 0:
                continue
            name = route_of.get(sid, "other: worker")
            busy_ms[name] += dur * 1000.0
            events[pid].extend(((start, 1), (start + dur, -1)))
            runs[pid].append((start, start + dur, name))
    bins = analysis.timeline
    width = bins[0].width_s if bins else 0.0
    mean = [0.0] * len(bins)
    peak = [0] * len(bins)
    at_limit_by: dict[str, float] = defaultdict(float)
    processes: list[ThreadpoolProcess] = []
    at_limit_total = 0.0
    for pid in sorted(workers):
        ev = sorted(events[pid])
        count = most = 0
        prev = ev[0][0] if ev else 0.0
        stretches: list[tuple[float, float]] = []
        for t, delta in ev:
            if t > prev and count > 0:
                if count >= limit:
                    stretches.append((prev, t))
                b = prev
                while width and b < t - 1e-12:
                    k = min(int(b / width + 1e-9), len(bins) - 1)
                    upto = t if k == len(bins) - 1 else min(t, (k + 1) * width)
                    mean[k] += count * (upto - b) / width
                    peak[k] = max(peak[k], count)
                    b = upto
            prev = t
            count += delta
            most = max(most, count)
        # Worker time of each holder inside the (sorted, disjoint) stretches at the limit.
        starts = [a for a, _ in stretches]
        for start, end, name in runs[pid]:
            k = max(0, bisect_right(starts, start) - 1)
            while k < len(stretches) and stretches[k][0] < end:
                overlap = min(stretches[k][1], end) - max(stretches[k][0], start)
                if overlap > 0:
                    at_limit_by[name] += overlap * 1000.0
                k += 1
        pid_at_limit = sum(z - a for a, z in stretches)
        at_limit_total += pid_at_limit
        processes.append(ThreadpoolProcess(pid, workers[pid], most, pid_at_limit * 1000.0))
    duration = profile.sampling.duration_s
    total = sum(busy_ms.values())
    return ThreadpoolSummary(
        limit=limit,
        workers_seen=max(workers.values(), default=0),
        max_busy=max((p.max_busy for p in processes), default=0),
        mean_busy=total / 1000.0 / duration if duration else 0.0,
        busy_ms=total,
        at_limit_ms=at_limit_total * 1000.0,
        at_limit_share=at_limit_total / duration if duration else 0.0,
        timeline=tuple(
            ThreadpoolBin(b.start_s, b.width_s, m, p)
            for b, m, p in zip(bins, mean, peak, strict=True)
        ),
        holders=tuple(
            sorted(
                (
                    ThreadpoolHolder(
                        name=name,
                        kind="route" if not name.startswith("other:") else "other",
                        busy_ms=ms,
                        share=ms / total if total else 0.0,
                        at_limit_ms=at_limit_by.get(name, 0.0),
                    )
                    for name, ms in busy_ms.items()
                ),
                key=lambda h: (-h.busy_ms, h.name),
            )
        ),
        processes=tuple(processes),
    )


@dataclass(frozen=True, slots=True)
class PlannedLayer:
    name: str
    function: str
    file: str
    line: int
    self_ms: float
    blocked_ms: float = 0.0
    role: Literal["middleware", "app"] = "middleware"


def middleware_from_layers(
    layers: Sequence[PlannedLayer], server_ms: float, route_ms: float, rate_hz: int
) -> MiddlewareSummary:
    request_ms = server_ms + route_ms + sum(layer.self_ms for layer in layers)
    return MiddlewareSummary(
        request_ms=request_ms,
        layers_ms=sum(layer.self_ms for layer in layers if layer.role == "middleware"),
        server_ms=server_ms,
        route_ms=route_ms,
        layers=tuple(
            MiddlewareLayer(
                order=order,
                name=layer.name,
                function=layer.function,
                file=layer.file,
                line=layer.line,
                origin="user" if is_user(Frame("", layer.file, 0)) else "library",
                role=layer.role,
                samples=round(layer.self_ms * rate_hz / 1000),
                self_ms=layer.self_ms,
                blocked_ms=layer.blocked_ms,
                share=layer.self_ms / request_ms if request_ms else 0.0,
            )
            for order, layer in enumerate(layers)
        ),
    )


def resources_from_polls(
    pid: int,
    t_s: Sequence[float],
    rss_mib: Sequence[float],
    fds: Sequence[int],
    threads: Sequence[int],
    ports: Mapping[int, Sequence[int]],
    unreadable: frozenset[int] = frozenset(),
) -> tuple[Resources, ConnectionSeries]:
    """Polls of one process; connections are the sum over `ports`, unreadable (-1) at the
    poll indexes in `unreadable`, which the connection log leaves out (as the monitor does)."""
    points: list[ResourcePoint] = []
    readable: list[int] = []
    for i, t in enumerate(t_s):
        conns = -1 if i in unreadable else sum(counts[i] for counts in ports.values())
        points.append(
            ResourcePoint(t, pid, int(rss_mib[i] * 1024 * 1024), fds[i], threads[i], conns)
        )
        if i not in unreadable:
            readable.append(i)
    series = ConnectionSeries(
        pid,
        tuple(t_s[i] for i in readable),
        tuple(points[i].connections for i in readable),
        tuple({port: counts[i] for port, counts in ports.items()} for i in readable),
        tuple({} for _ in readable),
    )
    return Resources(points=points), series


def with_context(
    culprit: Culprit, context: CulpritContext, name: str | None, routes: Sequence[str] = ()
) -> Culprit:
    routes = tuple(routes) or culprit.routes
    return dataclasses.replace(
        culprit,
        context=context,
        context_name=name,
        routes=routes,
        route=routes[0] if routes else culprit.route,
    )


def diagnose(
    analysis: Analysis,
    params: AnalysisParams,
    *,
    culprits: list[Culprit],
    middleware: MiddlewareSummary,
    dependencies: DependencySummary,
    resources: Sequence[tuple[Resources, ConnectionSeries]],
    extra_findings: Sequence[Finding] = (),
) -> Analysis:
    """The analysis with its diagnostics, and the findings the analysis draws from them."""
    analysis = dataclasses.replace(analysis, params=params, culprits=culprits)
    threadpool = threadpool_from_runs(analysis, params.threadpool_limit)
    points = Resources(
        points=[p for res, _ in resources for p in res.points],
        connections={conns.pid: conns for _, conns in resources},
    )
    summary = resource_summary(points, params)
    findings = [
        *threadpool_findings(threadpool, params),
        *middleware_findings(middleware, params),
        *dependency_findings(dependencies, culprits, params),
        *extra_findings,
        *leak_findings(summary),  # last, as analyze() ranks them
    ]
    return dataclasses.replace(
        analysis,
        middleware=middleware,
        dependencies=dependencies,
        threadpool=threadpool,
        resources=summary,
        findings=findings,
    )


# ---- the small, hostile, realistic analysis ----------------------------------------------


def sample_analysis() -> Analysis:
    """Three threads, five routes, four culprits; hostile text in every target string."""
    planted = (*REQUEST_BASE, PLANTED)
    hostile = (*REQUEST_BASE, HOSTILE_FN, EXECUTE, SOCK_RECV)
    quoted = (*REQUEST_BASE, QUOTED_FN)
    hashing = (*REQUEST_BASE, HASH)
    odd = (*REQUEST_BASE, SEMI_FN)
    healthy = (*REQUEST_BASE, Frame("list_items", "/srv/app/items.py", 17), EXECUTE)
    report = (*WORKER_BASE, Frame("run_sync_in_worker", f"{SITE}/anyio/to_thread.py", 56), REPORT)
    export = (*report[:-1], Frame(f"export_{IMG}", "/srv/app/export.py", 12))

    loop: list[Segment] = []
    for i in range(12):
        loop.append(Segment(IDLE_STACK, 30 + 7 * (i % 4), "idle"))
        loop.append(Segment(healthy, 2, "busy", ROUTE_ITEMS))
        loop.append(Segment(IDLE_STACK, 5, "idle"))
        if i % 2 == 0:
            loop.append(Segment(planted, 20 + i, "blocked", ROUTE_USER))
        if i % 3 == 0:
            loop.append(Segment(hostile, 6, "blocked", ROUTE_ITEMS))
        if i % 4 == 1:
            loop.append(Segment(quoted, 4, "blocked", ROUTE_TMPL))
        if i % 5 == 2:
            loop.append(Segment(hashing, 9, "blocked", ROUTE_LOGIN))
        loop.append(Segment(odd, 1, "busy", ROUTE_TMPL))
    pool_a: list[Segment] = []
    pool_b: list[Segment] = []
    for i in range(10):
        pool_a.append(Segment(WORKER_IDLE, 40, "idle"))
        pool_a.append(Segment(report, 12 + i, "work", ROUTE_REPORT))
        # Offset from pool_a's rhythm: both workers are busy at once now and then.
        pool_b.append(Segment(WORKER_IDLE, 44, "idle"))
        pool_b.append(Segment(export, 8, "work", ROUTE_ITEMS))
    plans = [
        ThreadPlan(ThreadInfo(4242, 4242, "MainThread"), "event-loop", loop),
        ThreadPlan(ThreadInfo(4242, 4250, f"AnyIO worker {UNICODE}"), "threadpool", pool_a),
        ThreadPlan(ThreadInfo(4242, 4251, f"pool-{QUOTES}{SCRIPT}"), "threadpool", pool_b),
    ]
    target = TargetInfo(
        pids=(4242,),
        command=("uvicorn", "main:app", "--header", f"x:{SCRIPT}", "--root-path", URL, IMG),
        server="uvicorn",
        cwd="/srv/app",
    )
    base = synthesize(
        target,
        plans,
        RouteTable(ROUTES, "app"),
        source=SOURCE,
        advice=ADVICE,
        timeline_bins=120,
        notes=[f"note with {SCRIPT} and {IMG} {TEMPLATE}"],
    )
    return _sample_diagnostics(base)


def _sample_diagnostics(base: Analysis) -> Analysis:
    """Contexts, middleware, dependencies, threadpool (limit 2), resources with two leaks."""
    params = dataclasses.replace(
        base.params,
        threadpool_limit=2,
        threadpool_saturation_share=0.01,
        leak_warmup_s=2.0,
        leak_min_trend_s=4.0,  # the polls span 8 s
    )
    dep_routes = (ROUTE_LOGIN, ROUTE_TMPL, ROUTE_USER, ROUTE_ITEMS)
    culprits = []
    for c in base.culprits:
        if (c.file, c.line) == (QUOTED_FN.file, QUOTED_FN.line):
            c = with_context(c, "middleware", MW_NAME)
        elif (c.file, c.line) == (HASH.file, HASH.line):
            c = with_context(c, "dependency", DEP_NAME, dep_routes)
        culprits.append(c)
    middleware = middleware_from_layers(
        [
            PlannedLayer(
                "ProxyHeadersMiddleware",
                "ProxyHeadersMiddleware.__call__",
                f"{SITE}/uvicorn/middleware/proxy_headers.py",
                63,
                0.0,
            ),
            PlannedLayer(
                "FastAPI",
                "FastAPI.__call__",
                f"{SITE}/fastapi/applications.py",
                1054,
                2.0,
                0,
                "app",
            ),
            PlannedLayer(
                "ServerErrorMiddleware",
                "ServerErrorMiddleware.__call__",
                f"{SITE}/starlette/middleware/errors.py",
                164,
                0.0,
            ),
            PlannedLayer(
                "GZipMiddleware",
                "GZipMiddleware.__call__",
                f"{SITE}/starlette/middleware/gzip.py",
                79,
                30.0,
            ),
            PlannedLayer(MW_NAME, f"{MW_NAME}.dispatch", MW_FILE, 61, 260.0, 240.0),
            PlannedLayer(
                SIGN_MW_NAME, f"{SIGN_MW_NAME}.__call__", f"/srv/app/{MARKUP}.py", 9, 60.0
            ),
            PlannedLayer(
                "ExceptionMiddleware",
                "ExceptionMiddleware.__call__",
                f"{SITE}/starlette/middleware/exceptions.py",
                63,
                0.0,
            ),
        ],
        server_ms=40.0,
        route_ms=400.0,
        rate_hz=base.profile.sampling.rate_hz,
    )
    dependencies = DependencySummary(
        solving_ms=14.0,
        dependencies=(
            DependencyStats(
                DEP_NAME, HASH.file, HASH.line, "loop", 190.0, 180.0, 0.0, 19, dep_routes
            ),
            DependencyStats(
                "get_settings",
                "/srv/app/config.py",
                12,
                "threadpool",
                0.0,
                0.0,
                85.0,
                9,
                (ROUTE_REPORT,),
            ),
            DependencyStats(f"db_{QUOTES}", "/srv/app/db.py", 40, "both", 12.0, 0.0, 30.0, 4, ()),
        ),
    )
    # Polls every 0.25 s: RSS and connections to one port grow after the warm-up; one poll
    # could not read the connections.
    n = 32
    t_s = [0.02 + 0.25 * i for i in range(n)]
    warm = [min(i, 8) for i in range(n)]
    rss = [
        40.0 + 2.5 * w + (1.1 * (i - 8) if i > 8 else 0.0) + 0.3 * (i % 3)
        for i, w in enumerate(warm)
    ]
    fds = [12 + 2 * w + (i % 2) for i, w in enumerate(warm)]
    threads = [4 + (1 if i > 2 else 0) for i in range(n)]
    ports = {LEAK_PORT: [1 + max(0, i - 6) for i in range(n)], 6379: [2] * n}
    resources = resources_from_polls(
        4242, t_s, rss, fds, threads, ports, unreadable=frozenset({20})
    )
    hostile = Finding(
        kind="middleware-cost",
        severity="info",
        title=HOSTILE_FINDING_TITLE,
        detail=f"detail `{IMG}` {TEMPLATE} {MARKUP} {UNICODE}",
        advice=f"advice `{SCRIPT}` and {IMG}",
        subject=MW_NAME,
    )
    return diagnose(
        base,
        params,
        culprits=culprits,
        middleware=middleware,
        dependencies=dependencies,
        resources=[resources],
        extra_findings=[hostile],
    )


# ---- the big one, for benchmarks ---------------------------------------------------------


def _big_stacks(
    rng: random.Random, n: int, base: tuple[Frame, ...], handlers: Sequence[Frame]
) -> list[tuple[Frame, ...]]:
    """`n` distinct stacks sharing prefixes the way real ones do (a growing call tree)."""
    files = (
        [f"/srv/app/services/svc_{i}.py" for i in range(40)]
        + [f"{SITE}/lib_{i}/core.py" for i in range(60)]
        + [f"{STDLIB}/mod_{i}.py" for i in range(30)]
    )
    pool = [
        Frame(f"func_{k}", files[k % len(files)], 10 + (k * 37) % 700 + variant)
        for k in range(2500)
        for variant in (0, 3)
    ]
    stacks: list[tuple[Frame, ...]] = []
    seen: set[tuple[Frame, ...]] = set()
    while len(stacks) < n:
        if stacks and rng.random() < 0.9:
            # Extend a recent stack's prefix: deep, shared call paths, as in real servers.
            parent = stacks[-1 - int(rng.expovariate(1 / 200)) % len(stacks)]
            prefix = parent[: rng.randint(len(base) + 1, len(parent))]
        else:
            prefix = (*base, rng.choice(handlers))
        stack = prefix + tuple(rng.choice(pool) for _ in range(rng.randint(1, 5)))
        stack = stack[:70]
        if stack not in seen:
            seen.add(stack)
            stacks.append(stack)
    return stacks


def big_analysis(n_stacks: int = 30_000, seed: int = 1, minutes: float = 10.0) -> Analysis:
    """A seeded large analysis: `minutes` at 100 Hz, 40 threads, ~`n_stacks` stacks."""
    rng = random.Random(seed)
    rate = 100
    total = int(minutes * 60 * rate)
    route_names = [
        f"{m} /api/v1/resource_{i}/{{item_id}}"
        for i, m in enumerate(["GET", "POST", "PUT", "DELETE", "GET"] * 5)
    ]
    handlers = [Frame(f"endpoint_{i}", f"/srv/app/api/routes_{i}.py", 20 + i) for i in range(25)]
    route_of = dict(zip(handlers, route_names, strict=True))
    # A third on the event loop, the rest in threadpool threads: enough segments use each.
    loop_stacks = _big_stacks(rng, n_stacks // 3, REQUEST_BASE, handlers[:20])
    pool_stacks = _big_stacks(rng, n_stacks - n_stacks // 3, WORKER_BASE, handlers[20:])
    blocking = [s for s in loop_stacks if is_user(s[-1])][:40] or loop_stacks[:40]

    def route(stack: tuple[Frame, ...], depth: int) -> str | None:
        return route_of.get(stack[depth])

    loop: list[Segment] = []
    used = 0
    n = 0
    while used < total:
        idle = rng.randint(1, 6)
        loop.append(Segment(IDLE_STACK, idle, "idle"))
        used += idle
        if rng.random() < 0.04:
            stack = rng.choice(blocking)
            k = rng.randint(3, 25)
            loop.append(Segment(stack, k, "blocked", route(stack, len(REQUEST_BASE))))
        else:
            stack = loop_stacks[n % len(loop_stacks)]
            n += 1
            k = rng.randint(1, 2)
            loop.append(Segment(stack, k, "busy", route(stack, len(REQUEST_BASE))))
        used += k
    plans = [ThreadPlan(ThreadInfo(7000, 7000, "MainThread"), "event-loop", loop)]
    m = 0
    for t in range(1, 40):
        role: ThreadRole = "threadpool" if t < 32 else "other"
        segs: list[Segment] = []
        used = 0
        while used < total:
            idle = rng.randint(5, 60)
            segs.append(Segment(WORKER_IDLE, idle, "idle"))
            used += idle
            stack = pool_stacks[m % len(pool_stacks)]
            m += 1
            k = rng.randint(1, 4)
            segs.append(Segment(stack, k, "work", route(stack, len(WORKER_BASE))))
            used += k
        name = f"AnyIO worker thread {t}" if role == "threadpool" else f"sqlalchemy-pool-{t}"
        plans.append(ThreadPlan(ThreadInfo(7000, 7000 + t, name), role, segs))
    target = TargetInfo(
        pids=(7000,), command=("uvicorn", "app.main:app", "--workers", "1"), server="uvicorn"
    )
    routes = RouteTable(
        tuple(
            Route(r.split(" ")[0], r.split(" ")[1], h.function, h.file, h.line, h.line + 5, True)
            for h, r in route_of.items()
        ),
        "app",
    )
    base = synthesize(target, plans, routes, rate_hz=rate, timeline_bins=600)
    return _big_diagnostics(base, rng, minutes)


def _big_diagnostics(base: Analysis, rng: random.Random, minutes: float) -> Analysis:
    """Thirteen layers, twenty dependencies, a threadpool limit of 12, a poll per second."""
    params = dataclasses.replace(base.params, threadpool_limit=12)
    route_names = [r.route for r in base.routes] or ["GET /"]
    contexts: list[tuple[CulpritContext, str | None]] = [
        ("endpoint", None),
        ("middleware", "AuthMiddleware"),
        ("dependency", "get_db"),
        ("other", None),
    ]
    culprits = [
        with_context(c, *contexts[i % len(contexts)], route_names[i % 3 : i % 3 + 4])
        if i % len(contexts)
        else c
        for i, c in enumerate(base.culprits)
    ]
    layer_names = [f"Layer{i}Middleware" for i in range(13)]
    middleware = middleware_from_layers(
        [
            PlannedLayer(
                name,
                f"{name}.__call__",
                f"/srv/app/middleware/m{i}.py" if i % 3 == 0 else f"{SITE}/lib_{i}/mw.py",
                10 + i,
                rng.uniform(0, 400) if i % 2 else 0.0,
                rng.uniform(0, 50) if i % 4 == 1 else 0.0,
            )
            for i, name in enumerate(layer_names)
        ],
        server_ms=900.0,
        route_ms=base.loop.busy_ms * 0.6,
        rate_hz=base.profile.sampling.rate_hz,
    )
    dependencies = DependencySummary(
        solving_ms=120.0,
        dependencies=tuple(
            DependencyStats(
                f"dep_{i}",
                f"/srv/app/deps/d{i}.py",
                5 + i,
                ("loop", "threadpool", "both")[i % 3],
                rng.uniform(0, 900),
                rng.uniform(0, 100) if i % 5 == 0 else 0.0,
                rng.uniform(0, 2000),
                rng.randint(1, 500),
                tuple(route_names[i % 5 : i % 5 + 1 + i % 6]),
            )
            for i in range(20)
        ),
    )
    n = int(minutes * 60)
    t_s = [0.05 + i for i in range(n)]
    rss = [200.0 + 0.05 * i + rng.uniform(0, 3) for i in range(n)]
    fds = [40 + rng.randint(0, 3) for _ in range(n)]
    threads = [44] * n
    ports = {
        5432: [10 + i // 30 for i in range(n)],
        6379: [4] * n,
        443: [rng.randint(0, 6) for _ in range(n)],
    }
    resources = resources_from_polls(7000, t_s, rss, fds, threads, ports)
    return diagnose(
        base,
        params,
        culprits=culprits,
        middleware=middleware,
        dependencies=dependencies,
        resources=[resources],
    )
