"""Issue 5: every way people serve ASGI apps gives the same culprit, route and blocked time.

Each case serves an app with one planted 100 ms `time.sleep` in an `async def` route, the
way people run it in production (uvloop, worker processes, gunicorn, hypercorn, granian,
--reload, CPython 3.9 to 3.13, Starlette/Litestar/Quart, apps with loops in threads),
profiles it with `python -m asgiprof run|attach` under real load on 127.0.0.1, and checks:
the planted line is the top culprit, under its route, with the blocked time the server
measured itself (each planted sleep timed in the process, tests/truth_site) within 3
sampling sd (+2%) of the samples taken; each serving
process has exactly one event-loop thread, its main thread; attached servers keep serving.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import psutil
import pytest

from asgiprof import store
from asgiprof.analyze import analyze
from asgiprof.analyze.processes import process_summaries
from asgiprof.analyze.result import Analysis
from asgiprof.record.command import parse_server_command
from asgiprof.record.loadgen import free_port
from asgiprof.record.routes import read_route_table
from tests.planted_truth import PlantedTruth, planted_truth, truth_env
from tests.profiling import culprit_at
from tests.servers import HOST, planted_lines
from tests.targets import (
    DJANGO,
    LITESTAR,
    QUART,
    STARLETTE,
    THREADS,
    App,
    CommandServer,
    Profiled,
    TargetPythonError,
    profile_under_load,
    target_python,
    write_app,
)

pytestmark = pytest.mark.integration

BACKGROUND_MARK = "# background:"  # lines that block a loop of the app's own, not the server's
LOAD_S = 3.0
# An upper bound: profile_under_load stops asgiprof once the load has drained (about 5 s).
DURATION_S = "60"
# examples/blocking_sleep.py, served from examples/
FASTAPI = App("blocking_sleep", "", "/users/1", "GET /users/{user_id}")

Argv = Callable[[str, str, int], list[str]]  # (python, "module:app", port) -> command line


def uvicorn(*extra: str) -> Argv:
    return lambda py, app, port: [
        *(py, "-m", "uvicorn", app, "--host", HOST, "--port", str(port), *extra)
    ]


def gunicorn(*extra: str) -> Argv:
    return lambda py, app, port: [
        *(py, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker"),
        *("-b", f"{HOST}:{port}", *extra, app),
    ]


def hypercorn(*extra: str) -> Argv:
    return lambda py, app, port: [py, "-m", "hypercorn", "-b", f"{HOST}:{port}", *extra, app]


def granian(*extra: str) -> Argv:
    return lambda py, app, port: [
        *(py, "-m", "granian", "--interface", "asgi", "--host", HOST, "--port", str(port)),
        *extra,
        app,
    ]


def daphne(*extra: str) -> Argv:
    return lambda py, app, port: [py, "-m", "daphne", "-b", HOST, "-p", str(port), *extra, app]


@dataclass(frozen=True, slots=True)
class Case:
    server: str  # what asgiprof must name in target.server
    argv: Argv
    mode: Literal["run", "attach"]
    app: App = FASTAPI
    python: str | None = None  # CPython minor of a pyenv venv; None: the tests' own
    processes: int = 1  # serving processes (workers), each with one event-loop thread
    c_loop: bool = False  # uvloop/granian: the loop runs in C (no asyncio frames)
    in_child: bool = False  # the app runs in child processes of the one asgiprof is given
    restarts: bool = False  # the server replaces its workers while sampled


CASES = {
    # 1. uvloop, asked for and as uvicorn's default when installed
    "uvicorn-uvloop-run": Case("uvicorn", uvicorn("--loop", "uvloop"), "run", c_loop=True),
    "uvicorn-default-loop-attach": Case("uvicorn", uvicorn(), "attach", c_loop=True),
    # 2. worker processes, merged and per process; gunicorn restarts its workers meanwhile
    "uvicorn-workers-run": Case(
        "uvicorn", uvicorn("--workers", "2", "--loop", "asyncio"), "run", processes=2, in_child=True
    ),
    "gunicorn-restarting-workers-attach": Case(
        "gunicorn",
        gunicorn("-w", "2", "--max-requests", "12", "--max-requests-jitter", "0"),
        "attach",
        processes=3,  # the first two workers and at least one that replaced one of them
        c_loop=True,
        in_child=True,
        restarts=True,
    ),
    "gunicorn-workers-run": Case(
        "gunicorn", gunicorn("-w", "2"), "run", processes=2, c_loop=True, in_child=True
    ),
    "hypercorn-workers-run": Case(
        "hypercorn", hypercorn("-w", "2"), "run", processes=2, in_child=True
    ),
    "hypercorn-uvloop-attach": Case(
        "hypercorn", hypercorn("-k", "uvloop"), "attach", c_loop=True, in_child=True
    ),
    # 3. --reload: the app runs in the reloader's child process
    "uvicorn-reload-run": Case(
        "uvicorn", uvicorn("--reload", "--loop", "asyncio"), "run", in_child=True
    ),
    # 4. other servers and frameworks
    "granian-workers-run": Case(
        "granian", granian("--workers", "2"), "run", processes=2, c_loop=True, in_child=True
    ),
    "granian-attach": Case("granian", granian(), "attach", c_loop=True, in_child=True),
    "starlette-granian-asyncio-run": Case(
        "granian", granian("--loop", "asyncio"), "run", app=STARLETTE, in_child=True
    ),
    "litestar-uvicorn-attach": Case("uvicorn", uvicorn(), "attach", app=LITESTAR, c_loop=True),
    "quart-hypercorn-run": Case("hypercorn", hypercorn(), "run", app=QUART, in_child=True),
    "django-uvicorn-asyncio-run": Case("uvicorn", uvicorn("--loop", "asyncio"), "run", app=DJANGO),
    "django-daphne-attach": Case("daphne", daphne(), "attach", app=DJANGO),
    # 5. target Pythons (3.11 is the tests' own, above); uvicorn's default loop is uvloop
    "cpython3.9-uvloop-run": Case("uvicorn", uvicorn(), "run", python="3.9", c_loop=True),
    "cpython3.9-asyncio-attach": Case(
        "uvicorn", uvicorn("--loop", "asyncio"), "attach", python="3.9"
    ),
    "cpython3.10-uvloop-attach": Case("uvicorn", uvicorn(), "attach", python="3.10", c_loop=True),
    "cpython3.12-asyncio-run": Case("uvicorn", uvicorn("--loop", "asyncio"), "run", python="3.12"),
    "cpython3.13-uvloop-run": Case("uvicorn", uvicorn(), "run", python="3.13", c_loop=True),
    # 6. an app with loops and work of its own in threads
    "threads-uvicorn-run": Case("uvicorn", uvicorn("--loop", "asyncio"), "run", app=THREADS),
}


ServerStarter = Callable[[str, Argv, Path, str, dict[str, str]], CommandServer]


@pytest.fixture
def start_server(
    tmp_path: Path,
    _no_leaked_children: None,  # requested so its leak check runs after servers stop
) -> Iterator[ServerStarter]:
    """Start servers from any command line; all are stopped (by PID) when the test ends."""
    servers: list[CommandServer] = []

    def start(name: str, argv: Argv, cwd: Path, python: str, env: dict[str, str]) -> CommandServer:
        app = f"{name}:app"
        gunicorn = parse_server_command(argv(python, app, 0)).server == "gunicorn"
        server = CommandServer(
            name,
            lambda port: argv(python, app, port),
            stop_signal=signal.SIGTERM if gunicorn else signal.SIGINT,  # see CommandServer
            cwd=cwd,
            log_dir=tmp_path,
            env=env,
        )
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in reversed(servers):
            server.stop()
            print(f"--- {' '.join(server.command)} (exit {server.returncode}) ---")
            print(server.log_text())  # pytest shows it when the test failed


def _python(case: Case) -> str:
    if case.python is None:
        return sys.executable
    try:
        python = target_python(case.python)
    except TargetPythonError as exc:
        pytest.fail(f"could not create the CPython {case.python} target venv: {exc}")
    if python is None:
        pytest.skip(f"no CPython {case.python} under pyenv (pyenv install {case.python})")
    return str(python)


def _app_file(case: Case, tmp_path: Path, examples_dir: Path) -> Path:
    if case.app is FASTAPI:
        return examples_dir / "blocking_sleep.py"
    folder = tmp_path / "app"
    folder.mkdir()
    return write_app(case.app, folder)


@pytest.mark.usefixtures("needs_ptrace")
@pytest.mark.parametrize(
    "name",
    [
        # A target Python's venv is created by its first test when missing (see .ci/run).
        pytest.param(name, marks=pytest.mark.timeout(150 if case.python is None else 750))
        for name, case in CASES.items()
    ],
)
def test_server_matrix_finds_the_planted_line_route_and_blocked_time(
    name: str, tmp_path: Path, examples_dir: Path, start_server: ServerStarter
) -> None:
    case = CASES[name]
    python = _python(case)
    app_file = _app_file(case, tmp_path, examples_dir)
    (line,) = planted_lines(app_file)
    paths = [case.app.blocking_path, *case.app.other_paths]
    out, truth_file = tmp_path / "out", tmp_path / "truth.log"
    env = truth_env(truth_file)  # every process of the server times its planted sleeps

    # GIVEN the app served the case's way, WHEN asgiprof profiles it under 3 s of load
    server: CommandServer | None = None
    if case.mode == "run":
        port = free_port()
        argv = case.argv(python, f"{case.app.module}:app", port)
        args = ["run", "--duration", DURATION_S, "--", *argv]
    else:
        server = start_server(case.app.module, case.argv, app_file.parent, python, env)
        port = server.port
        before = server.process_pids()
        args = ["attach", str(server.pid), "--duration", DURATION_S]
    profiled = profile_under_load(
        args, cwd=app_file.parent, out=out, port=port, paths=paths, load_s=LOAD_S, env=env
    )
    served = profiled.served(case.app.blocking_path)
    assert served >= 10, profiled.loads
    data = profiled.summary

    # THEN the server is named, and the planted line is the top culprit under its route
    assert data["target"]["server"] == case.server
    culprit = culprit_at(data, app_file, line)
    assert culprit is not None, _explain(profiled)
    assert culprit["rank"] == 1, _explain(profiled)
    assert culprit["route"] == case.app.route
    # ... with the blocked time the server measured, within the sampling error
    truth = planted_truth(out, truth_file, app_file, line)
    print(f"{name}: served {served}, {truth.describe(culprit['blocked_ms'])}")
    assert truth.logged >= served, (truth, served)  # every answered request's sleep was timed
    _assert_blocked_like_truth(culprit["blocked_ms"], truth, profiled)
    truth_ms = truth.ms
    # ... and no middleware is said to cost much: these apps' middleware does next to nothing
    # (Django's handler, which runs the views, is the app, not a layer)
    assert not [f for f in data["findings"] if f["kind"] == "middleware-cost"], data["findings"]
    # ... no other line blocked a request (a worker caught importing the app is, with no
    # route), and a loop the app runs in a thread of its own is not the server's
    assert [c["line"] for c in data["culprits"] if c["route"] is not None] == [line]
    for background in marked_lines(app_file, BACKGROUND_MARK):
        assert culprit_at(data, app_file, background) is None, data["culprits"]
    # ... the loop was seen idle as well as busy, through the loop the case runs
    loop = data["event_loop"]
    assert loop["idle_ms"] > 500 and 0.0 < loop["utilization"] < 1.0, loop
    assert loop["busy_ms"] >= loop["blocked_ms"] >= 0.8 * truth_ms, loop
    asyncio_frames = any("_run_once" in frame for frame in culprit["stack"])
    assert asyncio_frames is not case.c_loop, culprit["stack"]

    # ... each serving process has one event-loop thread, its main thread
    analysis = _analysis(out)
    analysis.self_check()  # the Analysis's parts agree on a real profile
    per_process = process_summaries(analysis)
    assert len(per_process) >= case.processes, per_process
    for proc in per_process:
        assert proc.event_loop_tids == (proc.pid,), per_process
    # ... the findings are merged across processes and available per process
    planted = [c for p in per_process for c in p.culprits if c.line == line and c.rank == 1]
    # Every worker whose loop was blocked serving a route shows the line (the kernel spreads
    # connections between workers as it likes: on a loaded machine one granian worker once
    # got them all); 300 ms blocked is three of the line's 100 ms calls. A worker still
    # importing the app when sampling starts blocks too, with no route (a CI run: 396 ms in
    # two episodes 0.2-0.6 s in, in a worker that then served nothing).
    routed_ms: dict[int, float] = defaultdict(float)
    for episode in analysis.episodes:
        if episode.route is not None:
            routed_ms[episode.pid] += episode.duration_ms
    serving = [p for p in per_process if routed_ms[p.pid] >= 300.0]
    assert len(planted) >= min(len(serving), 2) >= 1, per_process
    assert sum(c.blocked_ms for c in planted) == pytest.approx(culprit["blocked_ms"])
    assert {c.route for c in planted} == {case.app.route}
    # ... in the workers or reload child, not in the process asgiprof was given
    target_pid = data["target"]["pids"][0]
    assert all((p.pid != target_pid) is case.in_child for p in per_process), per_process
    # ... and report.html's Workers switch offers each of several serving processes
    if len(per_process) > 1:
        page = (out / "report.html").read_text(encoding="utf-8")
        for proc in per_process:
            assert f'<option value="{proc.pid}">PID {proc.pid} (' in page, proc.pid

    # ... and an attached server keeps serving, with the same processes
    if server is not None:
        response = httpx.get(f"{server.url}{case.app.other_paths[0]}", timeout=10, trust_env=False)
        assert response.status_code == 200
        now = server.process_pids()
        if not case.restarts:
            assert set(before) <= set(now)
        for pid in now:
            assert psutil.Process(pid).status() not in (
                psutil.STATUS_STOPPED,
                psutil.STATUS_TRACING_STOP,
            )


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("needs_ptrace")
@pytest.mark.parametrize(
    ("server_name", "argv"),
    [("hypercorn", hypercorn()), ("uvicorn", uvicorn("--reload", "--loop", "asyncio"))],
    ids=["hypercorn-worker", "uvicorn-reload-child"],
)
def test_attach_to_the_child_that_serves_names_its_server_and_routes(
    server_name: str,
    argv: Argv,
    tmp_path: Path,
    examples_dir: Path,
    start_server: ServerStarter,
) -> None:
    # GIVEN a server whose app runs in a child multiprocessing spawned (hypercorn's worker,
    # uvicorn's reload child), and asgiprof attached to that child, not to its parent
    out, truth_file = tmp_path / "out", tmp_path / "truth.log"
    server = start_server(
        "blocking_sleep", argv, examples_dir, sys.executable, truth_env(truth_file)
    )
    (child,) = [
        p.pid
        for p in psutil.Process(server.pid).children()
        if "spawn_main" in " ".join(p.cmdline())
    ]
    # WHEN it profiles the child under load
    profiled = profile_under_load(
        ["attach", str(child), "--duration", DURATION_S],
        cwd=tmp_path,
        out=out,
        port=server.port,
        paths=[FASTAPI.blocking_path, "/healthy"],
        load_s=LOAD_S,
    )
    # THEN the child's command line (multiprocessing's) is looked through to its parent's:
    # the server is named and the route table read, so the culprit has its route
    data = profiled.summary
    assert (data["target"]["server"], data["target"]["pids"][0]) == (server_name, child)
    (line,) = planted_lines(examples_dir / "blocking_sleep.py")
    culprit = culprit_at(data, examples_dir / "blocking_sleep.py", line)
    assert culprit is not None and culprit["rank"] == 1, _explain(profiled)
    assert culprit["route"] == FASTAPI.route
    truth = planted_truth(out, truth_file, examples_dir / "blocking_sleep.py", line)
    assert truth.logged >= profiled.served(FASTAPI.blocking_path), truth
    _assert_blocked_like_truth(culprit["blocked_ms"], truth, profiled)
    assert data["event_loop"]["threads"] == [{"pid": child, "tid": child}]
    # ... and the server still serves from the same child
    response = httpx.get(f"{server.url}/healthy", timeout=10, trust_env=False)
    assert response.status_code == 200
    assert child in server.process_pids()


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        (LITESTAR, [("GET", "/users/{user_id}", "get_user"), ("GET", "/healthy", "healthy")]),
        (QUART, [("GET", "/users/{user_id}", "get_user"), ("GET", "/healthy", "healthy")]),
        (STARLETTE, [("GET", "/api/users/{user_id}", "get_user"), ("GET", "/healthy", "healthy")]),
    ],
    ids=["litestar", "quart", "starlette"],
)
def test_route_tables_of_other_frameworks(
    app: App, expected: list[tuple[str, str, str]], tmp_path: Path
) -> None:
    # GIVEN the framework's app, WHEN the probe reads its table in the target's interpreter
    path = write_app(app, tmp_path)
    table = read_route_table(f"{app.module}:app", python=sys.executable, cwd=str(tmp_path))
    # THEN its own routes are there with their templates and endpoint spans (Litestar's
    # generated OPTIONS handlers and its OpenAPI routes in litestar's own files aside)
    assert table.source == "app", table.error
    mine = [
        (r.method, r.path, r.endpoint)
        for r in table.routes
        if os.path.realpath(r.file) == os.path.realpath(path)
    ]
    assert sorted(mine) == sorted((m, p, f"{app.module}.{e}") for m, p, e in expected)
    (line,) = planted_lines(path)
    assert any(r.first_line < line <= r.last_line for r in table.routes if r.path == expected[0][1])
    assert not [r for r in table.routes if r.method == "OPTIONS"]


def _assert_blocked_like_truth(blocked_ms: float, truth: PlantedTruth, profiled: Profiled) -> None:
    assert abs(blocked_ms - truth.ms) <= truth.tolerance_ms(), (
        truth.describe(blocked_ms),
        _explain(profiled),
    )


def marked_lines(path: Path, mark: str) -> list[int]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [number for number, text in enumerate(lines, start=1) if mark in text]


def _analysis(out: Path) -> Analysis:
    return analyze(store.load_profile(out))


def _explain(profiled: Profiled) -> dict[str, Any]:
    data = profiled.summary
    return {
        "loads": profiled.loads,
        "event_loop": data["event_loop"],
        "culprits": [
            {k: c[k] for k in ("rank", "file", "line", "route", "blocked_ms", "episodes")}
            for c in data["culprits"]
        ],
        "notes": data.get("notes"),
    }
