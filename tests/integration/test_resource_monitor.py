"""ResourceMonitor against real child processes: thread CPU, growth, exits, stop, crashes."""

from __future__ import annotations

import os
import pwd
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import psutil
import pytest

from asgiprof.analyze.resources import Metric, cpu_ratio, growth
from asgiprof.analyze.starved import sched_shares
from asgiprof.record.resources import CpuClock, ResourceMonitor, detect_cpu_clock
from asgiprof.store.resources import ResourceLog, load_resource_log

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parents[2]

BURN_AND_NAP = """
import sys, threading, time

def burn():
    while True:
        pass

def nap():
    while True:
        time.sleep(0.01)

burner = threading.Thread(target=burn, daemon=True)
sleeper = threading.Thread(target=nap, daemon=True)
burner.start()
sleeper.start()
print(burner.native_id, sleeper.native_id, flush=True)
# Each line read: wall time and the burner's CPU time by its own clock, to check against.
burner_clock = time.pthread_getcpuclockid(burner.ident)
for _ in sys.stdin:
    print(time.time(), time.clock_gettime(burner_clock), flush=True)
"""

# Each step keeps one more file, 1 MiB of memory (bytes are written, so resident) and one
# TCP connection to itself (two sockets: the client and the accepted one).
LEAK = """
import os, socket, sys, time

steps = int(sys.argv[1])
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(128)
print(server.getsockname()[1], flush=True)
sys.stdin.readline()
kept = []
for _ in range(steps):
    kept.append(open(os.devnull, "rb"))
    kept.append(b"x" * (1 << 20))
    client = socket.create_connection(("127.0.0.1", server.getsockname()[1]))
    kept += [client, server.accept()[0]]
    time.sleep(0.05)
print("done", flush=True)
sys.stdin.read()
"""

SELF_MONITOR = """
import os, sys, time
from pathlib import Path
from asgiprof.record.resources import ResourceMonitor

monitor = ResourceMonitor(
    Path(sys.argv[1]), [os.getpid()], t0=time.time(), cpu_interval_s=0.01,
    resource_interval_s=0.01,
)
monitor.start()
print("started", flush=True)
while True:
    time.sleep(1)
"""


