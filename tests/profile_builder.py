"""Build Profiles by hand for unit tests: stacks as frame lists, runs with exact times."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from asgiprof.analyze.result import AnalysisParams
from asgiprof.model import (
    Frame,
    Interner,
    Profile,
    Route,
    RouteTable,
    SamplingInfo,
    TargetInfo,
    ThreadInfo,
    ThreadTimeline,
)

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


class Builder:
    def __init__(self, rate_hz: int = 100, routes: Sequence[Route] = ()) -> None:
        self.rate_hz = rate_hz
        self.profile = Profile(
            target=TargetInfo(pids=(1,), command=("uvicorn", "main:app"), server="uvicorn"),
            sampling=SamplingInfo(rate_hz, 0.0, 0.0, 0, 0),
            routes=RouteTable(tuple(routes), "app") if routes else RouteTable((), "none", "test"),
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

    def build(self) -> Profile:
        end = max((c[0] for _, c in self._threads.values()), default=0.0)
        total = sum(tl.total_samples for tl in self.profile.threads)
        pids = tuple(sorted({tl.thread.pid for tl in self.profile.threads}))
        if pids and pids != self.profile.target.pids:
            self.profile.target = replace(self.profile.target, pids=pids)
        self.profile.sampling = SamplingInfo(self.rate_hz, 0.0, end, total, 0)
        self.profile.self_check()
        return self.profile
