"""record/target.py on real processes: launch waits for a listening socket, a command that
dies or is missing is one clear error, stopping takes the whole process tree, attach
describes a live PID, and a stopped process is resumed only when we left it stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from asgiprof.errors import AppImportError, TargetExitedError, TargetNotFoundError, UsageError
from asgiprof.record.loadgen import free_port
from asgiprof.record.target import (
    attach,
    launch,
    nonblocking_keeps_thread_ids,
    python_version,
    resume_if_stopped,
    runs_uvloop,
    stop_launched,
    stopped_pids,
)
from tests.targets import pyenv_python

# A server with a worker child: listens on PORT, starts `sleep`, runs until stopped.
SERVER = """
import socket, subprocess, sys, time
worker = subprocess.Popen(["sleep", "60"])
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
print("listening", flush=True)
time.sleep(60)
"""


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "30"])
    yield proc
    proc.kill()
    proc.wait(5)


def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_launch_waits_for_the_socket_and_stop_takes_the_tree(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    target = launch([sys.executable, "-c", SERVER, str(free_port())], log_path=log)
    try:
        assert target.launched and target.alive()
        pids = target.pids()
        assert len(pids) == 2 and pids[0] == target.pid  # the server and its worker
        assert b"listening" in log.read_bytes()
    finally:
        status = stop_launched(target, timeout_s=5.0)
    assert status is not None and not target.alive()
    assert wait_for(lambda: not any(psutil.pid_exists(p) for p in pids[1:]))


def test_a_command_that_exits_while_starting_shows_its_output(tmp_path: Path) -> None:
    code = "print('bad config: token=hunter2', flush=True); raise SystemExit(3)"
    with pytest.raises(TargetExitedError) as failed:
        launch([sys.executable, "-c", code], log_path=tmp_path / "server.log")
    assert "exited during startup with status 3" in failed.value.message
    assert "bad config: token=***" in failed.value.message  # secrets masked
    assert failed.value.exit_code == 2


def test_an_app_that_does_not_import_says_so(tmp_path: Path) -> None:
    code = "import no_such_module_here"
    with pytest.raises(AppImportError) as failed:
        launch([sys.executable, "-c", code], log_path=tmp_path / "server.log")
    assert "could not import the app" in failed.value.message


def test_a_missing_command_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="command not found: no-such-server-xyz"):
        launch(["no-such-server-xyz"], log_path=tmp_path / "server.log")


def test_attach_describes_a_live_process(sleeper: subprocess.Popen[bytes]) -> None:
    target = attach(sleeper.pid)
    assert (target.pid, target.cmdline, target.launched) == (sleeper.pid, ("sleep", "30"), False)
    assert target.cwd == os.getcwd() and target.alive()
    sleeper.kill()
    sleeper.wait(5)
    assert not target.alive()
    with pytest.raises(TargetNotFoundError, match=f"no process with PID {sleeper.pid}"):
        attach(sleeper.pid)
    with pytest.raises(UsageError, match="invalid PID -1"):
        attach(-1)


def test_only_a_process_we_left_stopped_is_resumed(sleeper: subprocess.Popen[bytes]) -> None:
    pid = sleeper.pid
    assert stopped_pids([pid]) == set()
    os.kill(pid, signal.SIGSTOP)
    assert wait_for(lambda: stopped_pids([pid]) == {pid})
    # stopped before sampling began: the user's choice, left alone
    assert resume_if_stopped([pid], stopped_before={pid}) == []
    assert stopped_pids([pid]) == {pid}
    # stopped during sampling: resumed
    assert resume_if_stopped([pid], stopped_before=set()) == [pid]
    assert wait_for(lambda: stopped_pids([pid]) == set())


def test_nonblocking_sampling_is_kept_only_where_py_spy_still_reads_os_thread_ids() -> None:
    # py-spy --nonblocking names threads by pthread id on CPython < 3.11 (the server matrix
    # saw it: the loop thread no longer matched the pid), so those targets are paused.
    here = sys.version_info[:2]
    assert python_version(sys.executable) == here
    assert nonblocking_keeps_thread_ids(sys.executable) is (here >= (3, 11))
    old = pyenv_python("3.9")
    assert old is not None, "the tests need pyenv's CPython 3.9 (scripts/setup.sh)"
    assert python_version(str(old)) == (3, 9)
    assert nonblocking_keeps_thread_ids(str(old)) is False
    # An interpreter that cannot be run keeps the user's choice.
    assert python_version("/nonexistent/python") is None
    assert nonblocking_keeps_thread_ids("/nonexistent/python") is True


@pytest.mark.parametrize("imports", ["uvloop", "asyncio"])
def test_a_process_with_uvloop_loaded_is_told_apart(imports: str) -> None:
    # GIVEN a Python that imported uvloop (or only asyncio) and says so, then waits
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import {imports}, sys, time; print(1, flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"1"
        # THEN its memory maps say whether uvloop's extension is loaded
        assert runs_uvloop([proc.pid]) is (imports == "uvloop")
        assert runs_uvloop([proc.pid, 999_999_999]) is (imports == "uvloop")
    finally:
        proc.kill()
        proc.wait(5)
