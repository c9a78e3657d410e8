"""Hand-built hostile profiles for the reporter tests and benchmarks, run through the real
`analyze()`: every figure a reporter shows is what the analysis computes from the profile.

`sample_profile()` is small and realistic: a FastAPI app on uvicorn with middleware, a
blocking dependency, a saturated two-worker threadpool and leaking resources, with hostile
text (markup, script, template syntax, unicode) in every string a target controls.
`big_profile()` is a seeded, benchmark-sized one (10 minutes at 100 Hz, 40 threads, tens of
thousands of stacks). `sample_analysis()` and `big_analysis()` analyse them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from asgiprof.analyze import analyze
from asgiprof.analyze.frames import is_user
from asgiprof.analyze.result import Analysis, AnalysisParams
from asgiprof.model import Frame, Profile, Route, RouteDependency, TargetInfo
from tests.fastapi_frames import (
    BOOTSTRAP,
    EXCEPTIONS,
    FASTAPI,
    GZIP,
    HANDLER,
    PARAMS,
    ROUTE_HANDLE,
    ROUTER,
    RUN_ENDPOINT,
    SERVER_ERRORS,
    SOLVE,
    SOLVE_NESTED,
    STARLETTE,
)
from tests.profile_builder import (
    IDLE,
    QUEUE_GET,
    SITE,
    STDLIB,
    WORKER,
    Builder,
    request,
    source_reader,
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

APP = "/srv/app/main.py"
PID = 4242
LOOP_TID, POOL_A, POOL_B = 4242, 4250, 4251

WORKER_IDLE = (BOOTSTRAP, WORKER, QUEUE_GET)

# ---- the planted culprit and its hostile companions --------------------------------------

PLANTED_CODE = "time.sleep(0.2)  # planted blocking call"
PLANTED = Frame("get_user", APP, 42)
HOSTILE_FN = Frame(f"render_{SCRIPT}", f"/srv/app/{IMG}/views.py", 7)
HOSTILE_FN_CODE = f'html = "{SCRIPT}" + {TEMPLATE!r}  # {MARKUP} {IMG}'
# A helper the hostile middleware calls (outside every route's lines).
QUOTED_FN = Frame(f"q_{QUOTES}_{TEMPLATE}", f"/srv/app/{MARKUP}_{UNICODE}.py", 13)
QUOTED_FN_CODE = f"x = {QUOTES!r} {UNICODE}"
TMPL_FN = Frame(f"t_{QUOTES}", QUOTED_FN.file, 22)  # the template route's endpoint
SEMI_FN = Frame("semi;colon\nnewline", "/srv/app/odd;path.py", 5)
ITEMS_FN = Frame("list_items", HOSTILE_FN.file, 8)  # the items route, when it is quick
EXPORT = Frame(f"export_{IMG}", HOSTILE_FN.file, 9)  # the items route's sync part, in a worker
EXECUTE = Frame("Session.execute", f"{SITE}/sqlalchemy/orm/session.py", 2245)
SOCK_RECV = Frame("socket.recv_into", f"{STDLIB}/socket.py", 720)
HASH = Frame("hash_password", "/srv/app/auth.py", 31)
LOGIN_FN = Frame("login", APP, 62)
REPORT = Frame("build_report", "/srv/app/reports.py", 88)

# Diagnostics: middleware layers and dependencies with hostile names.
MW_NAME = f"Audit{SCRIPT}Middleware"
MW_FILE = f"/srv/app/{IMG}/middleware.py"
AUDIT = Frame(f"{MW_NAME}.__call__", MW_FILE, 61)  # passes the request on
AUDITING = Frame(AUDIT.function, MW_FILE, 58)  # audits it first: calls QUOTED_FN
SIGN_MW_NAME = f"Sign<{IMG}>Middleware"
SIGN = Frame(f"{SIGN_MW_NAME}.__call__", f"/srv/app/{MARKUP}.py", 9)
SIGNING = Frame(f"{SIGN_MW_NAME}.signed", SIGN.file, 15)  # the layer's own work: many short steps
DEP_NAME = f"current_user_{IMG}"
DEPS = "/srv/app/deps.py"
DEP = Frame(DEP_NAME, DEPS, 12)  # an async dependency calling the blocking hash
DB_NAME = f"db_{QUOTES}"
DB = Frame(DB_NAME, "/srv/app/db.py", 40)  # not declared: seen on the loop and in workers
SETTINGS = Frame("get_settings", "/srv/app/config.py", 12)  # a `def` dependency
# The finding the real analysis draws from the blocking dependency names it.
HOSTILE_FINDING_TITLE = f"dependency {DEP_NAME} blocks the event loop"
LEAK_PORT = 5432

ROUTE_USER = "GET /users/{user_id}"
ROUTE_ITEMS = f"POST /items/{IMG}"
ROUTE_TMPL = f"GET /{TEMPLATE}/{MARKUP}{SCRIPT}"
ROUTE_REPORT = "GET /report"
ROUTE_LOGIN = "POST /login"

_USES_DEP = (RouteDependency(f"deps.{DEP_NAME}", DEPS, 10, 14, 1),)
ROUTES = (
    Route("GET", "/users/{user_id}", "main.get_user", APP, 40, 44, True, _USES_DEP),
    Route("POST", f"/items/{IMG}", "views.render", HOSTILE_FN.file, 5, 9, True, _USES_DEP),
    Route("GET", f"/{TEMPLATE}/{MARKUP}{SCRIPT}", "q", QUOTED_FN.file, 20, 25, True, _USES_DEP),
    Route(
        "GET",
        "/report",
        "reports.build_report",
        REPORT.file,
        80,
        90,
        False,
        (RouteDependency("config.get_settings", SETTINGS.file, 10, 13, 1),),
    ),
    Route("POST", "/login", "main.login", APP, 60, 66, True, _USES_DEP),
)

SOURCE = {
    (PLANTED.file, PLANTED.line): PLANTED_CODE,
    (HOSTILE_FN.file, HOSTILE_FN.line): HOSTILE_FN_CODE,
    (QUOTED_FN.file, QUOTED_FN.line): QUOTED_FN_CODE,
    (HASH.file, HASH.line): "digest = bcrypt.hashpw(password, bcrypt.gensalt(14))",
    (AUDIT.file, AUDIT.line): "await self.app(scope, receive, send)",
    (AUDITING.file, AUDITING.line): f"self.audit(scope)  # {SCRIPT}",
    (SIGN.file, SIGN.line): "await self.app(scope, receive, self.signed(send))",
}
read_line = source_reader(SOURCE)

# The request path: two library layers, the two hostile user layers, then the router.
OUTER = (FASTAPI, STARLETTE, SERVER_ERRORS, GZIP)
LAYERS = (*OUTER, AUDIT, SIGN, EXCEPTIONS)
ENDPOINT = (*LAYERS, ROUTER, ROUTE_HANDLE, HANDLER)


def endpoint(*frames: Frame) -> tuple[Frame, ...]:
    """A loop stack inside a route's endpoint: every layer, then `frames`."""
    return request(*ENDPOINT, RUN_ENDPOINT, *frames)


