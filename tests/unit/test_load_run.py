"""`--load`: the server's address, placeholders, the load command check, wrk's summary and
load.json as the store writes and reads it."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from asgiprof import store
from asgiprof.analyze import analyze
from asgiprof.errors import CorruptProfileError, UsageError
from asgiprof.model import LoadInfo
from asgiprof.record.load_run import (
    check_command,
    command_line_ports,
    fill,
    requests_from_output,
    server_address,
)
from asgiprof.reporters.html import render_html
from tests.profile_builder import IDLE, Builder

WRK_OUTPUT = """Running 8s test @ http://127.0.0.1:32903
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   355.40ms  212.11ms   1.14s    72.82%
  182 requests in 8.03s, 26.64KB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:     22.68
"""


def test_placeholders_are_replaced_and_other_braces_kept() -> None:
    assert fill("wrk {url}/a?x={x} -H 'Host: {host}:{port}'", "127.0.0.1", 8000) == (
        "wrk http://127.0.0.1:8000/a?x={x} -H 'Host: 127.0.0.1:8000'"
    )
    assert fill("{url}", "::1", 9) == "http://[::1]:9"


def test_ports_named_on_the_command_line() -> None:
    argv = ["uvicorn", "app:app", "--port", "8001", "--host", "0.0.0.0"]
    assert command_line_ports(argv) == [8001]
    assert command_line_ports(["gunicorn", "-b", "127.0.0.1:9000", "app:app"]) == [9000]
    assert command_line_ports(["hypercorn", "--bind=0.0.0.0:7000", "app:app"]) == [7000]


def test_server_address_comes_from_the_listening_socket() -> None:
    # GIVEN a real process listening on a wildcard address (and a second port)
    code = (
        "import socket, sys, time\n"
        "a = socket.socket(); a.bind(('0.0.0.0', 0)); a.listen()\n"
        "b = socket.socket(); b.bind(('127.0.0.1', 0)); b.listen()\n"
        "print(a.getsockname()[1], b.getsockname()[1], flush=True); time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        wild, loop = (int(x) for x in proc.stdout.readline().split())
        # THEN the port the command names wins, and a wildcard becomes loopback
        assert server_address([proc.pid], ["srv", "--port", str(wild)]) == ("127.0.0.1", wild)
        assert server_address([proc.pid], ["srv", "--port", str(loop)]) == ("127.0.0.1", loop)
        assert server_address([proc.pid], ["srv"])[1] == min(wild, loop)
    finally:
        proc.kill()
        proc.wait(10)


def test_a_server_listening_nowhere_is_bad_input() -> None:
    with socket.socket():  # keep this process free of listening sockets of its own
        pass
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(UsageError, match="listens on no TCP port"):
            server_address([proc.pid], ["srv"])
    finally:
        proc.kill()
        proc.wait(10)


def test_load_command_not_found_is_bad_input() -> None:
    with pytest.raises(UsageError) as info:
        check_command("no-such-load-tool-3f9 -d 5 {url}")
    assert info.value.exit_code == 2
    assert info.value.message == (
        "load command not found: no-such-load-tool-3f9: install it or give its full path"
    )
    check_command("ASGIPROF_URL={url} timeout 20 env A=1 sh -c 'exit 0'")  # assignments, wrappers
    with pytest.raises(UsageError, match="quotes"):
        check_command("wrk 'unclosed")
    with pytest.raises(UsageError, match="empty"):
        check_command("A=1")


def test_wrk_summary_is_read() -> None:
    assert requests_from_output(WRK_OUTPUT) == (182, 9)
    assert requests_from_output("1 passed in 0.5s") == (None, None)


@pytest.mark.parametrize(
    ("stopped_by", "status", "failure"),
    [
        ("exit", 0, None),
        ("exit", 3, "the load command exited with status 3"),
        ("exit", -9, "the load command was killed by signal 9"),
        ("duration", None, None),
        ("interrupt", None, None),
        ("target-exit", None, "the server exited before the load command finished"),
    ],
)
def test_load_failure(stopped_by: str, status: int | None, failure: str | None) -> None:
    info = LoadInfo("wrk", "http://127.0.0.1:1", 0.0, 1.0, stopped_by, status)  # type: ignore[arg-type]
    assert info.failure == failure


def test_load_json_round_trips_and_damage_is_corrupt(tmp_path: Path) -> None:
    info = LoadInfo(
        "wrk -d1s http://127.0.0.1:1",
        "http://127.0.0.1:1",
        0.2,
        1.5,
        "exit",
        0,
        ("a", "b"),
        10,
        1,
        (("/a?x=1", 4), ("/b", 6)),
    )
    store.write_load(tmp_path, info)
    assert store.load_load(tmp_path) == info
    (tmp_path / store.LOAD).write_text('{"command": "x"}')
    with pytest.raises(CorruptProfileError, match="load.json is damaged"):
        store.load_load(tmp_path)


def test_the_report_header_shows_the_load_escaped() -> None:
    b = Builder()
    b.add(1, IDLE, 20)
    profile = b.build()
    profile.load = LoadInfo(
        "wrk <img src=x onerror=alert(1)> http://127.0.0.1:1", "http://127.0.0.1:1",
        0.0, 1.0, "exit", 2, (), 10, 0,
    )  # fmt: skip
    page = render_html(analyze(profile))
    assert "<img src=x" not in page
    assert (
        "load <code>wrk &lt;img src=x onerror=alert(1)&gt; http://127.0.0.1:1</code>: "
        "<strong>the load command exited with status 2</strong>, 10 requests"
    ) in page