class Child:
    """A Python child whose stdout lines arrive through a queue, so reads can time out."""

    def __init__(self, code: str, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.pid = self.proc.pid
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))

    def line(self, timeout_s: float = 10.0) -> str:
        try:
            return self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(f"child {self.pid} printed nothing in {timeout_s} s") from None

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@contextmanager
def child(code: str, *args: str) -> Iterator[Child]:
    c = Child(code, *args)
    try:
        yield c
    finally:
        c.kill()
        for pipe in (c.proc.stdin, c.proc.stdout):
            if pipe is not None:
                pipe.close()


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def records(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    lines = path.read_bytes().splitlines(keepends=True)
    # The monitor may be writing the last line right now: only whole lines count.
    decoded = (_decode(line) for line in lines if line.endswith(b"\n"))
    return [r for r in decoded if r is not None]


def _decode(line: bytes) -> dict[str, object] | None:
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:  # blank, or cut by a crash
        return None
    return rec if isinstance(rec, dict) else None


def last_cpu_t_s(path: Path, pid: int) -> float:
    return max(
        (float(str(r["t_s"])) for r in records(path) if r["k"] == "cpu" and r["pid"] == pid),
        default=-1.0,
    )


def res_count(path: Path, pid: int) -> int:
    return sum(1 for r in records(path) if r["k"] == "res" and r["pid"] == pid)


CLOCKS: list[CpuClock] = ["schedstat", "stat", "psutil"]


@pytest.mark.parametrize("clock", CLOCKS)
def test_thread_cpu_tells_a_burning_thread_from_a_sleeping_one(
    tmp_path: Path, clock: CpuClock
) -> None:
    best = detect_cpu_clock()
    if CLOCKS.index(clock) < CLOCKS.index(best):
        pytest.skip(f"{clock} is not available here (best: {best})")
    # GIVEN a process with one thread spinning on CPU and one sleeping
    path = tmp_path / "resources.jsonl"
    with child(BURN_AND_NAP) as target:
        burner, sleeper = (int(x) for x in target.line().split())
        t0 = time.time()

        def mark() -> tuple[float, float]:
            """(t_s, burner CPU seconds) as the child itself measures them."""
            target.send("mark\n")
            wall, cpu_s = (float(x) for x in target.line().split())
            return wall - t0, cpu_s

        # WHEN the monitor watches it for a second
        with ResourceMonitor(path, [target.pid], t0=t0, cpu_clock=clock) as monitor:
            wait_for("a first CPU poll", lambda: last_cpu_t_s(path, target.pid) >= 0)
            start_s, start_cpu_s = mark()
            wait_for("a second", lambda: time.time() - t0 > start_s + 1.0)
            end_s, end_cpu_s = mark()
            wait_for("a poll after it", lambda: last_cpu_t_s(path, target.pid) > end_s)
            assert monitor.problems == ()
        log = load_resource_log(path)

    # THEN the burner ran nearly all the time and the sleeper nearly never
    res = log.resources
    assert log.cpu_clock == clock
    assert {burner, sleeper, target.pid} <= {
        tid for pid, tid in res.thread_cpu if pid == target.pid
    }
    burn_ratio = cpu_ratio(res, target.pid, burner, start_s, end_s)
    nap_ratio = cpu_ratio(res, target.pid, sleeper, start_s, end_s)
    main_ratio = cpu_ratio(res, target.pid, target.pid, start_s, end_s)
    assert nap_ratio is not None and nap_ratio < 0.2, nap_ratio
    assert main_ratio is not None and main_ratio < 0.2, main_ratio
    own_ratio = (end_cpu_s - start_cpu_s) / (end_s - start_s)
    if clock == "schedstat":
        # run time + run-queue wait: a spinning thread is runnable all the time, however
        # busy the machine is, which is what tells CPU-bound work from waiting
        assert burn_ratio is not None and burn_ratio > 0.85, (burn_ratio, own_ratio)
        assert burn_ratio >= own_ratio - 0.1, (burn_ratio, own_ratio)
    else:
        # as the burner's own clock says, whatever else runs on this machine
        assert burn_ratio == pytest.approx(own_ratio, abs=0.1), (burn_ratio, own_ratio)
        if own_ratio < 0.7:
            pytest.skip(f"machine too busy: the burner got {own_ratio:.2f} of a CPU")
        assert burn_ratio is not None and burn_ratio > 0.6, burn_ratio
    # and polls are ~50 ms apart, so a 20 ms episode falls between two of them
    times, _ = res.thread_cpu[(target.pid, burner)]
    gaps = sorted(b - a for a, b in zip(times[:-1], times[1:], strict=True))
    assert 0.03 < gaps[len(gaps) // 2] < 0.1, gaps


HOG = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end:\n    pass\n"

MAIN_BURNS_THEN_NAPS = """
import sys, time

clock = time.pthread_getcpuclockid(__import__("threading").main_thread().ident)
print("ready", flush=True)
for command in sys.stdin:
    start, cpu = time.time(), time.clock_gettime(clock)
    end = start + 0.6
    if command.strip() == "burn":
        while time.time() < end:
            pass
    else:
        time.sleep(0.6)
    print(start, time.time(), time.clock_gettime(clock) - cpu, flush=True)
"""


@pytest.mark.skipif(detect_cpu_clock() != "schedstat", reason="needs /proc/PID/schedstat")
def test_the_main_threads_time_on_a_cpu_and_waiting_for_one_apart(tmp_path: Path) -> None:
    # GIVEN a process whose main thread (where an ASGI server's loop runs) computes for
    # 0.6 s, then sleeps for 0.6 s, beside one CPU hog per core (each ends itself after
    # 30 s, and is killed by its PID: a `timeout` wrapper killed would leave it running)
    path = tmp_path / "resources.jsonl"
    hogs = [
        subprocess.Popen([sys.executable, "-c", HOG], stdin=subprocess.DEVNULL)
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        with child(MAIN_BURNS_THEN_NAPS) as target:
            assert target.line() == "ready"
            t0 = time.time()
            # WHEN the monitor watches it
            with ResourceMonitor(path, [target.pid], t0=t0, sched_interval_s=0.01) as monitor:
                windows = []
                for command in ("burn", "nap"):
                    target.send(command + "\n")
                    start, end, cpu_s = (float(x) for x in target.line().split())
                    windows.append((start - t0 + 0.05, end - t0 - 0.05, cpu_s / (end - start)))
                wait_for("a poll after it", lambda: last_cpu_t_s(path, target.pid) > end - t0)
                assert monitor.problems == ()
            log = load_resource_log(path)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(10)
    # THEN its schedstat was polled about every 10 ms, ...
    times, _, _ = log.resources.sched[(target.pid, target.pid)]
    gaps = sorted(b - a for a, b in zip(times[:-1], times[1:], strict=True))
    assert 0.005 < gaps[len(gaps) // 2] < 0.03, gaps[len(gaps) // 2]
    # ... computing, it ran as much as its own clock says and waited for a CPU (the hogs
    # took their share of every core) ...
    (burn_a, burn_b, own_run), (nap_a, nap_b, _) = windows
    burn = sched_shares(log.resources, target.pid, target.pid, burn_a, burn_b)
    assert burn is not None
    run, wait = burn
    assert run == pytest.approx(own_run, abs=0.1), (burn, own_run)
    assert run + wait > 0.85, burn
    assert wait > 0.1, burn
    # ... and sleeping it did neither
    nap = sched_shares(log.resources, target.pid, target.pid, nap_a, nap_b)
    assert nap is not None and sum(nap) < 0.1, nap


def test_growth_of_a_leaking_process_and_not_of_a_steady_one(tmp_path: Path) -> None:
    path = tmp_path / "resources.jsonl"
    steps = 40
    with child(LEAK, str(steps)) as leaky, child(LEAK, "0") as steady:
        leak_port = int(leaky.line())
        steady.line()
        steady.send("go\n")
        assert steady.line() == "done"
        t0 = time.time()
        with ResourceMonitor(path, [leaky.pid], t0=t0, resource_interval_s=0.1) as monitor:
            # GIVEN the steady process joins while the monitor runs (a restarted worker)
            monitor.add_pid(steady.pid)
            wait_for("first polls", lambda: res_count(path, steady.pid) >= 1)
            # WHEN the leaky one opens files, memory and connections step by step
            leaky.send("go\n")
            assert leaky.line(timeout_s=30) == "done"
            polls = res_count(path, leaky.pid)
            wait_for("polls after the leak", lambda: res_count(path, leaky.pid) >= polls + 2)
            assert monitor.pids == {leaky.pid, steady.pid}
        log = load_resource_log(path)

    # THEN every metric of the leaky process grows steadily
    res = log.resources
    leak_metrics: list[Metric] = ["rss_bytes", "fds", "connections"]
    for metric in leak_metrics:
        g = growth(res, metric, leaky.pid)
        assert g.steady, g
        assert g.r2 > 0.9, g
    fds = growth(res, "fds", leaky.pid)
    # 3 fds per step, one step every ~50 ms (plus the time a step takes)
    assert 3 * 60 / 0.05 * 0.4 < fds.slope_per_min < 3 * 60 / 0.05 * 1.1, fds
    # and its connections are grouped by port: the client side by the remote port, the
    # accepted side by the port it listens on
    conns = log.connections[leaky.pid]
    assert conns.total[-1] == 2 * steps + 1  # plus the listening socket
    assert conns.by_remote_port[-1] == {leak_port: steps}
    assert conns.by_listen_port[-1] == {leak_port: steps}
    assert conns.remote_ports() == [leak_port]
    # AND nothing of the steady process does
    steady_metrics: list[Metric] = ["rss_bytes", "fds", "connections", "threads"]
    for metric in steady_metrics:
        g = growth(res, metric, steady.pid)
        assert g.points >= 5, g
        assert not g.steady, g
    assert log.connections[steady.pid].by_remote_port[-1] == {}


def test_a_vanishing_process_is_recorded_once_and_dropped(tmp_path: Path) -> None:
    path = tmp_path / "resources.jsonl"
    with child(BURN_AND_NAP) as doomed, child(BURN_AND_NAP) as survivor:
        doomed.line()
        survivor.line()
        t0 = time.time()
        with ResourceMonitor(
            path, [doomed.pid, survivor.pid], t0=t0, resource_interval_s=0.1
        ) as monitor:
            wait_for("polls", lambda: res_count(path, doomed.pid) >= 1)
            # WHEN one target dies (and stays a zombie: nobody reaps it yet)
            os.kill(doomed.pid, signal.SIGKILL)
            killed_s = time.time() - t0

            def exited() -> bool:
                return any(r["k"] == "exit" for r in records(path))

            wait_for("the exit record", exited)
            doomed.proc.wait(timeout=10)
            # and a PID that does not exist is added
            dead_pid = _dead_pid()
            monitor.add_pid(dead_pid)
            after_s = time.time() - t0
            wait_for("polls after", lambda: last_cpu_t_s(path, survivor.pid) > after_s + 0.3)
            assert monitor.running
            assert monitor.pids == {survivor.pid}
            assert monitor.problems == ()
        log = load_resource_log(path)

    # THEN each is recorded as exited once, with its time, and the survivor is still polled
    exits = [r for r in records(path) if r["k"] == "exit"]
    assert [(r["pid"], r["why"]) for r in exits] == [(doomed.pid, "zombie"), (dead_pid, "gone")]
    doomed_exit_s, _ = log.exits[doomed.pid]
    assert killed_s <= doomed_exit_s < killed_s + 1.0
    assert log.watched_s.keys() == {doomed.pid, survivor.pid, dead_pid}
    assert last_cpu_t_s(path, doomed.pid) < doomed_exit_s
    assert last_cpu_t_s(path, survivor.pid) > after_s + 0.3


def _dead_pid() -> int:
    """A PID no process has right now."""
    pid = 2**22 - 1
    while psutil.pid_exists(pid):
        pid -= 1
    return pid


def test_stop_returns_within_a_poll_interval(tmp_path: Path) -> None:
    path = tmp_path / "resources.jsonl"
    with child(BURN_AND_NAP) as target:
        target.line()
        # A resource interval far longer than the test: stop must not wait for it.
        monitor = ResourceMonitor(
            path, [target.pid], t0=time.time(), cpu_interval_s=0.05, resource_interval_s=60.0
        )
        monitor.start()
        try:
            wait_for("CPU polls", lambda: last_cpu_t_s(path, target.pid) > 0.2)
            started = time.monotonic()
            monitor.stop()
            took_s = time.monotonic() - started
        finally:
            monitor.stop()
    assert not monitor.running
    assert took_s < 0.25, took_s
    # the file is closed after one last CPU poll, and loads
    kinds = [r["k"] for r in records(path)]
    assert kinds[0] == "start"
    assert kinds[-1] == "cpu"
    assert load_resource_log(path).resources.thread_cpu


def test_an_appended_run_goes_onto_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "resources.jsonl"
    path.write_bytes(b'{"k":"start","t0":1.0}\n{"k":"cpu","t_s":0.5,"pid":1,"ti')  # died mid-line
    t0 = time.time()
    with ResourceMonitor(path, [os.getpid()], t0=t0, cpu_interval_s=0.01):
        wait_for("CPU polls", lambda: last_cpu_t_s(path, os.getpid()) > 0.05)
    log = load_resource_log(path)
    assert log.problems == ("resources.jsonl line 2: cut by a crash, skipped",)
    times, _ = log.resources.thread_cpu[(os.getpid(), threading.get_native_id())]
    # put on the first run's t0
    assert t0 - 1.0 < times[0] < t0 - 1.0 + 1.0


# Watches PID 1 (another user's process, once root is dropped) until told to stop.
DENIED = """
import os, sys, time
from pathlib import Path
from asgiprof.record.resources import ResourceMonitor

if os.geteuid() == 0:  # everything is imported: the interpreter may live in /root
    os.setgid(int(sys.argv[2]))
    os.setuid(int(sys.argv[2]))
monitor = ResourceMonitor(Path(sys.argv[1]), [1, os.getpid()], t0=time.time(),
                          resource_interval_s=0.05)
monitor.start()
print("started", flush=True)
sys.stdin.readline()
monitor.stop()
print(monitor.running, flush=True)
for problem in monitor.problems:
    print(problem, flush=True)
"""


def test_access_denied_does_not_stop_the_monitor() -> None:
    try:
        nobody = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        pytest.skip("no user 'nobody' to drop root to")
    monitor_uid = nobody if os.geteuid() == 0 else os.geteuid()
    if psutil.Process(1).uids().real == monitor_uid:
        pytest.skip("PID 1 belongs to this user here: nothing is denied")
    # Not tmp_path: pytest makes it private to root, and the monitor runs as nobody.
    out_dir = Path(tempfile.mkdtemp(prefix="asgiprof-denied-"))
    try:
        out_dir.chmod(0o777)
        path = out_dir / "resources.jsonl"
        # GIVEN a monitor, not root, watching PID 1 and itself
        with child(DENIED, str(path), str(nobody)) as monitor:
            assert monitor.line() == "started"
            wait_for("polls", lambda: res_count(path, 1) >= 3 and res_count(path, monitor.pid) >= 3)
            monitor.send("stop\n")
            # THEN it ran on, and said once what it could not read
            assert monitor.line() == "False"
            assert monitor.line() == "pid 1: access denied to fds and conns"
            assert monitor.proc.wait(timeout=10) == 0
        res1 = [r for r in records(path) if r["k"] == "res" and r["pid"] == 1]
        assert all(r["fds"] is None and r["conns"] is None for r in res1)
        assert all(isinstance(r["rss_bytes"], int) and r["rss_bytes"] > 0 for r in res1)
        own = [r for r in records(path) if r["k"] == "res" and r["pid"] == monitor.pid]
        assert all(isinstance(r["fds"], int) for r in own)
        log = load_resource_log(path)
        assert log.problems == ("pid 1: access denied to fds and conns",)
        assert any(pid == 1 for pid, _ in log.resources.thread_cpu)  # schedstat is world-readable
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_stops_the_monitor_with_a_problem_not_a_traceback() -> None:
    # GIVEN a file every write to fails with ENOSPC
    monitor = ResourceMonitor(Path("/dev/full"), [os.getpid()], t0=time.time())
    monitor.start()
    try:
        # THEN the thread ends on its own and says why
        wait_for("the monitor to give up", lambda: not monitor.running, timeout_s=5)
    finally:
        monitor.stop()
    assert len(monitor.problems) == 1
    assert monitor.problems[0].startswith("resource monitor stopped: OSError: [Errno 28]")


def test_a_killed_monitor_leaves_a_loadable_file(tmp_path: Path) -> None:
    # GIVEN a process monitoring itself every 10 ms
    path = tmp_path / "resources.jsonl"
    with child(SELF_MONITOR, str(path)) as target:
        assert target.line() == "started"
        wait_for("polls", lambda: res_count(path, target.pid) >= 20)
        # WHEN it is killed while polling
        target.kill()
    # THEN everything written before the kill loads
    log: ResourceLog = load_resource_log(path)
    assert len([p for p in log.resources.points if p.pid == target.pid]) >= 20
    assert (target.pid, target.pid) in log.resources.thread_cpu
