"""Poll the target's processes while py-spy samples them; append each poll to resources.jsonl.

Thread CPU (every `cpu_interval_s`) tells an episode's kind, cpu or io; RSS, fds, threads and
connections (every `resource_interval_s`) show leaks. A crash loses at most the poll under way.

The record format and its loader live in store/resources.py: this module only polls.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import psutil

from asgiprof.store.resources import (
    ExitReason,
    Record,
    ResourceWriter,
    ResReading,
    cpu_record,
    exit_record,
    problem_record,
    res_record,
    sched_record,
    start_record,
    watch_record,
)

CpuClock = Literal["schedstat", "stat", "psutil"]

# by_remote_port keeps this many busiest ports; the rest are summed under port 0, so a
# process with many distinct peers cannot blow up the file.
MAX_PORTS = 64
# Threads whose /proc CPU file stays open between polls (one pread per thread and poll
# instead of open+read+close: measured ~2x cheaper). Beyond this, files are opened per poll
# so a many-worker, many-thread target cannot exhaust asgiprof's own fd limit.
FD_BUDGET = 256


# --------------------------------------------------------------------------- polling


def detect_cpu_clock() -> CpuClock:
    """Best per-thread CPU source here: schedstat (ns), /proc stat (clock ticks), psutil."""
    if not sys.platform.startswith("linux"):
        return "psutil"
    own = f"/proc/{os.getpid()}/task/{threading.get_native_id()}"
    try:
        with open(f"{own}/schedstat", "rb") as f:
            # A kernel without sched_info prints "0 0 0"; this thread has surely run.
            if int(f.read().split()[0]) > 0:
                return "schedstat"
    except (OSError, ValueError, IndexError):
        pass
    return "stat" if os.path.exists(f"{own}/stat") else "psutil"


class _FdBudget:
    def __init__(self, size: int) -> None:
        self.left = size


class _ProcThreadCpu:
    """Cumulative CPU of every thread of one process, read straight from /proc (Linux).

    schedstat gives the scheduler's nanosecond run time and run-queue wait, summed here as
    "runnable" time; stat's utime+stime only has clock ticks (10 ms at 100 Hz), too coarse
    for 20 ms episodes, so it is the fallback.
    """

    def __init__(self, pid: int, clock: Literal["schedstat", "stat"], budget: _FdBudget) -> None:
        self._task_dir = f"/proc/{pid}/task"
        self._file = clock
        self._budget = budget
        self._fds: dict[str, int] = {}
        self._tick_us = 1_000_000 / os.sysconf("SC_CLK_TCK") if clock == "stat" else 0.0

    def read(self) -> tuple[list[int], list[int]]:
        """(tids, cpu_us); raises FileNotFoundError/ProcessLookupError once the process is gone."""
        names = os.listdir(self._task_dir)
        tids: list[int] = []
        cpu_us: list[int] = []
        fds = self._fds
        for name in names:
            fd = fds.get(name)
            try:
                if fd is not None:
                    data = os.pread(fd, 512, 0)
                else:
                    fd = os.open(f"{self._task_dir}/{name}/{self._file}", os.O_RDONLY)
                    try:
                        data = os.pread(fd, 512, 0)
                    finally:
                        if self._budget.left > 0:
                            self._budget.left -= 1
                            fds[name] = fd
                        else:
                            os.close(fd)
            except (FileNotFoundError, ProcessLookupError):
                # The thread ended between the listing and the read (an open fd of an ended
                # thread answers ESRCH, so a reused tid never reads the old thread's file).
                self._forget(name)
                continue
            tids.append(int(name))
            cpu_us.append(self._parse(data))
        if len(fds) > len(names):
            for gone in set(fds).difference(names):
                self._forget(gone)
        return tids, cpu_us

    def _parse(self, data: bytes) -> int:
        if self._file == "schedstat":
            # Run time plus run-queue wait: a CPU-bound thread on a busy machine waits for a
            # core but is still CPU-bound; counting only run time would call it half idle.
            run_ns, wait_ns = _schedstat_ns(data)
            return (run_ns + wait_ns) // 1000
        # The command name (field 2) may hold spaces and ')': fields restart after the last ')'.
        fields = data[data.rfind(b")") + 2 :].split()
        return round((int(fields[11]) + int(fields[12])) * self._tick_us)

    def _forget(self, name: str) -> None:
        fd = self._fds.pop(name, None)
        if fd is not None:
            os.close(fd)
            self._budget.left += 1

    def close(self) -> None:
        for name in list(self._fds):
            self._forget(name)


def _schedstat_ns(data: bytes) -> tuple[int, int]:
    """A thread's schedstat: nanoseconds on a CPU, nanoseconds waiting in the run queue."""
    run_ns, wait_ns = data.split(maxsplit=2)[:2]
    return int(run_ns), int(wait_ns)


