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

from asgiprof.errors import (
    AppImportError,
    PtraceDeniedError,
    TargetExitedError,
    TargetNotFoundError,
    UsageError,
)
from asgiprof.record.command import parse_server_command, server_argv
from asgiprof.record.sampler import explain_ptrace_denied, kill_group, pdeathsig
from asgiprof.redact import redact_text
from asgiprof.text import terminal_safe


@dataclass(slots=True)
class Target:
    pid: int
    cmdline: tuple[str, ...]
    cwd: str
    exe: str
    environ: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None  # set when we launched it
    log_path: Path | None = None
    # The command line that names the server: `cmdline`, or for a worker or reload child
    # started by multiprocessing, its parent's (see command.server_argv). Empty: `cmdline`.
    server_cmdline: tuple[str, ...] = ()

    @property
    def server_argv(self) -> tuple[str, ...]:
        return self.server_cmdline or self.cmdline

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
    """The server's last output lines, secrets masked and control characters made visible
    (they are shown in an error message)."""
    try:
        text = path.read_bytes()[-8192:].decode("utf-8", "replace") if path else ""
    except OSError:
        return ""
    kept = [ln for ln in text.splitlines() if ln.strip()][-lines:]
    return "\n".join("    " + terminal_safe(redact_text(ln)) for ln in kept)


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
    try:
        _wait_listening(target, argv, log_path, ready_timeout_s)
    except BaseException:  # Ctrl-C while it starts included: never leave it running
        stop_launched(target, timeout_s=5.0)
        raise
    return target


def _wait_listening(
    target: Target, argv: Sequence[str], log_path: Path, ready_timeout_s: float
) -> None:
    proc = target.proc
    assert proc is not None
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        rc = proc.poll()
        if rc is not None:
            raise startup_failure(argv, rc, log_path)
        if _listening(proc.pid):
            try:
                target.exe = psutil.Process(proc.pid).exe()
            except psutil.Error:
                pass
            return
        time.sleep(0.05)
    raise TargetExitedError(
        f"the server did not listen on a TCP port within {ready_timeout_s:.0f} s; its last "
        f"output:\n{_tail(log_path) or '    (nothing)'}\ncheck that the command starts a "
        "server (with --host/--port) and that it does not hang while starting"
    )


# What servers print when the app spec does not import (uvicorn, gunicorn, hypercorn,
# granian, fastapi-cli all end up in one of these).
_IMPORT_FAILURES = (
    "Error loading ASGI app",
    "ModuleNotFoundError",
    "ImportError",
    "Could not import",
    "Failed to find attribute",
    "not found in module",
    "App failed to load",
    "No module named",
)


