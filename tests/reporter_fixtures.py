"""Hand-built Profiles and Analyses for reporter tests and benchmarks.

`sample_analysis()` is small and realistic (routes, culprits, episodes, timeline, views)
with hostile text in every string a target controls; `big_analysis()` is a seeded,
benchmark-sized one (10 minutes at 100 Hz, 40 threads, tens of thousands of stacks). Both
are synthesised from per-thread segments by `synthesize`, so every figure (views, loop
summary, episodes, culprits, routes, timeline) is consistent with the runs.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from asgiprof.analyze.frames import is_user, short_name
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
    Kind,
    LoopSummary,
    RouteStats,
    ThreadRole,
    TimelineBin,
)
from asgiprof.model import (
    Frame,
    Interner,
    Profile,
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
                    episodes.append(
                        Episode(
                            pid=t.pid,
                            tid=t.tid,
                            start_s=clock,
                            duration_ms=ms,
                            samples=seg.samples,
                            stack_id=sid,
                            culprit=culprit_of[sid],
                            route=seg.route,
                            cpu_ratio=None,
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
    return Analysis(
        params=params,
        profile=profile,
        loop=loop,
        episodes=episodes,
        culprits=culprits,
        routes=route_stats,
        timeline=_timeline(loop_runs, end_s, timeline_bins),
        thread_roles=roles,
        views={k: dict(v) for k, v in views.items()},
        notes=list(notes),
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
        function = next(f.function for f in reversed(stack) if (f.file, f.line) == (file, line))
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
        pool_b.append(Segment(WORKER_IDLE, 55, "idle"))
        pool_b.append(Segment(report, 3, "work", ROUTE_REPORT))
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
    return synthesize(
        target,
        plans,
        RouteTable(ROUTES, "app"),
        source=SOURCE,
        advice=ADVICE,
        timeline_bins=120,
        notes=[f"note with {SCRIPT} and {IMG} {TEMPLATE}"],
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
    return synthesize(target, plans, routes, rate_hz=rate, timeline_bins=600)