def solving(*frames: Frame) -> tuple[Frame, ...]:
    """A loop stack solving a route's dependencies: every layer, then `frames`."""
    return request(*ENDPOINT, SOLVE, *frames)


# Leaks are judged after a short warm-up over an 8 s run; a threadpool of two workers.
SAMPLE_PARAMS = AnalysisParams(
    timeline_bins=120,
    threadpool_limit=2,
    threadpool_saturation_share=0.01,
    leak_warmup_s=2.0,
    leak_min_trend_s=4.0,
    finding_min_samples=5,
)

TARGET = TargetInfo(
    pids=(PID,),
    command=("uvicorn", "main:app", "--header", f"x:{SCRIPT}", "--root-path", URL, IMG),
    server="uvicorn",
    cwd="/srv/app",
)

# Resource polls every 0.25 s: RSS and connections to one port grow after the warm-up; one
# poll could not read the connections.
POLLS = 32
UNREADABLE_POLL = 20


def _loop(b: Builder) -> None:
    """The event loop, twelve rounds: idle, a quick request, then blocks of the planted
    sleep, the hostile route's sync query, the middleware's audit helper and the
    dependency's hashing at their own rhythms; the signing layer's many short steps (busy,
    never blocked); and three short steps back to back (a saturated stretch, a note)."""
    for i in range(12):
        b.add(LOOP_TID, IDLE, 30 + 7 * (i % 4), "MainThread", PID)
        b.add(LOOP_TID, endpoint(ITEMS_FN, EXECUTE), 1, pid=PID)
        b.add(LOOP_TID, IDLE, 5, pid=PID)
        if i % 2 == 0:
            b.add(LOOP_TID, endpoint(PLANTED), 20 + i, pid=PID)
            b.add(LOOP_TID, IDLE, 3, pid=PID)
        if i % 3 == 0:
            b.add(LOOP_TID, endpoint(HOSTILE_FN, EXECUTE, SOCK_RECV), 6, pid=PID)
            b.add(LOOP_TID, IDLE, 3, pid=PID)
        if i % 4 == 1:
            b.add(LOOP_TID, request(*OUTER, AUDITING, QUOTED_FN), 4, pid=PID)
            b.add(LOOP_TID, IDLE, 3, pid=PID)
        if i % 5 == 2:
            b.add(LOOP_TID, solving(DEP, HASH), 9, pid=PID)
            b.add(LOOP_TID, endpoint(LOGIN_FN), 1, pid=PID)
            b.add(LOOP_TID, IDLE, 3, pid=PID)
        if i % 4 == 3:
            b.add(LOOP_TID, solving(SOLVE_NESTED, PARAMS), 1, pid=PID)  # FastAPI's own solving
            b.add(LOOP_TID, IDLE, 2, pid=PID)
        for _ in range(6):
            b.add(LOOP_TID, request(*OUTER, AUDIT, SIGN, SIGNING), 1, pid=PID)
            b.add(LOOP_TID, IDLE, 2, pid=PID)
        b.add(LOOP_TID, solving(DB), 1, pid=PID)
        b.add(LOOP_TID, endpoint(TMPL_FN, SEMI_FN), 1, pid=PID)
        b.add(LOOP_TID, request(*OUTER, AUDIT, SIGN), 1, pid=PID)


