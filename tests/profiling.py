"""Run asgiprof as a user does (`python -m asgiprof ...` in a subprocess) and read its output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.servers import HOST


@dataclass(frozen=True, slots=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str


def asgiprof(
    *args: str, cwd: Path, timeout_s: float = 120.0, env: dict[str, str] | None = None
) -> Finished:
    """Run `python -m asgiprof ARGS` to completion (killed by PID after `timeout_s`)."""
    proc = start_asgiprof(*args, cwd=cwd, env=env)
    return finish(proc, timeout_s)


def start_asgiprof(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "asgiprof", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=full_env,
    )


def finish(proc: subprocess.Popen[str], timeout_s: float) -> Finished:
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"asgiprof did not finish in {timeout_s} s:\n{out}\n{err}") from None
    return Finished(proc.returncode, out, err)


def wait_until_serving(port: int, timeout_s: float = 30.0, path: str = "/docs") -> None:
    """Poll the server asgiprof launched until it answers (never a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://{HOST}:{port}{path}", timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"nothing answered on port {port} within {timeout_s} s")


def summary(out: Path) -> dict[str, Any]:
    data = orjson.loads((out / "summary.json").read_bytes())
    assert isinstance(data, dict)
    return data


def culprit_at(data: dict[str, Any], file: Path, line: int) -> dict[str, Any] | None:
    for c in data["culprits"]:
        if Path(c["file"]).resolve() == file.resolve() and c["line"] == line:
            return dict(c)
    return None