def startup_failure(argv: Sequence[str], status: int, log_path: Path | None) -> UsageError:
    """The error for a server command that exited before it served: an AppImportError when
    its output says the app did not import, with the server's last lines either way."""
    tail = _tail(log_path) or "    (it printed nothing)"
    if any(marker in tail for marker in _IMPORT_FAILURES):
        spec = parse_server_command(argv).app_spec
        return AppImportError(
            f"the server could not import the app{f' {spec}' if spec else ''} (exit status "
            f"{status}):\n{tail}\nrun asgiprof from the directory the app is imported from "
            "(or give the server --app-dir), and check the module:attribute name"
        )
    return TargetExitedError(
        f"the server command exited during startup with status {status}:\n"
        f"{tail}\nfix the command: it must start a server that runs until stopped"
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
        raise PtraceDeniedError(explain_ptrace_denied(pid)) from exc
    try:
        environ = dict(proc.environ())
    except psutil.Error:
        environ = {}
    server = tuple(server_argv(cmdline, _ancestor_cmdlines(proc)))
    return Target(pid, cmdline, cwd, exe, environ, server_cmdline=server)


def _ancestor_cmdlines(proc: psutil.Process, depth: int = 4) -> list[list[str]]:
    """Command lines of the nearest `depth` parents, nearest first (unreadable ones empty)."""
    cmdlines: list[list[str]] = []
    try:
        parents = proc.parents()[:depth]
    except psutil.Error:
        return cmdlines
    for parent in parents:
        try:
            cmdlines.append(parent.cmdline())
        except psutil.Error:
            cmdlines.append([])
    return cmdlines


# The signal that stops a server gracefully, when it is not SIGINT. gunicorn (27, with
# uvicorn's worker) hangs on SIGINT until its graceful timeout; SIGTERM stops it at once.
_GRACEFUL_STOP: dict[str, signal.Signals] = {"gunicorn": signal.SIGTERM}


def stop_launched(target: Target, timeout_s: float = 10.0) -> int | None:
    """SIGINT the launched server (graceful for uvicorn/hypercorn/granian; gunicorn gets
    SIGTERM), then SIGTERM, then SIGKILL its process group and any descendant that left it;
    returns the exit status. Each step waits at most `timeout_s` (SIGTERM: at most 5 s)."""
    proc = target.proc
    if proc is None:
        return None
    descendants = _descendants(proc.pid)  # listed now: orphans no longer descend from it
    graceful = _GRACEFUL_STOP.get(parse_server_command(target.server_argv).server, signal.SIGINT)
    if proc.poll() is None:
        for sig, wait_s in ((graceful, timeout_s), (signal.SIGTERM, min(timeout_s, 5.0))):
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
        kill_group(proc.pid)
        proc.wait(5.0)
    kill_group(proc.pid)  # workers that outlived their master
    _kill_all(descendants)
    return proc.returncode


def kill_launched(target: Target) -> None:
    """Abort: SIGKILL the launched server's process group and descendants, without waiting
    (safe in a signal handler; `stop_launched` afterwards reaps it)."""
    if target.proc is not None and target.proc.returncode is None:
        descendants = _descendants(target.proc.pid)
        kill_group(target.proc.pid)
        _kill_all(descendants)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def _kill_all(procs: list[psutil.Process]) -> None:
    for child in procs:
        try:
            if child.is_running():  # psutil checks the PID was not reused since
                child.kill()
        except psutil.Error:
            pass


def stopped_pids(pids: list[int]) -> set[int]:
    """The processes among `pids` in job-control stop (state T), e.g. by a SIGSTOP."""
    return {pid for pid in pids if _state(pid) == "T"}


def resume_if_stopped(pids: list[int], stopped_before: set[int]) -> list[int]:
    """After sampling: SIGCONT any of `pids` left stopped that was not stopped before it
    (a safety net: py-spy seizes threads with PTRACE_SEIZE, so it never stops them
    itself); returns the PIDs resumed."""
    resumed: list[int] = []
    for pid in stopped_pids(pids) - stopped_before:
        try:
            os.kill(pid, signal.SIGCONT)
            resumed.append(pid)
        except OSError:
            pass
    return resumed


def _state(pid: int) -> str:
    """The State letter of /proc/PID/status ("R", "S", "t" tracing stop, "T" stopped...)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("State:"):
                    return line.split()[1]
    except (OSError, IndexError):
        return ""
    return ""


# py-spy reads a thread's OS id without pausing the target only where CPython keeps it in
# the thread state (3.11+); on older targets `--nonblocking` yields pthread ids instead, so
# per-thread CPU (the kind of a culprit) and the loop thread's identity are lost.
NONBLOCKING_MIN_PYTHON = (3, 11)


def python_version(python: str, timeout_s: float = 10.0) -> tuple[int, int] | None:
    """(major, minor) of the interpreter `python`, or None when it cannot be run."""
    try:
        done = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        major, minor = (int(x) for x in done.stdout.split())
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return major, minor


def nonblocking_keeps_thread_ids(python: str) -> bool:
    """Whether py-spy --nonblocking still names threads by OS id in this interpreter (an
    interpreter that cannot be run is given the benefit of the doubt)."""
    version = python_version(python) if python else None
    return version is None or version >= NONBLOCKING_MIN_PYTHON


def runs_uvloop(pids: Sequence[int]) -> bool:
    """Whether any of the processes has uvloop's extension loaded (/proc/PID/maps).

    On a uvloop server py-spy `--nonblocking` reads most busy loop samples torn (57-67% of
    them on the busy test app with asyncpg, against 10-13% on asyncio): the analysis can
    place few of them, so routes read 50-100% short and stray lines gather episodes. Such
    a server is sampled `--blocking` (bench/README.md, "Sampling mode")."""
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
                if any("/uvloop/" in line for line in f):
                    return True
        except OSError:
            continue
    return False