def _pool(b: Builder) -> None:
    """Two threadpool workers: the report route and the `def` dependency on one, the items
    route's export and the undeclared dependency on the other."""
    report = (BOOTSTRAP, WORKER, REPORT)
    export = (BOOTSTRAP, WORKER, EXPORT)
    for i in range(10):
        b.add(POOL_A, WORKER_IDLE, 40, f"AnyIO worker {UNICODE}", PID)
        b.add(POOL_A, (BOOTSTRAP, WORKER, SETTINGS), 2, pid=PID)
        b.add(POOL_A, report, 12 + i, pid=PID)
        # Offset from the first worker's rhythm: both are busy at once now and then.
        b.add(POOL_B, WORKER_IDLE, 44, f"pool-{QUOTES}{SCRIPT}", PID)
        b.add(POOL_B, export, 6, pid=PID)
        b.add(POOL_B, (BOOTSTRAP, WORKER, DB), 2, pid=PID)


def _resources(b: Builder) -> None:
    t_s = [0.02 + 0.25 * i for i in range(POLLS)]
    warm = [min(i, 8) for i in range(POLLS)]
    rss = [
        40.0 + 2.5 * w + (1.1 * (i - 8) if i > 8 else 0.0) + 0.3 * (i % 3)
        for i, w in enumerate(warm)
    ]
    fds = [12 + 2 * w + (i % 2) for i, w in enumerate(warm)]
    threads = [4 + (1 if i > 2 else 0) for i in range(POLLS)]
    ports = {LEAK_PORT: [1 + max(0, i - 6) for i in range(POLLS)], 6379: [2] * POLLS}
    b.polls(PID, t_s, rss, fds, threads, ports, unreadable={UNREADABLE_POLL})


def sample_profile() -> Profile:
    """One uvicorn process: a loop thread and two threadpool workers, five routes, four
    blocking lines (one in middleware, one under a dependency); hostile text everywhere."""
    b = Builder(routes=ROUTES, target=TARGET, started_at=1_700_000_000.0)
    _loop(b)
    _pool(b)
    _resources(b)
    # `run` read the server's access log: requests per route (and some 404s).
    b.access_log(
        {ROUTE_USER: 6, ROUTE_ITEMS: 16, ROUTE_TMPL: 12, ROUTE_REPORT: 10, ROUTE_LOGIN: 3},
        unmatched=4,
    )
    return b.build()


def sample_analysis() -> Analysis:
    return analyze(sample_profile(), SAMPLE_PARAMS, read_line)


def empty_analysis(routes: Sequence[Route] = ROUTES) -> Analysis:
    """Not a single sample: every section of every report must say so instead of failing."""
    return analyze(Builder(routes=routes, target=TARGET).build(), SAMPLE_PARAMS, read_line)


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


BIG_PID = 7000
BIG_LAYERS = tuple(
    Frame(
        f"Layer{i}Middleware.__call__",
        f"/srv/app/middleware/m{i}.py" if i % 3 == 0 else f"{SITE}/lib_{i}/mw.py",
        10 + i,
    )
    for i in range(13)
)
BIG_DEPS = tuple(Frame(f"dep_{i}", f"/srv/app/deps/d{i}.py", 5 + i) for i in range(20))
BIG_PARAMS = AnalysisParams(threadpool_limit=12)


