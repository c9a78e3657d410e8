"""Helpers shared by the bench scripts: statistics, tables, processes on 127.0.0.1, pinning.

Every process a bench starts is started here and stopped here by its PID (SIGINT, then
SIGKILL after a bound), and every wait has a deadline.
"""

from __future__ import annotations

import datetime
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx
import psutil

from asgiprof.record.loadgen import free_port

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
APPS = BENCH / "apps"
HOST = "127.0.0.1"
PYTHON = sys.executable


# ------------------------------------------------------------------------------ statistics


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle half (a quarter cut from each end, the
    cut rounded down), robust to the odd window another job spoiled."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    cut = len(ordered) // 4
    middle = ordered[cut : len(ordered) - cut]
    return sum(middle) / len(middle)


def spread(values: Sequence[float]) -> str:
    """`min..max` of a series, the honest error bar for a handful of rounds."""
    if not values:
        return "-"
    return f"{min(values):.3f}..{max(values):.3f}"


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None or x != x:  # None or NaN
        return "-"
    return f"{x:.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table (paste into bench/README.md as is)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)) + " |"]
    lines.append("| " + " | ".join("-" * w for w in widths) + " |")
    lines.extend(
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells[1:]
    )
    return "\n".join(lines)


def header(title: str) -> None:
    """What produced the numbers: command, date, machine."""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    cmd = " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    cpu = platform.processor() or platform.machine()
    print(f"## {title}\n")
    py = platform.python_version()
    print(f"`python {cmd}` on {now}; {os.cpu_count()} CPUs ({cpu}), Python {py}")
    print()


def least_squares(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """(intercept, slope, r2) of y = a + b x."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx if sxx else 0.0
    a = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - a - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return a, slope, 1.0 - ss_res / ss_tot if ss_tot else 1.0


# ------------------------------------------------------------------------------ processes


# Niceness of every benchmarked process (server, load, profilers), from the bench's
# --nice option: a negative value (root only) keeps other jobs on a shared machine from
# stealing the target's CPU in the middle of a window.
NICE = [0]


def pinned(cpus: set[int] | None) -> Callable[[], None] | None:
    """preexec_fn pinning the child (and what it starts) to `cpus` and setting NICE; None
    when there is nothing to set."""
    chosen = set(cpus or ())
    nice = NICE[0]
    if not chosen and not nice:
        return None

    def pin() -> None:
        if chosen:
            os.sched_setaffinity(0, chosen)
        if nice:
            os.nice(nice)

    return pin


def cpu_split(enabled: bool) -> tuple[set[int] | None, set[int] | None]:
    """(target CPUs, everything else): the target gets CPU 0 alone when there are 2+ CPUs."""
    n = os.cpu_count() or 1
    if not enabled or n < 2:
        return None, None
    return {0}, set(range(1, n))


def stop_pid(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> int | None:
    """SIGINT, wait up to `timeout_s`, then SIGKILL its process tree by PID; reap it."""
    if proc.poll() is None:
        try:
            tree = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            tree = []
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)
        for child in tree:
            try:
                if child.is_running():
                    child.kill()
            except psutil.Error:
                pass
    return proc.returncode


class Server:
    """`python -m uvicorn MODULE:app` on 127.0.0.1 from `cwd` (bench/apps), ready when it
    answers."""

    def __init__(
        self,
        module: str,
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        loop: str = "asyncio",
        cpus: set[int] | None = None,
        ready_path: str = "/ok",
        cwd: Path = APPS,
    ) -> None:
        self.module = module
        self.cwd = cwd
        self.port = free_port()
        self.log = log
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.loop = loop
        self.cpus = cpus
        self.ready_path = ready_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 30.0) -> Server:
        cmd = [
            PYTHON,
            "-m",
            "uvicorn",
            f"{self.module}:app",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--loop",
            self.loop,
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=pinned(self.cpus),
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.module} exited: {self.log.read_text()[-2000:]}")
            try:
                httpx.get(self.url + self.ready_path, timeout=1.0, trust_env=False)
                return self
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.module} did not serve within {timeout_s} s")

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process, its reaped children and its live descendants."""
    try:
        root = psutil.Process(pid)
        t = root.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in root.children(recursive=True):
            try:
                c = child.cpu_times()
                total += c.user + c.system
            except psutil.Error:
                pass
        return float(total)
    except psutil.Error:
        return 0.0


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(poll_s)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
