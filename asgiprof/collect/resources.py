"""Poll the target's processes while py-spy samples them; append each poll to resources.jsonl.

Thread CPU (every `cpu_interval_s`) tells an episode's kind, cpu or io; RSS, fds, threads and
connections (every `resource_interval_s`) show leaks. A crash loses at most the poll under way.

Record format: one compact JSON object a line, `k` names the kind. `t_s` is seconds since
`t0`, the unix time given to `ResourceMonitor` (time.time(), like the sampler):

    {"k":"start","t0":1700000000.25,"cpu_clock":"schedstat","cpu_interval_s":0.05,
     "resource_interval_s":1.0}                            one per monitor run (appended runs
                                                            are put on the first run's t0)
    {"k":"watch","t_s":0.0,"pid":123}                       pid watched from now on
    {"k":"cpu","t_s":0.05,"pid":123,"tids":[123,130],"cpu_us":[51230,10]}
                                                            cumulative user+system CPU
                                                            microseconds of each OS thread
    {"k":"res","t_s":1.0,"pid":123,"rss_bytes":52428800,"fds":23,"threads":40,"conns":7,
     "by_remote_port":{"5432":5},"by_listen_port":{"8000":1}}
    {"k":"exit","t_s":3.2,"pid":123,"why":"gone"}           why: "gone" or "zombie"
    {"k":"problem","t_s":0.0,"pid":123,"msg":"..."}         once per distinct problem (pid
                                                            null: the monitor's own)

In `res`: `fds` and `conns` are null when access is denied; `conns` counts all inet sockets
(TCP and UDP, listening ones too); `by_listen_port` counts accepted connections by the local
port the process listens on, `by_remote_port` all other connected sockets by remote port (a
database pool shows as its server port); port "0" sums remote ports beyond the
`MAX_PORTS` busiest. Unknown kinds and keys are ignored by the loader (add freely).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from io import FileIO
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import orjson
import psutil

from asgiprof.errors import CorruptProfileError
from asgiprof.model import ConnectionSeries, ResourcePoint, Resources

CpuClock = Literal["schedstat", "stat", "psutil"]
Metric = Literal["rss_bytes", "fds", "threads", "connections"]
ExitReason = Literal["gone", "zombie"]

# ResourcePoint field value when the poll could not read it (access denied).
UNKNOWN = -1
# by_remote_port keeps this many busiest ports; the rest are summed under port 0, so a
# process with many distinct peers cannot blow up the file.
MAX_PORTS = 64
# Threads whose /proc CPU file stays open between polls (one pread per thread and poll
# instead of open+read+close: measured ~2x cheaper). Beyond this, files are opened per poll
# so a many-worker, many-thread target cannot exhaust asgiprof's own fd limit.
FD_BUDGET = 256

_DUMPS_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS


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
            run_ns, wait_ns = data.split(maxsplit=2)[:2]
            return (int(run_ns) + int(wait_ns)) // 1000
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
    ) -> None:
        if cpu_interval_s <= 0 or resource_interval_s <= 0:
            raise ValueError("poll intervals must be positive")
        self.path = path
        self.t0 = t0
        self.cpu_interval_s = cpu_interval_s
        self.resource_interval_s = resource_interval_s
        self.cpu_clock: CpuClock = cpu_clock or detect_cpu_clock()
        self._lock = threading.Lock()
        self._pending: list[int] = list(dict.fromkeys(pids))
        self._watched: dict[int, _Watched] = {}
        self._problems: dict[str, None] = {}  # insertion-ordered set
        self._budget = _FdBudget(FD_BUDGET)
        self._stop = threading.Event()
        self._out: FileIO | None = None  # unbuffered: each write is one write(2)
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
        out = FileIO(self.path, "ab")  # the thread closes it
        try:
            if out.tell() > 0 and not _ends_with_newline(self.path):
                # An earlier run died mid-line: end that line so ours start on a fresh one.
                out.write(b"\n")
        except OSError:
            out.close()
            raise
        self._out = out
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
                    {
                        "k": "start",
                        "t0": self.t0,
                        "cpu_clock": self.cpu_clock,
                        "cpu_interval_s": self.cpu_interval_s,
                        "resource_interval_s": self.resource_interval_s,
                    }
                ]
            )
            next_cpu = next_res = time.monotonic()
            while True:
                records = self._watch_pending()
                now = time.monotonic()
                if now >= next_res:
                    records += self._poll_resources()
                    next_res = _next_deadline(next_res, self.resource_interval_s, now)
                if now >= next_cpu:
                    records += self._poll_cpu()
                    next_cpu = _next_deadline(next_cpu, self.cpu_interval_s, now)
                self._write(records)
                if self._stop.wait(max(0.0, min(next_cpu, next_res) - time.monotonic())):
                    break
            # One last CPU poll, so episodes up to the stop are covered by polls.
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
            if self._out is not None:
                self._out.close()

    def _write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        assert self._out is not None, "started"
        data = b"".join(orjson.dumps(r, option=_DUMPS_OPTIONS) for r in records)
        view = memoryview(data)
        while view:
            n = self._out.write(view)
            if not n:
                raise OSError(f"writing {self.path} made no progress")
            view = view[n:]

    def _t_s(self) -> float:
        return round(time.time() - self.t0, 6)

    def _note(self, pid: int | None, msg: str) -> dict[str, Any] | None:
        """Remember a problem once; the record to write, or None when already known."""
        with self._lock:
            if msg in self._problems:
                return None
            self._problems[msg] = None
        return {"k": "problem", "t_s": self._t_s(), "pid": pid, "msg": msg}

    def _watch_pending(self) -> list[dict[str, Any]]:
        with self._lock:
            if not self._pending:
                return []
            pending, self._pending = self._pending, []
        records: list[dict[str, Any]] = []
        for pid in pending:
            if pid in self._watched:
                continue
            records.append({"k": "watch", "t_s": self._t_s(), "pid": pid})
            try:
                proc: Any = psutil.Process(pid)
            except psutil.NoSuchProcess:
                records.append({"k": "exit", "t_s": self._t_s(), "pid": pid, "why": "gone"})
                continue
            except psutil.AccessDenied:
                proc = None
                _append(records, self._note(pid, f"pid {pid}: access denied, no RSS/fds/conns"))
            cpu: _ProcThreadCpu | _PsutilThreadCpu | None
            if self.cpu_clock == "psutil":
                cpu = _PsutilThreadCpu(proc) if proc is not None else None
            else:
                cpu = _ProcThreadCpu(pid, self.cpu_clock, self._budget)
            with self._lock:
                self._watched[pid] = _Watched(pid, proc, cpu)
        return records

    def _drop(self, pid: int, why: ExitReason) -> dict[str, Any]:
        with self._lock:
            w = self._watched.pop(pid)
        if w.cpu is not None:
            w.cpu.close()
        return {"k": "exit", "t_s": self._t_s(), "pid": pid, "why": why}

    def _poll_cpu(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for w in list(self._watched.values()):
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
            records.append({"k": "cpu", "t_s": t_s, "pid": w.pid, "tids": tids, "cpu_us": cpu_us})
        return records

    def _poll_resources(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for w in list(self._watched.values()):
            if w.proc is None:
                continue
            t_s = self._t_s()
            try:
                record = _read_resources(w.proc)
            except _ProcessGone as gone:
                records.append(self._drop(w.pid, gone.why))
                continue
            except (psutil.Error, OSError) as exc:
                _append(records, self._note(w.pid, f"pid {w.pid}: resources unreadable: {exc}"))
                continue
            records.append({"k": "res", "t_s": t_s, "pid": w.pid, **record})
            denied = [name for name in ("fds", "conns") if record[name] is None]
            if denied:
                msg = f"pid {w.pid}: access denied to {' and '.join(denied)}"
                _append(records, self._note(w.pid, msg))
        return records


def _read_resources(proc: Any) -> dict[str, Any]:
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


def _append(records: list[dict[str, Any]], record: dict[str, Any] | None) -> None:
    if record is not None:
        records.append(record)


def _next_deadline(deadline: float, interval: float, now: float) -> float:
    # After a stall, skip the missed polls rather than firing them back to back.
    deadline += interval
    return deadline if deadline > now else now + interval


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True, slots=True)
class ResourceLog:
    """Everything in a resources.jsonl; `resources` is what goes into the Profile."""

    resources: Resources
    connections: Mapping[int, ConnectionSeries]
    watched_s: Mapping[int, float]  # pid -> when watching started (last time if re-watched)
    exits: Mapping[int, tuple[float, ExitReason]]  # pid -> (t_s, why)
    cpu_clock: str  # "" when the file has no start record
    problems: tuple[str, ...]  # the monitor's own, plus a truncated last line


@dataclass(slots=True)
class _ConnBuilder:
    t_s: list[float] = field(default_factory=list)
    total: list[int] = field(default_factory=list)
    by_remote: list[Mapping[int, int]] = field(default_factory=list)
    by_listen: list[Mapping[int, int]] = field(default_factory=list)


@dataclass(slots=True)
class _Loader:
    resources: Resources = field(default_factory=Resources)
    conns: dict[int, _ConnBuilder] = field(default_factory=dict)
    watched_s: dict[int, float] = field(default_factory=dict)
    exits: dict[int, tuple[float, ExitReason]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    cpu_clock: str = ""
    base_t0: float | None = None
    offset_s: float = 0.0  # puts an appended run's t_s on the first run's t0

    def record(self, rec: Any) -> None:
        if not isinstance(rec, dict):
            raise TypeError("not a JSON object")
        kind = rec.get("k")
        if kind == "cpu":
            self.cpu(rec)
        elif kind == "res":
            self.res(rec)
        elif kind == "start":
            t0 = _float(rec["t0"])
            if self.base_t0 is None:
                self.base_t0 = t0
            self.offset_s = t0 - self.base_t0
            self.cpu_clock = str(rec.get("cpu_clock", ""))
        elif kind == "watch":
            self.watched_s[_int(rec["pid"])] = self.t_s(rec)
            self.exits.pop(_int(rec["pid"]), None)
        elif kind == "exit":
            why: ExitReason = "zombie" if rec.get("why") == "zombie" else "gone"
            self.exits[_int(rec["pid"])] = (self.t_s(rec), why)
        elif kind == "problem":
            self.problems.append(str(rec.get("msg", "")))

    def t_s(self, rec: dict[str, Any]) -> float:
        return _float(rec["t_s"]) + self.offset_s

    def cpu(self, rec: dict[str, Any]) -> None:
        t_s = self.t_s(rec)
        pid = _int(rec["pid"])
        tids, cpu_us = rec["tids"], rec["cpu_us"]
        if not isinstance(tids, list) or not isinstance(cpu_us, list):
            raise TypeError("tids and cpu_us must be lists")
        # The same arrays Resources.add_cpu fills, without a ThreadCpu object per value:
        # 4x faster, and a 10-minute 40-thread profile holds ~500k values per process.
        thread_cpu = self.resources.thread_cpu
        for tid, us in zip(tids, cpu_us, strict=True):
            key = (pid, _int(tid))
            series = thread_cpu.get(key)
            if series is None:
                series = thread_cpu[key] = (array("d"), array("d"))
            times, cpu = series
            # cpu_ratio bisects the times: a wall clock stepped back must not unsort them.
            if times and t_s < times[-1]:
                continue
            times.append(t_s)
            cpu.append(_int(us) / 1e6)

    def res(self, rec: dict[str, Any]) -> None:
        t_s = self.t_s(rec)
        pid = _int(rec["pid"])
        fds, conns = _opt_int(rec.get("fds")), _opt_int(rec.get("conns"))
        self.resources.points.append(
            ResourcePoint(
                t_s=t_s,
                pid=pid,
                rss_bytes=_int(rec["rss_bytes"]),
                fds=UNKNOWN if fds is None else fds,
                threads=_int(rec["threads"]),
                connections=UNKNOWN if conns is None else conns,
            )
        )
        if conns is not None:
            b = self.conns.setdefault(pid, _ConnBuilder())
            b.t_s.append(t_s)
            b.total.append(conns)
            b.by_remote.append(_ports(rec.get("by_remote_port", {})))
            b.by_listen.append(_ports(rec.get("by_listen_port", {})))

    def result(self) -> ResourceLog:
        connections = {
            pid: ConnectionSeries(
                pid, tuple(b.t_s), tuple(b.total), tuple(b.by_remote), tuple(b.by_listen)
            )
            for pid, b in self.conns.items()
        }
        self.resources.connections = connections
        return ResourceLog(
            resources=self.resources,
            connections=connections,
            watched_s=self.watched_s,
            exits=self.exits,
            cpu_clock=self.cpu_clock,
            problems=tuple(self.problems),
        )


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _opt_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _ports(value: Any) -> dict[int, int]:
    if not isinstance(value, dict):
        raise TypeError("port counts must be an object")
    return {int(port): _int(n) for port, n in value.items()}


def load_resource_log(path: Path) -> ResourceLog:
    """Read resources.jsonl; a line cut by a crash (the last one, or the last before a later
    run's start record) is skipped and noted in `problems`, anything else unreadable raises
    CorruptProfileError."""
    loader = _Loader()
    cut: tuple[int, str] | None = None  # (line number, error) of an unparseable line
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise CorruptProfileError(f"{path} is unreadable: {exc.strerror}") from exc
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                if cut is not None:
                    raise _corrupt(path, *cut) from exc
                cut = (lineno, f"not JSON ({exc})")
                continue
            if cut is not None:
                if not (isinstance(rec, dict) and rec.get("k") == "start"):
                    raise _corrupt(path, *cut)
                loader.problems.append(f"{path.name} line {cut[0]}: cut by a crash, skipped")
                cut = None
            try:
                loader.record(rec)
            except (KeyError, TypeError, ValueError) as exc:
                kind = rec.get("k") if isinstance(rec, dict) else None
                raise _corrupt(path, lineno, f"bad {kind!r} record ({exc!r})") from exc
    if cut is not None:
        loader.problems.append(f"{path.name} line {cut[0]}: cut by a crash, skipped")
    return loader.result()


def _corrupt(path: Path, lineno: int, what: str) -> CorruptProfileError:
    return CorruptProfileError(
        f"{path} line {lineno} is unreadable: {what}; delete the file to report without "
        "resource data"
    )


def load_resources(path: Path) -> Resources:
    """The Profile's share of resources.jsonl (see `load_resource_log` for the rest)."""
    return load_resource_log(path).resources


# --------------------------------------------------------------------------- analysis helpers


def cpu_ratio(
    resources: Resources,
    pid: int,
    tid: int,
    start_s: float,
    end_s: float,
    *,
    max_gap_s: float = 1.0,
) -> float | None:
    """Share of [start_s, end_s] the thread spent on CPU, 0..1, interpolated between polls.

    None when polls do not cover the window, or the polls around one of its ends are more
    than `max_gap_s` apart (a stalled monitor: the interpolation would say nothing).
    O(log n): used once per blocking episode.
    """
    if end_s <= start_s:
        raise ValueError(f"empty window [{start_s}, {end_s}]")
    series = resources.thread_cpu.get((pid, tid))
    if series is None:
        return None
    times, cpu = series
    start_cpu = _cpu_at(times, cpu, start_s, max_gap_s)
    end_cpu = _cpu_at(times, cpu, end_s, max_gap_s)
    if start_cpu is None or end_cpu is None:
        return None
    ratio = (end_cpu - start_cpu) / (end_s - start_s)
    # A thread cannot run longer than wall time, but each thread is read a little after its
    # poll's timestamp: clamp that jitter away.
    return min(1.0, max(0.0, ratio))


def _cpu_at(times: array[float], cpu: array[float], t: float, max_gap_s: float) -> float | None:
    i = bisect_left(times, t)
    if i < len(times) and times[i] == t:
        return cpu[i]
    if i == 0 or i == len(times):
        return None
    t_lo, t_hi = times[i - 1], times[i]
    if t_hi - t_lo > max_gap_s:
        return None
    return cpu[i - 1] + (cpu[i] - cpu[i - 1]) * (t - t_lo) / (t_hi - t_lo)


@dataclass(frozen=True, slots=True)
class Growth:
    """Least-squares line through one metric of one process over the profile."""

    metric: Metric
    pid: int
    points: int
    duration_s: float
    start_value: float  # fitted value at the first poll
    end_value: float  # fitted value at the last poll
    slope_per_min: float
    relative: float  # (end_value - start_value) / max(start_value, 1)
    r2: float  # 1.0 for a constant series (the line explains it exactly)
    steady: bool  # grows steadily: enough points, positive slope, r2 and relative high enough


def growth(
    resources: Resources,
    metric: Metric,
    pid: int,
    *,
    min_points: int = 5,
    min_r2: float = 0.8,
    min_relative: float = 0.1,
) -> Growth:
    """How `metric` of `pid` grew, for leak findings; unreadable polls (-1) are left out.

    `relative` divides by at least 1 so counts growing from zero (connections) stay finite.
    """
    pts = [
        (p.t_s, float(getattr(p, metric)))
        for p in resources.points
        if p.pid == pid and getattr(p, metric) != UNKNOWN
    ]
    n = len(pts)
    if n < 2 or pts[-1][0] == pts[0][0]:
        value = pts[0][1] if pts else 0.0
        return Growth(metric, pid, n, 0.0, value, value, 0.0, 0.0, 0.0, False)
    # Centre both axes: t_s in the thousands and bytes in the billions lose precision otherwise.
    mean_t = sum(t for t, _ in pts) / n
    mean_v = sum(v for _, v in pts) / n
    sxx = sum((t - mean_t) ** 2 for t, _ in pts)
    sxy = sum((t - mean_t) * (v - mean_v) for t, v in pts)
    syy = sum((v - mean_v) ** 2 for _, v in pts)
    slope = sxy / sxx if sxx else 0.0
    t_first = min(t for t, _ in pts)
    t_last = max(t for t, _ in pts)
    start_value = mean_v + slope * (t_first - mean_t)
    end_value = mean_v + slope * (t_last - mean_t)
    residual = sum((v - (mean_v + slope * (t - mean_t))) ** 2 for t, v in pts)
    r2 = 1.0 - residual / syy if syy else 1.0
    relative = (end_value - start_value) / max(start_value, 1.0)
    steady = n >= min_points and slope > 0 and r2 >= min_r2 and relative >= min_relative
    return Growth(
        metric=metric,
        pid=pid,
        points=n,
        duration_s=t_last - t_first,
        start_value=start_value,
        end_value=end_value,
        slope_per_min=slope * 60.0,
        relative=relative,
        r2=r2,
        steady=steady,
    )
