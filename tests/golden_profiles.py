"""Two fixed hand-built profiles (one worker, two workers) whose every output byte is kept
in tests/data/golden/: the guard that moving code around changes no result."""

from __future__ import annotations

from asgiprof.analyze.result import AnalysisParams
from asgiprof.model import Frame, ResourcePoint, Route, RouteDependency
from tests.profile_builder import (
    HANDLE,
    IDLE,
    LOOP_BASE,
    QUEUE_GET,
    RUN_ONCE,
    SITE,
    STDLIB,
    WORKER,
    Builder,
    request,
    source_reader,
)

APP = "/srv/app/main.py"
DEPS = "/srv/app/deps.py"
MW = "/srv/app/middleware.py"

FASTAPI = Frame("FastAPI.__call__", f"{SITE}/fastapi/applications.py", 1054)
TIMING = Frame("TimingMiddleware.__call__", MW, 20)
ROUTER = Frame("Router.__call__", f"{SITE}/starlette/routing.py", 715)
HANDLER = Frame("get_request_handler.<locals>.app", f"{SITE}/fastapi/routing.py", 528)
RUN_ENDPOINT = Frame("run_endpoint_function", f"{SITE}/fastapi/routing.py", 381)
SOLVE = Frame("solve_dependencies", f"{SITE}/fastapi/dependencies/utils.py", 762)
BOOTSTRAP = Frame("Thread._bootstrap", f"{STDLIB}/threading.py", 1002)
ENDPOINT = (FASTAPI, TIMING, ROUTER, HANDLER)

SLEEP_LINE = Frame("get_user", APP, 15)  # time.sleep in an async route
CURRENT_USER = Frame("current_user", DEPS, 12)  # a blocking dependency
JSON_LINE = Frame("export", APP, 31)  # json.dumps of a big body
DEFAULT = Frame("_default", APP, 40)  # json.dumps's default= callback
ENCODE = Frame("JSONEncoder.iterencode", f"{STDLIB}/json/encoder.py", 258)
REPORT = Frame("slow_report", APP, 50)  # a def route on the threadpool
QUICK = Frame("list_items", APP, 22)

ROUTES = (
    Route(
        "GET",
        "/users/{user_id}",
        "main.get_user",
        APP,
        12,
        16,
        True,
        (RouteDependency("deps.current_user", DEPS, 10, 13, 1),),
    ),
    Route("GET", "/items", "main.list_items", APP, 20, 23, True),
    Route("GET", "/export", "main.export", APP, 28, 33, True),
    Route("GET", "/reports/slow", "main.slow_report", APP, 48, 52, False),
)

SOURCE = {
    (APP, 15): "    time.sleep(0.05)",
    (APP, 22): "    return await repo.items()",
    (APP, 31): "    body = json.dumps(rows, indent=2, default=_default)",
    (APP, 40): "    return obj.isoformat()",
    (APP, 50): "    return hashlib.pbkdf2_hmac('sha256', pw, salt, 200_000)",
    (DEPS, 12): "    return requests.get(AUTH_URL).json()",
    (MW, 20): "        await self.app(scope, receive, send)",
}
read_line = source_reader(SOURCE)

PARAMS = AnalysisParams(one_off_factor=0, finding_min_samples=1, timeline_bins=8)


def _worker(b: Builder, pid: int, scale: int) -> None:
    """One uvicorn worker's loop thread and one threadpool worker; `scale` repeats the
    blocking pattern so two workers differ."""
    loop, pool = pid * 100 + 1, pid * 100 + 2
    for _ in range(scale):
        b.add(loop, IDLE, 20, pid=pid)
        b.add(loop, request(*ENDPOINT, RUN_ENDPOINT, SLEEP_LINE), 5, pid=pid)
        b.add(loop, IDLE, 4, pid=pid)
        b.add(loop, request(*ENDPOINT, SOLVE, CURRENT_USER), 3, pid=pid)
        b.add(loop, request(*ENDPOINT, RUN_ENDPOINT, QUICK), 1, pid=pid)
        b.add(loop, IDLE, 6, pid=pid)
        b.add(loop, request(*ENDPOINT, RUN_ENDPOINT, JSON_LINE, ENCODE), 4, pid=pid)
        b.add(loop, request(*ENDPOINT, RUN_ENDPOINT, JSON_LINE, ENCODE, DEFAULT), 2, pid=pid)
        b.add(loop, request(*ENDPOINT, RUN_ENDPOINT, JSON_LINE, ENCODE), 3, pid=pid)
        b.add(loop, (*LOOP_BASE, RUN_ONCE, HANDLE), 1, pid=pid)
        b.add(loop, IDLE, 10, pid=pid)
        b.add(pool, (BOOTSTRAP, WORKER, QUEUE_GET), 25, pid=pid)
        b.add(pool, (BOOTSTRAP, WORKER, REPORT), 34, pid=pid)
    b.profile.resources.points.extend(
        ResourcePoint(t / 2, pid, 50_000_000 + t * 1_000_000 * scale, 20 + t, 4, 2 + t % 3)
        for t in range(8)
    )
    # The loop thread burns 40% of a CPU, more while the export runs.
    b.thread_cpu(pid, loop, [(t / 2, t * 0.2 + (t // 3) * 0.05) for t in range(8)])


def one_worker() -> Builder:
    b = Builder(routes=ROUTES)
    _worker(b, 7, 3)
    return b


def two_workers() -> Builder:
    b = Builder(routes=ROUTES)
    _worker(b, 7, 3)
    _worker(b, 8, 1)
    return b
