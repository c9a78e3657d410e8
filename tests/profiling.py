"""Run asgiprof as a user does (`python -m asgiprof ...` in a subprocess) and read its output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson

from asgiprof.record.loadgen import LoadResult, start_load_thread
from tests.servers import HOST, ServerProcess

T = TypeVar("T")


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


# The demo's planted lines (examples/demo_app.py, by the words of their marks) and the kind
# each is: two time.sleep calls wait; a sqlite LIKE scan and a generator expression compute.
DEMO_KINDS = {
    "sync token check": "io",
    "sync call (think requests.get)": "io",
    "sync DB": "cpu",
    "pure-Python CPU work": "cpu",
}


def demo_kinds(data: dict[str, Any], demo_file: Path) -> dict[str, str | None]:
    """Each planted demo line's culprit kind in a profile (None: not a culprit)."""
    lines = demo_file.read_text(encoding="utf-8").splitlines()
    kinds: dict[str, str | None] = {}
    for words in DEMO_KINDS:
        (number,) = [i for i, text in enumerate(lines, 1) if f"# planted: {words}" in text]
        culprit = culprit_at(data, demo_file, number)
        kinds[words] = None if culprit is None else str(culprit["kind"])
    return kinds


@dataclass(frozen=True, slots=True)
class Profiled:
    data: dict[str, Any]
    done: Finished
    load: LoadResult


def attach_under_load(
    server: ServerProcess,
    paths: Sequence[str],
    out: Path,
    *,
    duration_s: float,
    concurrency: int = 4,
    timeout_s: float = 90.0,
    extra: Sequence[str] = (),
) -> Profiled:
    """Load the server for the whole of a `python -m asgiprof attach --duration [EXTRA]`
    run (asgiprof is given `timeout_s` beyond the duration)."""
    load = start_load_thread(
        server.url, paths, duration_s=duration_s + 20.0, concurrency=concurrency, timeout_s=30.0
    )
    try:
        done = asgiprof(
            "attach",
            str(server.pid),
            "--duration",
            str(duration_s),
            "--out",
            str(out),
            *extra,
            cwd=server.cwd,
            timeout_s=duration_s + timeout_s,
        )
    finally:
        load.stop()
        assert load.join(40.0), "the load did not stop"
    assert done.returncode == 0, done.stdout + done.stderr
    return Profiled(summary(out), done, load.result)


def both(first: Callable[[], T], second: Callable[[], T], join_s: float) -> tuple[T, T]:
    """Two profiles at once (a cause and its control): half the wall time, and the control
    runs on a machine as busy as the cause's."""
    results: dict[int, T] = {}
    errors: list[BaseException] = []

    def one(k: int, run: Callable[[], T]) -> None:
        try:
            results[k] = run()
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=kr) for kr in enumerate((first, second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(join_s)
    assert not any(t.is_alive() for t in threads), "a profile did not finish"
    if errors:
        raise errors[0]
    return results[0], results[1]
