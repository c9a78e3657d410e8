"""Issue 16: the live view, as a user sees it in a terminal (a real pseudo-terminal).

`python -m asgiprof attach PID` runs with its stdout and stderr on a pty against a real
uvicorn server under load; the test reads what the terminal received and checks that the
panel showed the loop, the blocking line and its route, coverage, and that it refreshed
as chunks came in.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asgiprof.record.loadgen import start_load_thread
from tests.servers import ServerFactory

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("needs_ptrace")]

_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def run_in_pty(args: list[str], cwd: Path, timeout_s: float) -> tuple[int, str]:
    """Run `python -m asgiprof ARGS` on a pseudo-terminal; (exit status, what it showed,
    escape sequences removed)."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "asgiprof", *args],
        cwd=cwd,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    shown = bytearray()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the other side closed: the process ended
                    break
                if not chunk:
                    break
                shown += chunk
            elif proc.poll() is not None:
                break
        status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)
    return status, _ANSI.sub(b"", bytes(shown)).decode("utf-8", "replace")


@pytest.mark.timeout(120)
def test_the_live_view_shows_the_loop_the_blocking_line_and_refreshes_per_chunk(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    # GIVEN a server whose /users/{id} blocks the loop, under load
    server = server_factory("blocking_sleep")
    load = start_load_thread(server.url, ["/users/1", "/healthy"], duration_s=60, concurrency=4)
    try:
        # WHEN asgiprof attaches in a terminal for 8 s (4 chunks)
        status, shown = run_in_pty(
            ["attach", str(server.pid), "--duration", "8", "--out", str(tmp_path / "out")],
            cwd=tmp_path,
            timeout_s=90,
        )
    finally:
        load.stop()
        load.join(15)
    assert status == 0, shown[-3000:]
    # THEN the panel was shown, with the loop's state, the line and route that block it,
    # and how well py-spy sampled
    assert "asgiprof live" in shown, shown[-3000:]
    for words in ("loop busy", "blocked", "threadpool", "coverage", "Hz"):
        assert words in shown, words
    assert re.search(r"blocking_sleep\.py:29 get_user\s+GET /users/\{user_id\}", shown), shown[
        -3000:
    ]
    assert "GET /users/{user_id}" in shown
    # ... refreshed as chunks came in: it counted 1, 2, 3 chunks, each in its own frame
    counts = {int(n) for n in re.findall(r"(\d+) chunks, ", shown)}
    assert {1, 2, 3} <= counts, sorted(counts)
    # and the sparklines grew by one bar per chunk
    bars = [len(m) for m in re.findall(r"loop busy\s+\S+\s+([▁▂▃▄▅▆▇█]+)", shown)]
    assert bars and max(bars) >= 3, bars


@pytest.mark.timeout(120)
def test_no_live_keeps_one_progress_line(tmp_path: Path, server_factory: ServerFactory) -> None:
    server = server_factory("blocking_sleep")
    status, shown = run_in_pty(
        ["attach", str(server.pid), "--duration", "3", "--no-live", "--out", str(tmp_path / "o")],
        cwd=tmp_path,
        timeout_s=90,
    )
    assert status == 0, shown[-3000:]
    assert "asgiprof live" not in shown
    assert re.search(r"sampling PID \d+: +\d+\.\d s, .*chunks, .* s sampled", shown), shown[-2000:]
