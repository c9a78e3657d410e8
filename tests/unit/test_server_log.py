"""The attached server's access log (record/server_log.py): only what is logged while
sampling, only request lines, without query strings; never a pipe or a terminal."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from asgiprof.errors import UsageError
from asgiprof.record.server_log import LogTail

BEFORE = b'INFO:     127.0.0.1:5000 - "GET /old HTTP/1.1" 200 OK\n'
DURING = (
    b"INFO:     Application startup complete.\n"
    b'INFO:     127.0.0.1:5001 - "GET /users/7?token=s3cr3t HTTP/1.1" 200 OK\n'
    b'127.0.0.1 - - [07/Dec/2026:01:02:03 +0000] "POST /orders HTTP/1.1" 201 12 "-" "wrk"\n'
    b"Traceback (most recent call last): nothing to count\n"
)


def test_only_the_request_lines_logged_after_open_without_their_query(tmp_path: Path) -> None:
    # GIVEN a log that already holds a request, tailed from now
    log = tmp_path / "access.log"
    log.write_bytes(BEFORE)
    tail = LogTail.open([], log)
    # WHEN the server logs more (a startup line, two requests, noise) and the tail is saved
    with log.open("ab") as f:
        f.write(DURING)
    saved = tmp_path / "server.log"
    # THEN the two new requests are kept, as method, path and status only
    assert tail.save(saved) == 2
    assert saved.read_bytes() == (b'"GET /users/7 HTTP/1.1" 200\n"POST /orders HTTP/1.1" 201\n')


def test_a_log_truncated_while_sampling_is_read_from_its_start(tmp_path: Path) -> None:
    # GIVEN a tailed log that logrotate's copytruncate empties, then the server logs on
    log = tmp_path / "access.log"
    log.write_bytes(BEFORE * 50)
    tail = LogTail.open([], log)
    log.write_bytes(DURING)
    saved = tmp_path / "server.log"
    # THEN what it logged after the truncation is counted
    assert tail.save(saved) == 2


def test_nothing_logged_writes_nothing(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(BEFORE)
    saved = tmp_path / "server.log"
    assert LogTail.open([], log).save(saved) == 0
    assert not saved.exists()


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_a_named_log_that_is_not_a_readable_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "nope"
    if kind == "directory":
        path.mkdir()
    with pytest.raises(UsageError) as exc:
        LogTail.open([], path)
    assert str(path) in exc.value.message


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process whose stdout is a file and whose stderr is a pipe."""
    with (tmp_path / "out.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.PIPE,
        )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()


def test_a_process_stdout_file_is_tailed_and_its_stderr_pipe_is_not(
    sleeper: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    # GIVEN a process logging to a file (stdout) and a pipe (stderr)
    tail = LogTail.open([sleeper.pid], None)
    # THEN only the file is a source, and what is appended to it is read
    assert len(tail.sources) == 1, tail.sources
    assert str(tmp_path / "out.log") in tail.sources[0]
    with (tmp_path / "out.log").open("ab") as f:
        f.write(DURING)
    assert tail.save(tmp_path / "server.log") == 2
