"""What the server-matrix tests profile: ASGI servers, frameworks and target Pythons.

- `target_python(minor)`: a virtualenv of pyenv's CPython `minor` with FastAPI, uvicorn and
  uvloop from PyPI, created once (under a file lock, ready once its marker file is written)
  in `~/.cache/asgiprof-test-venvs` or `$ASGIPROF_TEST_VENVS`. `python -m tests.targets 3.9
  3.10 3.12 3.13` creates them ahead of the tests (see .ci/run).
- STARLETTE, LITESTAR, QUART, DJANGO, THREADS: small apps with one planted blocking line
  (`# planted:`) in an `async def` route.
- `CommandServer`: any server command line, started, waited for and stopped by PID.
- `profile_under_load`: `python -m asgiprof run|attach` as a user runs it, with load on
  127.0.0.1 that starts once py-spy runs and ends, checked, before sampling ends.
"""

from __future__ import annotations

import argparse
import fcntl
import glob
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil

from asgiprof.record.loadgen import LoadResult, LoadThread, start_load_thread
from tests.profiling import Finished, finish, start_asgiprof
from tests.servers import HOST, ServerProcess

# --- target Pythons -------------------------------------------------------------------------

TARGET_REQUIREMENTS = ("fastapi", "uvicorn", "uvloop")
VENVS_ENV = "ASGIPROF_TEST_VENVS"
_LOCK_TIMEOUT_S = 900.0
_PIP_TIMEOUT_S = 600.0
_READY = ".asgiprof-ready"  # written last: a venv without it is half-built


class TargetPythonError(RuntimeError):
    """A target virtualenv could not be created; the message holds pip's last lines."""


def venvs_root() -> Path:
    return Path(os.environ.get(VENVS_ENV) or Path.home() / ".cache" / "asgiprof-test-venvs")


def pyenv_root() -> Path | None:
    pyenv = shutil.which("pyenv")
    if pyenv is not None:
        try:
            proc = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            proc = None
        if proc is not None and proc.returncode == 0 and proc.stdout.strip():
            return Path(proc.stdout.strip())
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    return root if root.is_dir() else None


def pyenv_python(minor: str) -> Path | None:
    """pyenv's newest CPython `minor` (e.g. "3.9" -> .../versions/3.9.18/bin/python3.9)."""
    root = pyenv_root()
    if root is None:
        return None
    pattern = str(root / "versions" / f"{minor}.*" / "bin" / f"python{minor}")
    found = [p for p in glob.glob(pattern) if Path(p).parent.parent.name.count(".") == 2]
    found.sort(key=lambda p: [int(x) for x in Path(p).parent.parent.name.split(".")])
    return Path(found[-1]) if found else None


def target_python(minor: str) -> Path | None:
    """The python of a venv of CPython `minor` with TARGET_REQUIREMENTS; None without pyenv's
    interpreter. Creates the venv when missing; raises TargetPythonError if that fails."""
    base = pyenv_python(minor)
    if base is None:
        return None
    version = base.parent.parent.name  # "3.9.18"
    digest = hashlib.sha256(" ".join(TARGET_REQUIREMENTS).encode()).hexdigest()[:8]
    root = venvs_root()
    venv = root / f"cpython-{version}-{digest}"
    ready = venv / _READY
    if not ready.is_file():
        root.mkdir(parents=True, exist_ok=True)
        with _locked(root / f"{venv.name}.lock"):
            if not ready.is_file():  # another test session may have built it meanwhile
                _build_venv(base, venv)
                ready.write_text(" ".join(TARGET_REQUIREMENTS) + "\n", encoding="utf-8")
    return venv / "bin" / "python"