class _MainSched:
    """The main thread's schedstat, apart: time on a CPU and time waiting for one.

    An ASGI server's event loop runs in its main thread. On a machine short of CPU the OS
    leaves it waiting in the run queue for 20-30 ms now and then, in the middle of whatever
    line it was at; a poll every 10 ms tells that wait from a line that computes or sleeps
    (analyze/starved.py). One pread of one file per poll.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._fd = os.open(f"/proc/{pid}/task/{pid}/schedstat", os.O_RDONLY)
        self.t_s: list[float] = []
        self.run_us: list[int] = []
        self.wait_us: list[int] = []

    def read(self, t_s: float) -> None:
        """Append one reading; raises OSError once the thread is gone."""
        run_ns, wait_ns = _schedstat_ns(os.pread(self._fd, 128, 0))
        self.t_s.append(t_s)
        self.run_us.append(run_ns // 1000)
        self.wait_us.append(wait_ns // 1000)

    def flush(self) -> Record | None:
        if not self.t_s:
            return None
        record = sched_record(self.pid, self.pid, self.t_s, self.run_us, self.wait_us)
        self.t_s, self.run_us, self.wait_us = [], [], []
        return record

    def close(self) -> None:
        os.close(self._fd)


class _PsutilThreadCpu:
    """Fallback where /proc is missing (psutil's threads(): ~7x slower on Linux)."""

    def __init__(self, proc: Any) -> None:
        self._proc = proc

    def read(self) -> tuple[list[int], list[int]]:
        threads = self._proc.threads()
        return (
            [t.id for t in threads],
            [round((t.user_time + t.system_time) * 1e6) for t in threads],
        )

    def close(self) -> None:
        pass


class _ProcessGone(Exception):
    def __init__(self, why: ExitReason) -> None:
        super().__init__(why)
        self.why: ExitReason = why


@dataclass(slots=True)
class _Watched:
    pid: int
    proc: Any  # psutil.Process, None when psutil may not look at it
    cpu: _ProcThreadCpu | _PsutilThreadCpu | None
    sched: _MainSched | None = None


class ResourceMonitor:
    """Background thread polling target PIDs and appending records to `path`.

    Use as a context manager, or `start()` then `stop()`. The thread never raises: vanished
    processes get one `exit` record, other failures one `problem` record (also in `problems`).
    """

    def __init__(
        self,
        path: Path,
        pids: Iterable[int] = (),
        *,
        t0: float,
        cpu_interval_s: float = 0.05,
        resource_interval_s: float = 1.0,
        cpu_clock: CpuClock | None = None,
        sched_interval_s: float | None = None,
    ) -> None:
        if (
            cpu_interval_s <= 0
            or resource_interval_s <= 0
            or (sched_interval_s is not None and sched_interval_s <= 0)
        ):
            raise ValueError("poll intervals must be positive")
        self.path = path
        self.t0 = t0
        self.cpu_interval_s = cpu_interval_s
        self.sched_interval_s = sched_interval_s
        self.resource_interval_s = resource_interval_s
        self.cpu_clock: CpuClock = cpu_clock or detect_cpu_clock()
        self._lock = threading.Lock()
        self._pending: list[int] = list(dict.fromkeys(pids))
        self._watched: dict[int, _Watched] = {}
        self._problems: dict[str, None] = {}  # insertion-ordered set
        self._budget = _FdBudget(FD_BUDGET)
        self._stop = threading.Event()
        self._out: ResourceWriter | None = None
        self._thread = threading.Thread(target=self._run, name="asgiprof-resources", daemon=True)

    # -- public

    def add_pid(self, pid: int) -> None:
        """Watch `pid` from the next poll on (a restarted worker; harmless when already watched)."""
        with self._lock:
            if pid not in self._pending:
                self._pending.append(pid)

    @property
    def pids(self) -> frozenset[int]:
        """PIDs watched now or about to be."""
        with self._lock:
            return frozenset(self._pending) | frozenset(self._watched)

    @property
    def problems(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._problems)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        """Open `path` for appending (OSError reaches the caller) and start polling."""
        if self._out is not None:
            raise RuntimeError("ResourceMonitor already started")
        self._out = ResourceWriter(self.path)  # the thread closes it
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop after the poll under way (plus one last CPU poll) and close the file."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def __enter__(self) -> ResourceMonitor:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the thread

    def _run(self) -> None:
        try:
            self._write(
                [
                    start_record(
                        self.t0, self.cpu_clock, self.cpu_interval_s, self.resource_interval_s
                    )
                ]
            )
            next_cpu = next_res = next_sched = time.monotonic()
            if self.sched_interval_s is None:
                next_sched = math.inf
            while True:
                records = self._watch_pending()
                now = time.monotonic()
                if self.sched_interval_s is not None and now >= next_sched:
                    self._poll_sched()
                    next_sched = _next_deadline(next_sched, self.sched_interval_s, now)
                if now >= next_res:
                    records += self._poll_resources()
                    next_res = _next_deadline(next_res, self.resource_interval_s, now)
                if now >= next_cpu:
                    records += self._poll_cpu()
                    next_cpu = _next_deadline(next_cpu, self.cpu_interval_s, now)
                self._write(records)
                wake = min(next_cpu, next_res, next_sched)
                if self._stop.wait(max(0.0, wake - time.monotonic())):
                    break
            # One last CPU poll, so episodes up to the stop are covered by polls.
            self._poll_sched()
            self._write(self._poll_cpu())
        except Exception as exc:  # the profile must go on without resources, not die
            record = self._note(None, f"resource monitor stopped: {type(exc).__name__}: {exc}")
            try:
                self._write([record] if record else [])
            except OSError:  # the file itself failed: `problems` still says why
                pass
        finally:
            for w in self._watched.values():
                if w.cpu is not None:
                    w.cpu.close()
                if w.sched is not None:
                    w.sched.close()
            if self._out is not None:
                self._out.close()

    def _write(self, records: list[Record]) -> None:
        assert self._out is not None, "started"
        self._out.write(records)

    def _t_s(self) -> float:
        return round(time.time() - self.t0, 6)

    def _note(self, pid: int | None, msg: str) -> Record | None:
        """Remember a problem once; the record to write, or None when already known."""
        with self._lock:
            if msg in self._problems:
                return None
            self._problems[msg] = None
        return problem_record(self._t_s(), pid, msg)

    def _watch_pending(self) -> list[Record]:
        with self._lock:
            if not self._pending:
                return []
            pending, self._pending = self._pending, []
        records: list[Record] = []
        for pid in pending:
            if pid in self._watched:
                continue
            records.append(watch_record(self._t_s(), pid))
            try:
                proc: Any = psutil.Process(pid)
            except psutil.NoSuchProcess:
                records.append(exit_record(self._t_s(), pid, "gone"))
                continue
            except psutil.AccessDenied:
                proc = None
                _append(records, self._note(pid, f"pid {pid}: access denied, no RSS/fds/conns"))
            cpu: _ProcThreadCpu | _PsutilThreadCpu | None
            if self.cpu_clock == "psutil":
                cpu = _PsutilThreadCpu(proc) if proc is not None else None
            else:
                cpu = _ProcThreadCpu(pid, self.cpu_clock, self._budget)
            sched: _MainSched | None = None
            if self.cpu_clock == "schedstat" and self.sched_interval_s is not None:
                try:
                    sched = _MainSched(pid)
                except OSError:
                    sched = None  # gone already: the CPU poll says so
            with self._lock:
                self._watched[pid] = _Watched(pid, proc, cpu, sched)
        return records

    def _drop(self, pid: int, why: ExitReason) -> Record:
        with self._lock:
            w = self._watched.pop(pid)
        if w.cpu is not None:
            w.cpu.close()
        if w.sched is not None:
            w.sched.close()
        return exit_record(self._t_s(), pid, why)

    def _poll_sched(self) -> None:
        for w in list(self._watched.values()):
            if w.sched is not None:
                try:
                    w.sched.read(self._t_s())
                except (OSError, ValueError):
                    w.sched.close()
                    w.sched = None  # the process is gone: the CPU poll reports it

    def _poll_cpu(self) -> list[Record]:
        records: list[Record] = []
        for w in list(self._watched.values()):
            if w.sched is not None:
                _append(records, w.sched.flush())
            if w.cpu is None:
                continue
            t_s = self._t_s()
            try:
                tids, cpu_us = w.cpu.read()
            except (FileNotFoundError, ProcessLookupError, psutil.NoSuchProcess) as exc:
                why: ExitReason = "zombie" if isinstance(exc, psutil.ZombieProcess) else "gone"
                records.append(self._drop(w.pid, why))
                continue
            except (OSError, psutil.Error, ValueError, IndexError) as exc:
                _append(records, self._note(w.pid, f"pid {w.pid}: thread CPU unreadable: {exc}"))
                continue
            records.append(cpu_record(t_s, w.pid, tids, cpu_us))
        return records

    def _poll_resources(self) -> list[Record]:
        records: list[Record] = []
        for w in list(self._watched.values()):
            if w.proc is None:
                continue
            t_s = self._t_s()
            try:
                reading = _read_resources(w.proc)
            except _ProcessGone as gone:
                records.append(self._drop(w.pid, gone.why))
                continue
            except (psutil.Error, OSError) as exc:
                _append(records, self._note(w.pid, f"pid {w.pid}: resources unreadable: {exc}"))
                continue
            records.append(res_record(t_s, w.pid, reading))
            denied = [
                name
                for name, value in (("fds", reading["fds"]), ("conns", reading["conns"]))
                if value is None
            ]
            if denied:
                msg = f"pid {w.pid}: access denied to {' and '.join(denied)}"
                _append(records, self._note(w.pid, msg))
        return records


def _read_resources(proc: Any) -> ResReading:
    """RSS, fds, threads and connections of one process; raises _ProcessGone."""
    try:
        # is_running() compares the creation time too: a reused PID is another process.
        if not proc.is_running():
            raise _ProcessGone("gone")
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                raise _ProcessGone("zombie")
            rss = int(proc.memory_info().rss)
            threads = int(proc.num_threads())
            try:
                fds: int | None = int(proc.num_fds())
            except (psutil.AccessDenied, AttributeError):  # num_fds: POSIX only
                fds = None
        # psutil 6 renamed connections() to net_connections(); pyproject allows 5.9.
        connections = getattr(proc, "net_connections", None) or proc.connections
        try:
            conns: list[Any] | None = connections(kind="inet")
        except psutil.AccessDenied:
            conns = None
    except psutil.ZombieProcess as exc:
        raise _ProcessGone("zombie") from exc
    except psutil.NoSuchProcess as exc:
        raise _ProcessGone("gone") from exc
    by_remote, by_listen = _group_connections(conns or [])
    return {
        "rss_bytes": rss,
        "fds": fds,
        "threads": threads,
        "conns": None if conns is None else len(conns),
        "by_remote_port": by_remote,
        "by_listen_port": by_listen,
    }


def _group_connections(conns: list[Any]) -> tuple[dict[int, int], dict[int, int]]:
    # Accepted connections have random client ports as remote port: count them by the port
    # they were accepted on, or a server with 500 clients would log 500 one-entry ports.
    listening = {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN and c.laddr}
    by_remote: Counter[int] = Counter()
    by_listen: Counter[int] = Counter()
    for c in conns:
        if not c.raddr:
            continue
        if c.laddr and c.laddr.port in listening:
            by_listen[c.laddr.port] += 1
        else:
            by_remote[c.raddr.port] += 1
    if len(by_remote) > MAX_PORTS:
        top = by_remote.most_common(MAX_PORTS - 1)
        other = sum(by_remote.values()) - sum(n for _, n in top)
        by_remote = Counter(dict(top))
        by_remote[0] += other
    return dict(sorted(by_remote.items())), dict(sorted(by_listen.items()))


def _append(records: list[Record], record: Record | None) -> None:
    if record is not None:
        records.append(record)


def _next_deadline(deadline: float, interval: float, now: float) -> float:
    # After a stall, skip the missed polls rather than firing them back to back.
    deadline += interval
    return deadline if deadline > now else now + interval


# --------------------------------------------------------------------------- loading