def big_profile(n_stacks: int = 30_000, seed: int = 1, minutes: float = 10.0) -> Profile:
    """A seeded large profile: `minutes` at 100 Hz, 40 threads, ~`n_stacks` stacks, thirteen
    middleware layers, twenty dependencies, one resource poll a second."""
    rng = random.Random(seed)
    rate = 100
    total = int(minutes * 60 * rate)
    methods = ["GET", "POST", "PUT", "DELETE", "GET"] * 5
    handlers = [Frame(f"endpoint_{i}", f"/srv/app/api/routes_{i}.py", 20 + i) for i in range(25)]
    routes = tuple(
        Route(
            m,
            f"/api/v1/resource_{i}/{{item_id}}",
            h.function,
            h.file,
            h.line,
            h.line + 5,
            i < 20,
            tuple(
                RouteDependency(f"deps.{d.function}", d.file, d.line - 1, d.line + 3, 1)
                for d in (BIG_DEPS[i % 20], BIG_DEPS[(i + 7) % 20])
            ),
        )
        for i, (m, h) in enumerate(zip(methods, handlers, strict=True))
    )
    solving_base = request(FASTAPI, *BIG_LAYERS, ROUTER, ROUTE_HANDLE, HANDLER, SOLVE)
    base = request(FASTAPI, *BIG_LAYERS, ROUTER, ROUTE_HANDLE, HANDLER, RUN_ENDPOINT)
    worker_base = (BOOTSTRAP, WORKER)
    # A third on the event loop, the rest in threadpool threads: enough segments use each.
    loop_stacks = _big_stacks(rng, n_stacks // 3, base, handlers[:20])
    pool_stacks = _big_stacks(rng, n_stacks - n_stacks // 3, worker_base, handlers[20:])
    blocking = [s for s in loop_stacks if is_user(s[-1])][:40] or loop_stacks[:40]
    target = TargetInfo(
        pids=(BIG_PID,), command=("uvicorn", "app.main:app", "--workers", "1"), server="uvicorn"
    )
    b = Builder(rate_hz=rate, routes=routes, target=target, started_at=1_700_000_000.0)
    n = 0
    while b.clock(BIG_PID) * rate < total:
        b.add(BIG_PID, IDLE, rng.randint(1, 6), "MainThread", BIG_PID)
        if rng.random() < 0.04:
            b.add(BIG_PID, rng.choice(blocking), rng.randint(3, 25), pid=BIG_PID)
        elif rng.random() < 0.1:
            b.add(BIG_PID, (*solving_base, rng.choice(BIG_DEPS)), 1, pid=BIG_PID)
        else:
            # One sample: a short step (a run of two at a line of its own would be a 20 ms block).
            b.add(BIG_PID, loop_stacks[n % len(loop_stacks)], 1, pid=BIG_PID)
            n += 1
    m = 0
    for t in range(1, 40):
        tid = BIG_PID + t
        name = f"AnyIO worker thread {t}" if t < 32 else f"sqlalchemy-pool-{t}"
        while b.clock(tid) * rate < total:
            b.add(tid, WORKER_IDLE, rng.randint(5, 60), name, BIG_PID)
            if rng.random() < 0.1:  # a `def` dependency
                b.add(tid, (*worker_base, rng.choice(BIG_DEPS)), rng.randint(1, 4), pid=BIG_PID)
                continue
            b.add(tid, pool_stacks[m % len(pool_stacks)], rng.randint(1, 4), pid=BIG_PID)
            m += 1
    polls = int(minutes * 60)
    b.polls(
        BIG_PID,
        [0.05 + i for i in range(polls)],
        [200.0 + 0.05 * i + rng.uniform(0, 3) for i in range(polls)],
        [40 + rng.randint(0, 3) for _ in range(polls)],
        [44] * polls,
        {
            5432: [10 + i // 30 for i in range(polls)],
            6379: [4] * polls,
            443: [rng.randint(0, 6) for _ in range(polls)],
        },
    )
    return b.build()


def big_read_line(file: str, line: int) -> str | None:
    """The big profile's source: its layers and endpoints pass the request on (so the lines
    that hold the loop are the services' below them); other lines are not known."""
    if file.startswith("/srv/app/middleware/"):
        return "        await self.app(scope, receive, send)"
    if file.startswith("/srv/app/api/"):
        return "    return await service.handle(item_id)"
    return None


def big_analysis(n_stacks: int = 30_000, seed: int = 1, minutes: float = 10.0) -> Analysis:
    return analyze(big_profile(n_stacks, seed, minutes), BIG_PARAMS, big_read_line)
