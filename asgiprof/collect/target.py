"""Launch a server command (run) or find a running server (attach), and stop what we started.

A launched server gets its own session, so the terminal's Ctrl-C reaches asgiprof only and
asgiprof decides the order: stop py-spy (it writes its chunk), then stop the server
gracefully. If asgiprof itself dies, the kernel sends the server SIGTERM (pdeathsig).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from asgiprof.collect.sampler import pdeathsig
from asgiprof.errors import (
    PTRACE_HELP,
    PtraceDeniedError,
    TargetExitedError,
    TargetNotFoundError,
    UsageError,
)


@dataclass(slots=True)
class Target:
    pid: int
    cmdline: tuple[str, ...]
    cwd: str
    exe: str
    environ: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None  # set when we launched it
    log_path: Path | None = None

    @property
    def launched(self) -> bool:
        return self.proc is not None

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        try:
            return bool(psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return False

    def exit_status(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def pids(self) -> list[int]:
        """The server and its live descendants (workers, reload children)."""
        try:
            root = psutil.Process(self.pid)
            return [self.pid, *(c.pid for c in root.children(recursive=True))]
        except psutil.Error:
            return []


def _listening(pid: int) -> bool:
    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.Error:
        return False
    for p in procs:
        try:
            if any(c.status == psutil.CONN_LISTEN for c in p.net_connections(kind="inet")):
                return True
        except psutil.Error:
            continue
    return False


def _tail(path: Path | None, lines: int = 6) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_bytes()[-8192:].decode("utf-8", "replace")
    kept = [ln for ln in text.splitlines() if ln.strip()][-lines:]
    return "\n".join("    " + ln for ln in kept)


def launch(
    argv: Sequence[str],
    *,
    log_path: Path,
    ready_timeout_s: float = 30.0,
    cwd: Path | None = None,
) -> Target:
    """Start the server command and wait until it listens on a socket."""
    if not argv:
        raise UsageError("no server command given: asgiprof run -- uvicorn app:app")
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    log = log_path.open("wb")
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=pdeathsig(signal.SIGTERM),
        )
    except FileNotFoundError as exc:
        raise UsageError(f"command not found: {argv[0]}: check the server command") from exc
    except PermissionError as exc:
        raise UsageError(f"cannot execute {argv[0]}: permission denied") from exc
    finally:
        log.close()
    workdir = str(Path(cwd).resolve()) if cwd is not None else os.getcwd()
    target = Target(proc.pid, tuple(argv), workdir, "", env, proc, log_path)
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        rc = proc.poll()
        if rc is not None:
            tail = _tail(log_path) or "    (it printed nothing)"
            raise TargetExitedError(
                f"the server command exited during startup with status {rc}:\n"
                f"{tail}\nfix the command: it must start a server that runs until stopped"
            )
        if _listening(proc.pid):
            try:
                target.exe = psutil.Process(proc.pid).exe()
            except psutil.Error:
                pass
            return target
        time.sleep(0.05)
    stop_launched(target)
    raise TargetExitedError(
        f"the server did not start listening within {ready_timeout_s:.0f} s:\n"
        f"{_tail(log_path)}\n(raise --ready-timeout if it is slow to start)"
    )


def attach(pid: int) -> Target:
    """Describe a running process by PID (py-spy later checks that it is Python)."""
    if pid <= 0:
        raise UsageError(f"invalid PID {pid}")
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            cmdline = tuple(proc.cmdline())
            cwd = proc.cwd()
            exe = proc.exe()
    except psutil.NoSuchProcess as exc:
        raise TargetNotFoundError(f"no process with PID {pid}: check the PID (ps aux)") from exc
    except psutil.AccessDenied as exc:
        raise PtraceDeniedError(
            f"cannot inspect process {pid}: permission denied. {PTRACE_HELP}"
        ) from exc
    try:
        environ = dict(proc.environ())
    except psutil.Error:
        environ = {}
    return Target(pid, cmdline, cwd, exe, environ)


def stop_launched(target: Target, timeout_s: float = 10.0) -> int | None:
    """SIGINT the launched server (graceful for uvicorn/gunicorn/hypercorn), then SIGTERM,
    then SIGKILL the whole process group; returns the exit status."""
    proc = target.proc
    if proc is None:
        return None
    if proc.poll() is None:
        for sig, wait_s in ((signal.SIGINT, timeout_s), (signal.SIGTERM, 5.0)):
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
    if proc.poll() is None:
        _kill_group(proc.pid)
        proc.wait(5.0)
    _kill_group(proc.pid)  # workers that outlived their master
    return proc.returncode


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
