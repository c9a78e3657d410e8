"""Make sure no target thread stays stopped because of py-spy.

py-spy pauses the target's threads for each sample (ptrace, unless --nonblocking). When
py-spy dies the kernel releases them; when it hangs while holding them (py-spy #390,
#811), they stay in a tracing stop (`t`) until py-spy ends; and a job-control stop (`T`)
outlives whoever caused it. The watchdog polls the state of every thread of the target
(and of its workers) in /proc/PID/task/*/stat: a thread held in `t` by one of our py-spy
processes for longer than a sample could take means that py-spy hangs, and it is killed
(the kernel lets the thread run on); a thread in `T` that was not stopped before sampling
began gets SIGCONT, as soon as no py-spy of ours could be the cause.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psutil

# A sample holds the threads for well under a millisecond, and a thread released between
# two samples runs (its schedstat count moves). A thread held this long without running
# means py-spy hangs, or samples so hard (deep stacks at a high rate, py-spy #811) that
# the target no longer runs: py-spy is asked to stop (SIGINT: it writes its samples),
# and killed if it still holds the thread GRACE_S later. The target runs again within
# HANG_S + GRACE_S + 2 x POLL_S = 0.8 s.
HANG_S = 0.3
GRACE_S = 0.3
POLL_S = 0.1
_CHILDREN_EVERY_S = 1.0


def task_files(pid: int, name: str) -> dict[int, bytes] | None:
    """{tid: /proc/PID/task/TID/NAME} for every thread of `pid` (None once it is gone)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    files: dict[int, bytes] = {}
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/{name}", "rb") as f:
                files[int(tid)] = f.read()
        except (OSError, ValueError):
            continue  # the thread ended
    return files


def task_states(pid: int) -> dict[int, str]:
    """{tid: state letter} from /proc/PID/task/*/stat ("R", "S", "t", "T", ...)."""
    states: dict[int, str] = {}
    for tid, stat in (task_files(pid, "stat") or {}).items():
        # The command name may hold spaces and parentheses: the state follows the last ")".
        rest = stat[stat.rfind(b")") + 2 :]
        if rest:
            states[tid] = chr(rest[0])
    return states


def _status_field(path: str, field: str) -> int:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def tracer_of(pid: int, tid: int) -> int:
    """The process (thread group) tracing a thread: 0 for none, or unreadable.

    /proc shows the tracing *thread* (py-spy samples from a thread of its own): its Tgid
    is the py-spy process."""
    tracer = _status_field(f"/proc/{pid}/task/{tid}/status", "TracerPid")
    if tracer == 0:
        return 0
    return _status_field(f"/proc/{tracer}/status", "Tgid") or tracer


def times_scheduled(pid: int, tid: int) -> int:
    """How often the thread has run on a CPU (/proc/PID/task/TID/schedstat), -1 unknown.

    A thread py-spy stops and releases for sample after sample shows `t` at every look
    at a high rate; only one that stays stopped keeps this count still."""
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return -1


def stopped_tasks(pids: Iterable[int]) -> set[tuple[int, int]]:
    """(pid, tid) of every thread among `pids` in a job-control stop (`T`)."""
    return {(pid, tid) for pid in pids for tid, s in task_states(pid).items() if s == "T"}


@dataclass(slots=True)
class WatchdogReport:
    """What the watchdog had to do; empty when py-spy behaved."""

    holds: int = 0  # py-spy processes stopped because they held a thread too long
    hung_kills: int = 0  # ... of which did not stop on SIGINT and were killed
    resumed: int = 0  # processes sent SIGCONT because a thread of theirs was left stopped
    events: list[str] = field(default_factory=list)


class Watchdog:
    """Polls the target's threads in a thread of its own while py-spy samples.

    `samplers()` returns the PIDs of the py-spy processes running now; `halt(pid, kill)`
    stops one of them (SIGINT, or SIGKILL when `kill`). `check()` may also be called
    directly (after a py-spy exits).
    """

    def __init__(
        self,
        pid: int,
        samplers: Callable[[], list[int]],
        halt: Callable[[int, bool], None],
        *,
        hang_s: float = HANG_S,
        grace_s: float = GRACE_S,
        poll_s: float = POLL_S,
    ) -> None:
        self.pid = pid
        self.samplers = samplers
        self.halt = halt
        self.hang_s = hang_s
        self.grace_s = grace_s
        self._asked: dict[int, float] = {}  # py-spy PID -> when it was asked to stop
        self.poll_s = poll_s
        self.report = WatchdogReport()
        self._pids = [pid]
        self._children_at = 0.0
        self.stopped_before = stopped_tasks(self._target_pids())
        # (pid, tid) -> (since when it is seen stopped and not run, its schedstat count)
        self._held_since: dict[tuple[int, int], tuple[float, int]] = {}
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="asgiprof-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._done.set()
        self._thread.join(timeout_s)
        self.check(settled=True)  # the last py-spy has ended: nothing may be held now

    def _target_pids(self) -> list[int]:
        now = time.monotonic()
        if now - self._children_at >= _CHILDREN_EVERY_S:
            self._children_at = now
            try:
                kids = psutil.Process(self.pid).children(recursive=True)
                self._pids = [self.pid, *(k.pid for k in kids)]
            except psutil.Error:
                self._pids = [self.pid]
        return self._pids

    def _run(self) -> None:
        while not self._done.wait(self.poll_s):
            self.check()

    def check(self, settled: bool = False) -> None:
        """One look at every thread: kill a py-spy that holds one too long, resume a
        process left stopped (`settled`: at once, no py-spy should be running). Safe to
        call from any thread."""
        with self._lock:
            self._check(0.0 if settled else self.hang_s)

    def _check(self, hang_s: float) -> None:
        now = time.monotonic()
        ours = set(self.samplers())
        held: dict[tuple[int, int], tuple[float, int]] = {}
        for pid in self._target_pids():
            for tid, state in task_states(pid).items():
                if state == "t" or (state == "T" and (pid, tid) not in self.stopped_before):
                    runs = times_scheduled(pid, tid)
                    since, seen_runs = self._held_since.get((pid, tid), (now, runs))
                    # A thread that ran since the last look was released in between.
                    held[(pid, tid)] = (since, runs) if runs == seen_runs else (now, runs)
        self._held_since = held
        stopped: set[int] = set()
        for (pid, tid), (since, _) in held.items():
            if now - since < hang_s:
                continue
            tracer = tracer_of(pid, tid)
            if tracer in ours:
                asked = self._asked.get(tracer)
                if asked is None:
                    self._asked[tracer] = now
                    self.halt(tracer, False)
                    self.report.holds += 1
                    self.report.events.append(
                        f"py-spy {tracer} held thread {tid} of process {pid} for "
                        f"{now - since:.1f} s without letting it run: stopped it"
                    )
                elif now - asked >= self.grace_s or hang_s == 0.0:
                    self.halt(tracer, True)
                    ours.discard(tracer)
                    self.report.hung_kills += 1
                    self.report.events.append(
                        f"py-spy {tracer} still held thread {tid} of process {pid}: killed it"
                    )
            stopped.add(pid)
        # A job-control stop outlives py-spy: once no py-spy of ours holds the thread,
        # SIGCONT (which a process only ever gets from us after it was stopped here).
        for pid in sorted(stopped):
            if any(s == "T" for s in task_states(pid).values()) and not ours & {
                tracer_of(pid, tid) for tid in task_states(pid)
            }:
                try:
                    os.kill(pid, signal.SIGCONT)
                except OSError:
                    continue
                self.report.resumed += 1
                self.report.events.append(f"process {pid} was left stopped: resumed it")
