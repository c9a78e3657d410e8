"""Build Profiles by hand for unit tests: stacks as frame lists, runs with exact times."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace

from asgiprof.analyze.result import AnalysisParams
from asgiprof.model import (
    ConnectionSeries,
    Frame,
    Interner,
    Profile,
    RequestCounts,
    ResourcePoint,
    Route,
    RouteTable,
    SamplingInfo,
    TargetInfo,
    ThreadCpu,
    ThreadInfo,
    ThreadTimeline,
)

MIB = 1024 * 1024

STDLIB = "/usr/lib/python3.11"
SITE = "/venv/lib/python3.11/site-packages"
APP = "/srv/app/main.py"

RUNNER = Frame("Runner.run", f"{STDLIB}/asyncio/runners.py", 118)
RUN_FOREVER = Frame("BaseEventLoop.run_forever", f"{STDLIB}/asyncio/base_events.py", 607)
RUN_ONCE = Frame("BaseEventLoop._run_once", f"{STDLIB}/asyncio/base_events.py", 1922)
RUN_ONCE_SELECT = Frame("BaseEventLoop._run_once", f"{STDLIB}/asyncio/base_events.py", 1884)
SELECT = Frame("EpollSelector.select", f"{STDLIB}/selectors.py", 468)
HANDLE = Frame("Handle._run", f"{STDLIB}/asyncio/events.py", 80)
RUN_ASGI = Frame("RequestResponseCycle.run_asgi", f"{SITE}/uvicorn/protocols/http/h11_impl.py", 411)
RUN_ENDPOINT = Frame("run_endpoint_function", f"{SITE}/fastapi/routing.py", 381)
WORKER = Frame("WorkerThread.run", f"{SITE}/anyio/_backends/_asyncio.py", 967)
QUEUE_GET = Frame("Queue.get", f"{STDLIB}/queue.py", 171)

LOOP_BASE = (
    RUNNER,
    Frame("BaseEventLoop.run_until_complete", f"{STDLIB}/asyncio/base_events.py", 640),
    RUN_FOREVER,
)
IDLE = (*LOOP_BASE, RUN_ONCE_SELECT, SELECT)


# Hand-built profiles often block once per line, a few samples long: rank even a single
# short episode, and draw findings from a single sample.
ONE_EPISODE_IS_ENOUGH = AnalysisParams(one_off_factor=0, finding_min_samples=1)


def busy(*frames: Frame) -> tuple[Frame, ...]:
    return (*LOOP_BASE, RUN_ONCE, HANDLE, RUN_ASGI, RUN_ENDPOINT, *frames)


def request(*frames: Frame) -> tuple[Frame, ...]:
    """A loop stack running a request: loop, uvicorn's run_asgi, then `frames`."""
    return (*LOOP_BASE, RUN_ONCE, HANDLE, RUN_ASGI, *frames)


def source_reader(source: Mapping[tuple[str, int], str]) -> Callable[[str, int], str | None]:
    """A `read_line` that serves the lines of a test's hand-written source table."""

    def read_line(file: str, line: int) -> str | None:
        return source.get((file, line))

    return read_line


def route_table(routes: Sequence[Route]) -> RouteTable:
    """The table as the route probe reads it from an app; no routes: a table not read."""
    return RouteTable(tuple(routes), "app") if routes else RouteTable((), "none", "test")


class Builder:
    def __init__(
        self,
        rate_hz: int = 100,
        routes: Sequence[Route] = (),
        target: TargetInfo | None = None,
        started_at: float = 0.0,
    ) -> None:
        self.rate_hz = rate_hz
        self.started_at = started_at
        self.profile = Profile(
            target=target
            or TargetInfo(pids=(1,), command=("uvicorn", "main:app"), server="uvicorn"),
            sampling=SamplingInfo(rate_hz, started_at, 0.0, 0, 0),
            routes=route_table(routes),
        )
        self.interner = Interner(self.profile.frames, self.profile.stacks)
        self._threads: dict[int, tuple[ThreadTimeline, list[float]]] = {}

    def stack(self, frames: Sequence[Frame]) -> int:
        return self.interner.stack(tuple(self.interner.frame(f) for f in frames))

    def add(
        self, tid: int, frames: Sequence[Frame], samples: int, name: str = "", pid: int = 1
    ) -> None:
        """Append `samples` consecutive samples of this stack to thread `tid` (of `pid`)."""
        if tid not in self._threads:
            tl = ThreadTimeline(ThreadInfo(pid, tid, name or f"t{tid}"))
            self.profile.threads.append(tl)
            self._threads[tid] = (tl, [0.0])
        tl, clock = self._threads[tid]
        period = 1.0 / self.rate_hz
        tl.append(clock[0], samples * period, self.stack(frames), samples)
        clock[0] += samples * period

    def clock(self, tid: int) -> float:
        """Where thread `tid`'s next sample starts, in seconds (0 for a thread not seen)."""
        return self._threads[tid][1][0] if tid in self._threads else 0.0

    def polls(
        self,
        pid: int,
        t_s: Sequence[float],
        rss_mib: Sequence[float],
        fds: Sequence[int],
        threads: Sequence[int],
        ports: Mapping[int, Sequence[int]],
        unreadable: Collection[int] = (),
    ) -> None:
        """The resource monitor's polls of `pid`: connections are the sum over the remote
        `ports`, -1 at the poll indexes in `unreadable`, which the connection log leaves out
        (as the monitor does)."""
        readable = [i for i in range(len(t_s)) if i not in unreadable]
        for i, t in enumerate(t_s):
            conns = -1 if i in unreadable else sum(counts[i] for counts in ports.values())
            self.profile.resources.points.append(
                ResourcePoint(t, pid, int(rss_mib[i] * MIB), fds[i], threads[i], conns)
            )
        self.profile.resources.connections[pid] = ConnectionSeries(
            pid,
            tuple(t_s[i] for i in readable),
            tuple(sum(counts[i] for counts in ports.values()) for i in readable),
            tuple({port: counts[i] for port, counts in ports.items()} for i in readable),
            tuple({} for _ in readable),
        )

    def thread_cpu(self, pid: int, tid: int, points: Sequence[tuple[float, float]]) -> None:
        """CPU polls of one thread: (time, cumulative CPU seconds)."""
        for t_s, cpu_s in points:
            self.profile.resources.add_cpu(ThreadCpu(t_s, pid, tid, cpu_s))

    def access_log(self, by_route: Mapping[str, int], unmatched: int = 0) -> None:
        """Requests per route as `run` reads them from the server's access log."""
        ranked = tuple(sorted(by_route.items(), key=lambda kv: (-kv[1], kv[0])))
        total = sum(by_route.values()) + unmatched
        self.profile.requests = RequestCounts("access-log", ranked, total, unmatched)

    def build(self) -> Profile:
        end = max((c[0] for _, c in self._threads.values()), default=0.0)
        total = sum(tl.total_samples for tl in self.profile.threads)
        pids = tuple(sorted({tl.thread.pid for tl in self.profile.threads}))
        # The target's pids: those of the threads, unless it lists them all (a master
        # process that was not sampled, say).
        if pids and not set(pids) <= set(self.profile.target.pids):
            self.profile.target = replace(self.profile.target, pids=pids)
        self.profile.sampling = SamplingInfo(self.rate_hz, self.started_at, end, total, 0)
        self.profile.self_check()
        return self.profile
