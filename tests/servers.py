"""Real uvicorn servers on 127.0.0.1 for tests: start, wait until they serve, stop by PID.

`ServerProcess` is a context manager; readiness is polled with a deadline (never a fixed
sleep) and the server's stdout and stderr go to a log file that failures can print.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol

import httpx
import psutil

from asgiprof.record.loadgen import free_port
from asgiprof.record.sampler import pdeathsig

HOST = "127.0.0.1"
# Marks the lines in examples/ that block the event loop: tests look them up by this text.
PLANTED_MARK = "# planted:"
_PORT_ATTEMPTS = 3


def load_paths(examples_dir: Path, module: str) -> tuple[str, ...]:
    """The example's LOAD_PATHS, read without importing the app into the test process."""
    tree = ast.parse((examples_dir / f"{module}.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "LOAD_PATHS" for target in node.targets
        ):
            paths = ast.literal_eval(node.value)
            assert isinstance(paths, tuple)
            assert all(isinstance(path, str) for path in paths)
            return paths
    raise AssertionError(f"{module}.py defines no LOAD_PATHS")


def planted_lines(path: Path) -> list[int]:
    """1-based numbers of the lines marked as planted blocking calls in an example."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [number for number, line in enumerate(lines, start=1) if PLANTED_MARK in line]


class ServerStartError(RuntimeError):
    """The server exited or did not serve within the start timeout; carries its log."""


def _process_tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _listens_on(pid: int, port: int) -> bool:
    """True when `pid` or a descendant holds the listening socket on `port`.

    Owning the socket, not just answering on the port, tells our server apart from another
    process that grabbed the same port between `free_port()` and uvicorn's bind.
    """
    for proc in _process_tree(pid):
        try:
            connections = proc.net_connections(kind="tcp")
        except psutil.Error:
            continue
        for conn in connections:
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                return True
    return False


def _is_running(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running()) and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _kill_and_wait(procs: Sequence[psutil.Process], timeout_s: float) -> None:
    """SIGKILL each process still running (psutil checks the PID was not reused), then
    wait until all are gone or zombies (reaping orphans is their new parent's job)."""
    for proc in procs:
        if _is_running(proc):
            try:
                proc.kill()
            except psutil.Error:
                pass
    deadline = time.monotonic() + timeout_s
    while any(_is_running(proc) for proc in procs) and time.monotonic() < deadline:
        time.sleep(0.02)


class ServerProcess:
    """`python -m uvicorn MODULE:APP --host 127.0.0.1 --port PORT --loop LOOP` in a new session.

    Start it with `start()` or `with`; leaving the block stops it (SIGINT so the lifespan
    shutdown runs, SIGKILL after `stop_timeout_s`) and reaps it and its workers by PID.
    """

    def __init__(
        self,
        module: str,
        *,
        cwd: Path,
        log_dir: Path,
        app: str = "app",
        port: int | None = None,
        loop: str = "asyncio",
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        ready_path: str | None = "/",
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.module = module
        self.app = app
        self.cwd = cwd
        self._port_chosen_here = port is None
        self.port = port if port is not None else free_port()
        self.loop = loop
        self.extra_args = tuple(extra_args)
        self.env = dict(env or {})
        self.ready_path = ready_path
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._log_dir = log_dir
        self.log_path = log_dir / f"server-{module}-{self.port}.log"
        self.returncode: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            f"{self.module}:{self.app}",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--loop",
            self.loop,
            *self.extra_args,
        ]

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError(f"server {self.module} was not started")
        return self._proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> ServerProcess:
        """Launch and wait until it serves; retries on a fresh port if ours was taken."""
        if self._proc is not None:
            raise RuntimeError(f"server {self.module} already started")
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            self._launch()
            try:
                self._wait_until_serving()
            except ServerStartError:
                self.stop()
                # Another process may bind the port between free_port() and uvicorn's bind.
                taken = "address already in use" in self.log_text().lower()
                if not (self._port_chosen_here and taken and attempt < _PORT_ATTEMPTS):
                    raise
                self._proc = None
                self.port = free_port()
                self.log_path = self._log_dir / f"server-{self.module}-{self.port}.log"
            except BaseException:
                self.stop()
                raise
            else:
                return self
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _launch(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C in pytest's terminal does not reach the server before
                # our teardown decides the order. pdeathsig ends the server if the thread
                # that started it dies (pytest killed): start servers from the main thread.
                start_new_session=True,
                preexec_fn=pdeathsig(signal.SIGTERM),
            )

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        listening = False
        while time.monotonic() < deadline:
            # Waiting on the process doubles as the poll interval and notices an early exit.
            try:
                returncode = self.proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
            else:
                raise ServerStartError(
                    f"{' '.join(self.command)} exited with status {returncode} during "
                    f"startup; its output:\n{self.log_text()}"
                )
            listening = listening or _listens_on(self.pid, self.port)
            if listening and (self.ready_path is None or self._answers(deadline)):
                return
        raise ServerStartError(
            f"{' '.join(self.command)} did not serve on {self.url} within "
            f"{self.start_timeout_s} s; its output:\n{self.log_text()}"
        )

    def _answers(self, deadline: float) -> bool:
        """Any HTTP response (a 404 too) means the app serves requests."""
        assert self.ready_path is not None
        timeout_s = max(0.1, min(2.0, deadline - time.monotonic()))
        try:
            httpx.get(self.url + self.ready_path, timeout=timeout_s, trust_env=False)
        except httpx.HTTPError:
            return False
        return True

    def stop(self) -> int | None:
        """SIGINT, wait, then SIGKILL by PID (workers first, then the server); reap it.

        Returns the exit status, or None if the server was never started.
        """
        if self._proc is None:
            return None
        proc = self._proc
        if proc.poll() is None:
            # Workers (--workers, --reload) are listed now: once the server is gone they are
            # no longer its descendants and could not be found.
            descendants = _process_tree(proc.pid)[1:]
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                # Workers before the server: killed after it, they would be orphans.
                _kill_and_wait(descendants, self.stop_timeout_s)
                proc.kill()
                proc.wait(timeout=self.stop_timeout_s)
            _kill_and_wait(descendants, self.stop_timeout_s)  # any the server left running
        self.returncode = proc.returncode
        return self.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ServerFactory(Protocol):
    """What the `server_factory` fixture yields: starts (unless `start=False`) and tracks."""

    def __call__(
        self,
        module: str,
        *,
        cwd: Path | None = None,
        start: bool = True,
        app: str = "app",
        port: int | None = None,
        loop: str = "asyncio",
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        ready_path: str | None = "/",
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
    ) -> ServerProcess: ...