class _locked:
    """An exclusive flock on `path`, waited for at most _LOCK_TIMEOUT_S."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1

    def __enter__(self) -> None:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + _LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self._fd)
                    raise TargetPythonError(f"{self.path} stayed locked") from None
                time.sleep(0.2)

    def __exit__(self, *exc_info: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


def _build_venv(base: Path, venv: Path) -> None:
    """A fresh venv at `venv` (a half-built one from a killed run is removed first)."""
    shutil.rmtree(venv, ignore_errors=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    for argv in (
        [str(base), "-m", "venv", str(venv)],
        [*pip, "--disable-pip-version-check", *TARGET_REQUIREMENTS],
    ):
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise TargetPythonError(f"{' '.join(argv)} took over {_PIP_TIMEOUT_S} s") from None
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
            raise TargetPythonError(f"{' '.join(argv)} failed:\n{tail}")


# --- apps -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class App:
    module: str
    source: str
    blocking_path: str  # GET it to run the planted line once
    route: str  # the route asgiprof must name
    other_paths: tuple[str, ...] = ("/healthy",)


STARLETTE = App(
    "starlette_app",
    '''
    """Starlette: the blocking route sits in a Mount."""
    import asyncio
    import time

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route


    async def get_user(request):
        time.sleep(0.1)  # planted: sync sleep on the event loop
        return JSONResponse({"id": request.path_params["user_id"]})


    async def healthy(request):
        await asyncio.sleep(0.1)
        return JSONResponse({"status": "ok"})


    app = Starlette(
        routes=[
            Mount("/api", routes=[Route("/users/{user_id:int}", get_user)]),
            Route("/healthy", healthy),
        ]
    )
    ''',
    "/api/users/1",
    "GET /api/users/{user_id}",
)

LITESTAR = App(
    "litestar_app",
    '''
    """Litestar: route handlers, one under a Router prefix."""
    from __future__ import annotations

    import asyncio
    import time

    from litestar import Litestar, Router, get


    @get("/{user_id:int}")
    async def get_user(user_id: int) -> dict[str, int]:
        time.sleep(0.1)  # planted: sync sleep on the event loop
        return {"id": user_id}


    @get("/healthy")
    async def healthy() -> dict[str, str]:
        await asyncio.sleep(0.1)
        return {"status": "ok"}


    app = Litestar([Router("/users", route_handlers=[get_user]), healthy])
    ''',
    "/users/1",
    "GET /users/{user_id}",
)

QUART = App(
    "quart_app",
    '''
    """Quart: werkzeug rules, one in a blueprint."""
    import asyncio
    import time

    from quart import Blueprint, Quart

    app = Quart(__name__)
    users = Blueprint("users", __name__, url_prefix="/users")


    @users.get("/<int:user_id>")
    async def get_user(user_id):
        time.sleep(0.1)  # planted: sync sleep on the event loop
        return {"id": user_id}


    @app.get("/healthy")
    async def healthy():
        await asyncio.sleep(0.1)
        return {"status": "ok"}


    app.register_blueprint(users)
    ''',
    "/users/1",
    "GET /users/{user_id}",
)

DJANGO = App(
    "django_app",
    '''
    """Django: async views under Django's ASGI handler and its middleware, one in an include()."""
    import asyncio
    import time

    import django
    from django.conf import settings

    settings.configure(
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        SECRET_KEY="not-a-secret-" * 4,
        MIDDLEWARE=[
            "django.middleware.security.SecurityMiddleware",
            "django.middleware.common.CommonMiddleware",
        ],
    )
    django.setup()

    from django.core.asgi import get_asgi_application
    from django.http import JsonResponse
    from django.urls import include, path


    async def get_user(request, user_id):
        time.sleep(0.1)  # planted: sync sleep on the event loop
        return JsonResponse({"id": user_id})


    async def healthy(request):
        await asyncio.sleep(0.1)
        return JsonResponse({"status": "ok"})


    urlpatterns = [
        path("users/", include([path("<int:user_id>", get_user)])),
        path("healthy", healthy),
    ]

    app = get_asgi_application()
    ''',
    "/users/1",
    "ANY /users/{user_id}",
)

THREADS = App(
    "threads_app",
    '''
    """FastAPI app with loops and work of its own in threads: only the server's loop counts.

    A background asyncio loop blocks itself for 30 ms at a time (never the server's loop),
    a loop waits in run_forever, and a plain thread ticks.
    """
    import asyncio
    import threading
    import time

    from fastapi import FastAPI

    app = FastAPI()


    async def poll() -> None:
        while True:
            time.sleep(0.03)  # background: blocks the poller's own loop only
            await asyncio.sleep(0.02)


    def tick() -> None:
        while True:
            time.sleep(0.01)


    idle_loop = asyncio.new_event_loop()
    threading.Thread(target=asyncio.run, args=(poll(),), name="poller", daemon=True).start()
    threading.Thread(target=idle_loop.run_forever, name="idle-loop", daemon=True).start()
    threading.Thread(target=tick, name="ticker", daemon=True).start()


    @app.get("/users/{user_id}")
    async def get_user(user_id: int) -> dict[str, int]:
        time.sleep(0.1)  # planted: sync sleep on the event loop
        return {"id": user_id}


    @app.get("/healthy")
    async def healthy() -> dict[str, str]:
        await asyncio.sleep(0.1)
        return {"status": "ok"}
    ''',
    "/users/1",
    "GET /users/{user_id}",
)


def write_app(app: App, folder: Path) -> Path:
    path = folder / f"{app.module}.py"
    path.write_text(textwrap.dedent(app.source).lstrip("\n"), encoding="utf-8")
    return path


# --- servers ----------------------------------------------------------------------------------

ServerArgv = Callable[[int], list[str]]  # port -> the server command line


class CommandServer(ServerProcess):
    """A server from any command line (gunicorn, hypercorn, granian, another Python).

    `stop_signal` goes first when stopping: gunicorn stops gracefully on SIGTERM (on SIGINT
    it waits out its graceful timeout); `stop()` then goes on as ServerProcess does.
    """

    def __init__(
        self,
        name: str,
        argv: ServerArgv,
        *,
        stop_signal: signal.Signals = signal.SIGINT,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, **kwargs)
        self._argv = argv
        self.stop_signal = stop_signal

    def stop(self) -> int | None:
        proc = self._proc
        if proc is not None and proc.poll() is None and self.stop_signal != signal.SIGINT:
            proc.send_signal(self.stop_signal)
            try:
                proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                pass  # ServerProcess.stop kills it and its workers by PID
        return super().stop()

    @property
    def command(self) -> list[str]:
        return self._argv(self.port)

    def process_pids(self) -> list[int]:
        try:
            root = psutil.Process(self.pid)
            return [self.pid, *(c.pid for c in root.children(recursive=True))]
        except psutil.Error:
            return []


# --- profiling under load -----------------------------------------------------------------------

PYSPY_SETTLE_S = 0.5  # py-spy reads the targets' memory maps before its first sample
WAVE_GAP_S = 0.15  # longer than one planted block


@dataclass(frozen=True, slots=True)
class Profiled:
    done: Finished
    loads: tuple[LoadResult, ...]  # one per wave of clients
    summary: dict[str, Any]
    meta: dict[str, Any]

    def served(self, path: str) -> int:
        """Requests to `path` answered below 400, over every wave."""
        return sum(load.for_path(path).ok for load in self.loads)


def _pyspy_of(proc_pid: int) -> psutil.Process | None:
    try:
        children = psutil.Process(proc_pid).children(recursive=True)
    except psutil.Error:
        return None
    for child in children:
        try:
            if os.path.basename(child.cmdline()[0]) == "py-spy":
                return child
        except (psutil.Error, IndexError):
            continue
    return None


def wait_for_pyspy(proc: subprocess.Popen[str], timeout_s: float) -> None:
    """Until asgiprof's first py-spy has run PYSPY_SETTLE_S; fails if asgiprof exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate(timeout=10)
            raise AssertionError(f"asgiprof exited with {proc.returncode}:\n{out}\n{err}")
        pyspy = _pyspy_of(proc.pid)
        if pyspy is not None:
            try:
                started = pyspy.create_time()
            except psutil.Error:
                continue
            time.sleep(max(0.0, started + PYSPY_SETTLE_S - time.time()))
            return
        time.sleep(0.05)
    raise AssertionError(f"asgiprof started no py-spy within {timeout_s} s")


# Sampled after the load: the idle loop the tests expect to see.
IDLE_TAIL_S = 1.5


def profile_under_load(
    args: Sequence[str],
    *,
    cwd: Path,
    out: Path,
    port: int,
    paths: Sequence[str],
    load_s: float = 3.0,
    concurrency: int = 8,
    waves: int = 2,
    start_timeout_s: float = 60.0,
    env: dict[str, str] | None = None,
) -> Profiled:
    """`python -m asgiprof ARGS --out OUT`, with `load_s` of GET load on 127.0.0.1:PORT
    once py-spy runs, then Ctrl-C (SIGINT) IDLE_TAIL_S after the load's last request ended:
    ARGS' `--duration` is only an upper bound, so a machine too slow to drain the load in
    time (workers restarting beside a CPU hog) still has every request sampled.
    `env` is added to asgiprof's environment (and so to a server it launches).

    The clients connect in `waves` WAVE_GAP_S apart: a worker that accepted the first
    wave's keep-alive connections is blocked in their first request when the next wave
    connects, so another worker accepts those and every worker gets load.
    """
    proc = start_asgiprof(*args[:1], "--out", str(out), *args[1:], cwd=cwd, env=env)
    threads: list[LoadThread] = []
    try:
        wait_for_pyspy(proc, start_timeout_s)
        deadline = time.monotonic() + load_s
        for wave in range(waves):
            if wave:
                time.sleep(WAVE_GAP_S)
            threads.append(
                start_load_thread(
                    f"http://{HOST}:{port}",
                    paths,
                    duration_s=max(deadline - time.monotonic(), 0.1),
                    concurrency=max(concurrency // waves, 1),
                )
            )
        for thread in threads:
            assert thread.join(load_s + 30.0), "the load did not end"
        ended_at = time.time()
        if proc.poll() is None:
            time.sleep(IDLE_TAIL_S)
            proc.send_signal(signal.SIGINT)
        done = finish(proc, 120.0)
    finally:
        for thread in threads:
            thread.stop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    meta = orjson.loads((out / "meta.json").read_bytes())
    sampling_ended = meta["sampling"]["started_at"] + meta["sampling"]["duration_s"]
    # Truth is what the load driver counted: every request must have run while sampled.
    assert ended_at < sampling_ended, "the load outlasted sampling: raise --duration"
    summary = orjson.loads((out / "summary.json").read_bytes())
    return Profiled(done, tuple(t.result for t in threads), summary, meta)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description="Create the target Python venvs of the tests.")
    parser.add_argument("minor", nargs="+", help="CPython versions, e.g. 3.9 3.10 3.12 3.13")
    args = parser.parse_args(argv)
    status = 0
    for minor in args.minor:
        started = time.monotonic()
        try:
            python = target_python(minor)
        except TargetPythonError as exc:
            print(f"{minor}: {exc}", file=sys.stderr)
            status = 1
            continue
        took = time.monotonic() - started
        print(f"{minor}: {python or 'no pyenv interpreter'} ({took:.1f} s)")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
