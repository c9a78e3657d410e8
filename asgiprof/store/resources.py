"""OUT/resources.jsonl: the records record/resources.py's monitor appends, and their loader.

Record format: one compact JSON object a line, `k` names the kind. `t_s` is seconds since
`t0`, the unix time given to the monitor (time.time(), like the sampler):

    {"k":"start","t0":1700000000.25,"cpu_clock":"schedstat","cpu_interval_s":0.05,
     "resource_interval_s":1.0}                            one per monitor run (appended runs
                                                            are put on the first run's t0)
    {"k":"watch","t_s":0.0,"pid":123}                       pid watched from now on
    {"k":"cpu","t_s":0.05,"pid":123,"tids":[123,130],"cpu_us":[51230,10]}
                                                            cumulative user+system CPU
                                                            microseconds of each OS thread
    {"k":"sched","pid":123,"tid":123,"t_s":[0.01,0.02],"run_us":[51000,51230],
     "wait_us":[300,4300]}                                   the main thread's scheduler
                                                            times, cumulative, polled every
                                                            `sched_interval_s` (schedstat
                                                            only): on a CPU and waiting for
                                                            one, apart
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
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from io import FileIO
from pathlib import Path
from typing import Any, Literal, TypedDict

import orjson

from asgiprof.errors import CorruptProfileError
from asgiprof.model import UNKNOWN, ConnectionSeries, ResourcePoint, Resources

ExitReason = Literal["gone", "zombie"]
Record = dict[str, Any]

_DUMPS_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS


# --------------------------------------------------------------------------- records


class ResReading(TypedDict):
    """One process's resources at one poll: the body of a `res` record."""

    rss_bytes: int
    fds: int | None
    threads: int
    conns: int | None
    by_remote_port: dict[int, int]
    by_listen_port: dict[int, int]


def start_record(
    t0: float, cpu_clock: str, cpu_interval_s: float, resource_interval_s: float
) -> Record:
    return {
        "k": "start",
        "t0": t0,
        "cpu_clock": cpu_clock,
        "cpu_interval_s": cpu_interval_s,
        "resource_interval_s": resource_interval_s,
    }


def watch_record(t_s: float, pid: int) -> Record:
    return {"k": "watch", "t_s": t_s, "pid": pid}


def exit_record(t_s: float, pid: int, why: ExitReason) -> Record:
    return {"k": "exit", "t_s": t_s, "pid": pid, "why": why}


def problem_record(t_s: float, pid: int | None, msg: str) -> Record:
    return {"k": "problem", "t_s": t_s, "pid": pid, "msg": msg}


def cpu_record(t_s: float, pid: int, tids: list[int], cpu_us: list[int]) -> Record:
    return {"k": "cpu", "t_s": t_s, "pid": pid, "tids": tids, "cpu_us": cpu_us}


def sched_record(
    pid: int, tid: int, t_s: list[float], run_us: list[int], wait_us: list[int]
) -> Record:
    return {"k": "sched", "pid": pid, "tid": tid, "t_s": t_s, "run_us": run_us, "wait_us": wait_us}


def res_record(t_s: float, pid: int, reading: ResReading) -> Record:
    return {"k": "res", "t_s": t_s, "pid": pid, **reading}


class ResourceWriter:
    """Appends records to resources.jsonl, each batch in one write(2) (unbuffered), so a
    crash loses at most the batch under way."""

    def __init__(self, path: Path) -> None:
        """Open `path` for appending (OSError reaches the caller)."""
        self.path = path
        out = FileIO(path, "ab")
        try:
            if out.tell() > 0 and not _ends_with_newline(path):
                # An earlier run died mid-line: end that line so ours start on a fresh one.
                out.write(b"\n")
        except OSError:
            out.close()
            raise
        self._out = out

    def write(self, records: list[Record]) -> None:
        if not records:
            return
        data = b"".join(orjson.dumps(r, option=_DUMPS_OPTIONS) for r in records)
        view = memoryview(data)
        while view:
            n = self._out.write(view)
            if not n:
                raise OSError(f"writing {self.path} made no progress")
            view = view[n:]

    def close(self) -> None:
        self._out.close()


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
        elif kind == "sched":
            self.sched(rec)
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

    def sched(self, rec: dict[str, Any]) -> None:
        times, run_us, wait_us = rec["t_s"], rec["run_us"], rec["wait_us"]
        if not all(isinstance(x, list) for x in (times, run_us, wait_us)):
            raise TypeError("t_s, run_us and wait_us must be lists")
        key = (_int(rec["pid"]), _int(rec["tid"]))
        series = self.resources.sched.get(key)
        if series is None:
            series = self.resources.sched[key] = (array("d"), array("d"), array("d"))
        at, run, wait = series
        for t, r, w in zip(times, run_us, wait_us, strict=True):
            t_s = _float(t) + self.offset_s
            if at and t_s < at[-1]:  # interpolation bisects the times: keep them sorted
                continue
            at.append(t_s)
            run.append(_int(r) / 1e6)
            wait.append(_int(w) / 1e6)

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
