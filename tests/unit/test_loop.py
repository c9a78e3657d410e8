"""Event-loop threads and idle/busy samples on the stack shapes real servers show.

Every shape here was recorded with `py-spy record --idle --threads --subprocesses` on the
server, loop and CPython named (frames copied from the recordings, paths shortened): the
asyncio loop waits in `selectors.py`; uvloop and granian's loops run in C, so their idle
samples end at the Python frame that called into the loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from asgiprof.analyze import analyze
from asgiprof.analyze.loop import STATE_BUSY, STATE_IDLE, STATE_OFF, LoopClassifier
from asgiprof.analyze.processes import process_summaries
from asgiprof.analyze.roles import thread_roles
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

RATE_HZ = 100
APP = "/srv/app/main.py"
ENDPOINT = Frame("get_user", APP, 12)  # the planted `time.sleep(0.1)`
BACKGROUND = Frame("poll", APP, 40)  # a background loop's own `time.sleep`
ROUTES = (Route("GET", "/users/{user_id}", "main.get_user", APP, 10, 14, True),)


def lib(minor: str) -> str:
    return f"/usr/lib/python{minor}"


def site(minor: str) -> str:
    return f"/venv/lib/python{minor}/site-packages"


def f(function: str, file: str, line: int = 1) -> Frame:
    return Frame(function, file, line)


# --- the loops' stacks, root first ----------------------------------------------------------


def uvicorn_below(minor: str) -> tuple[Frame, ...]:
    """`python -m uvicorn` down to Server.run (3.9/3.10 frames carry no class name)."""
    cls = "" if minor in ("3.9", "3.10") else "Server."
    return (
        f("_run_module_as_main", "<frozen runpy>", 198),
        f("main", f"{site(minor)}/uvicorn/main.py", 448),
        f(f"{cls}run", f"{site(minor)}/uvicorn/server.py", 86),
    )


def asyncio_loop(minor: str, entry: Sequence[Frame]) -> tuple[tuple[Frame, ...], tuple[Frame, ...]]:
    """(idle stack, busy prefix) of the asyncio loop run by `entry`."""
    cls = "" if minor in ("3.9", "3.10") else "BaseEventLoop."
    base = f"{lib(minor)}/asyncio/base_events.py"
    loop = (
        *entry,
        f(f"{cls}run_until_complete", base, 640),
        f(f"{cls}run_forever", base, 607),
    )
    select = f("select" if cls == "" else "EpollSelector.select", f"{lib(minor)}/selectors.py", 468)
    handle = f("_run" if cls == "" else "Handle._run", f"{lib(minor)}/asyncio/events.py", 80)
    return (
        (*loop, f(f"{cls}_run_once", base, 1884), select),
        (*loop, f(f"{cls}_run_once", base, 1922), handle),
    )


def c_loop(entry: Sequence[Frame]) -> tuple[tuple[Frame, ...], tuple[Frame, ...]]:
    """(idle stack, busy prefix) of a loop written in C: nothing above its caller when idle."""
    return tuple(entry), tuple(entry)


def runner(minor: str) -> Frame:
    return f("Runner.run", f"{lib(minor)}/asyncio/runners.py", 118)


def uvicorn_compat(minor: str) -> Frame:
    return f("asyncio_run", f"{site(minor)}/uvicorn/_compat.py", 30 if minor == "3.11" else 60)


def run_asgi(minor: str) -> tuple[Frame, ...]:
    """What uvicorn's request task runs, down to the endpoint FastAPI calls."""
    return (
        f("RequestResponseCycle.run_asgi", f"{site(minor)}/uvicorn/protocols/http/h11_impl.py"),
        f("run_endpoint_function", f"{site(minor)}/fastapi/routing.py", 381),
    )


@dataclass(frozen=True, slots=True)
class Shape:
    idle: tuple[Frame, ...]
    busy_prefix: tuple[Frame, ...]  # root ... the loop's last frame before the callback
    callback: tuple[Frame, ...]  # the server's frames between the loop and the endpoint

    def busy(self, *frames: Frame) -> tuple[Frame, ...]:
        return (*self.busy_prefix, *self.callback, *frames)


def _shape(loop: tuple[tuple[Frame, ...], tuple[Frame, ...]], callback: Sequence[Frame]) -> Shape:
    return Shape(loop[0], loop[1], tuple(callback))


def _hypercorn(minor: str, worker: str) -> tuple[Frame, ...]:
    return (
        f("spawn_main", f"{lib(minor)}/multiprocessing/spawn.py", 122),
        f(worker, f"{site(minor)}/hypercorn/asyncio/run.py", 195),
        f("_run", f"{site(minor)}/hypercorn/asyncio/run.py", 233),
    )


HYPERCORN_CALLBACK = (
    f("_handle", f"{site('3.11')}/hypercorn/asyncio/task_group.py", 28),
    f("ASGIWrapper.__call__", f"{site('3.11')}/hypercorn/app_wrappers.py", 34),
)
GRANIAN_WORKER = (
    f("BaseProcess._bootstrap", f"{lib('3.11')}/multiprocessing/process.py", 314),
    f("WorkerProcess.wrap_target.<locals>.wrapped", f"{site('3.11')}/granian/server/mp.py", 93),
    f("MPServer._spawn_asgi_lifespan_worker", f"{site('3.11')}/granian/server/mp.py", 249),
)
GRANIAN_CALLBACK = (
    f("_future_watcher_wrapper.<locals>.future_watcher", f"{site('3.11')}/granian/_futures.py"),
)
GUNICORN_WORKER = (
    f("Arbiter.spawn_worker", f"{site('3.11')}/gunicorn/arbiter.py", 752),
    f("Worker.init_process", f"{site('3.11')}/gunicorn/workers/base.py", 146),
    f("UvicornWorker.run", f"{site('3.11')}/uvicorn/workers.py", 104),
    uvicorn_compat("3.11"),
    runner("3.11"),
)

SHAPES: dict[str, Shape] = {
    # uvicorn --loop asyncio on every CPython: selectors.py is the idle frame
    **{
        f"uvicorn-asyncio-{m}": _shape(
            asyncio_loop(
                m,
                (*uvicorn_below(m), uvicorn_compat(m))
                if m in ("3.9", "3.10")
                else (*uvicorn_below(m), runner(m)),
            ),
            run_asgi(m),
        )
        for m in ("3.9", "3.10", "3.11", "3.12", "3.13")
    },
    # uvloop: 3.9/3.10 uvicorn calls loop.run_until_complete from its own asyncio_run;
    # 3.11 through asyncio.Runner (asyncio_run below it), 3.12+ asyncio.run's Runner
    "uvicorn-uvloop-3.9": _shape(
        c_loop((*uvicorn_below("3.9"), uvicorn_compat("3.9"))), run_asgi("3.9")
    ),
    "uvicorn-uvloop-3.10": _shape(
        c_loop((*uvicorn_below("3.10"), uvicorn_compat("3.10"))), run_asgi("3.10")
    ),
    "uvicorn-uvloop-3.11": _shape(
        c_loop((*uvicorn_below("3.11"), uvicorn_compat("3.11"), runner("3.11"))), run_asgi("3.11")
    ),
    **{
        f"uvicorn-uvloop-{m}": _shape(c_loop((*uvicorn_below(m), runner(m))), run_asgi(m))
        for m in ("3.12", "3.13")
    },
    # uvloop.run() on 3.10 (its own run_until_complete call)
    "uvloop-run-3.10": _shape(
        c_loop(
            (
                f("<module>", APP.replace("main", "serve"), 5),
                f("run", f"{site('3.10')}/uvloop/__init__.py", 82),
            )
        ),
        run_asgi("3.10"),
    ),
    "gunicorn-uvicornworker-uvloop-3.11": _shape(c_loop(GUNICORN_WORKER), run_asgi("3.11")),
    "hypercorn-asyncio-3.11": _shape(
        asyncio_loop("3.11", (*_hypercorn("3.11", "asyncio_worker"), runner("3.11"))),
        HYPERCORN_CALLBACK,
    ),
    # hypercorn on 3.10: the taskgroup backport's Runner calls uvloop
    "hypercorn-uvloop-3.10": _shape(
        c_loop(
            (
                *_hypercorn("3.10", "uvloop_worker"),
                f("run", f"{site('3.10')}/taskgroup/runners.py", 153),
            )
        ),
        HYPERCORN_CALLBACK,
    ),
    "granian-uvloop-3.11": _shape(c_loop(GRANIAN_WORKER), GRANIAN_CALLBACK),
    "granian-asyncio-3.11": _shape(asyncio_loop("3.11", GRANIAN_WORKER), GRANIAN_CALLBACK),
}


def _windows(frame: Frame) -> Frame:
    return Frame(frame.function, "C:" + frame.file.replace("/", "\\"), frame.line)


def _on_windows(shape: Shape) -> Shape:
    return Shape(
        tuple(map(_windows, shape.idle)),
        tuple(map(_windows, shape.busy_prefix)),
        tuple(map(_windows, shape.callback)),
    )


SHAPES["uvicorn-asyncio-3.11-windows-paths"] = _on_windows(SHAPES["uvicorn-asyncio-3.11"])
SHAPES["uvicorn-uvloop-3.9-windows-paths"] = _on_windows(SHAPES["uvicorn-uvloop-3.9"])


# --- hand-built profiles with processes and threads ---------------------------------------------


class Threads:
    """A Profile of (pid, tid) threads, each a sequence of runs of 10 ms samples."""

    def __init__(self, routes: Sequence[Route] = ROUTES) -> None:
        self.profile = Profile(
            target=TargetInfo(pids=(100,), command=("uvicorn", "main:app"), server="uvicorn"),
            sampling=SamplingInfo(RATE_HZ, 0.0, 0.0, 0, 0),
            routes=RouteTable(tuple(routes), "app"),
        )
        self._interner = Interner(self.profile.frames, self.profile.stacks)
        self._timelines: dict[tuple[int, int], ThreadTimeline] = {}
        self._clock: dict[tuple[int, int], float] = {}

    def add(self, pid: int, tid: int, frames: Sequence[Frame], samples: int) -> Threads:
        key = (pid, tid)
        if key not in self._timelines:
            self._timelines[key] = ThreadTimeline(ThreadInfo(pid, tid, f"t{tid}"))
            self.profile.threads.append(self._timelines[key])
            self._clock[key] = 0.0
        sid = self._interner.stack(tuple(self._interner.frame(fr) for fr in frames))
        period = 1.0 / RATE_HZ
        self._timelines[key].append(self._clock[key], samples * period, sid, samples)
        self._clock[key] += samples * period
        return self

    def build(self) -> Profile:
        end = max(self._clock.values(), default=0.0)
        total = sum(tl.total_samples for tl in self.profile.threads)
        self.profile.sampling = SamplingInfo(RATE_HZ, 0.0, end, total, 0)
        self.profile.self_check()
        return self.profile


def serve(threads: Threads, pid: int, tid: int, shape: Shape, blocks: int = 3) -> Threads:
    """Idle 20 samples, then block 10 samples (100 ms) in the endpoint, `blocks` times."""
    for _ in range(blocks):
        threads.add(pid, tid, shape.idle, 20)
        threads.add(pid, tid, shape.busy(ENDPOINT), 10)
    return threads.add(pid, tid, shape.idle, 5)


def _state(profile: Profile, frames: Sequence[Frame]) -> tuple[int, Frame | None]:
    stack = tuple(profile.frames.index(fr) for fr in frames)
    sample = LoopClassifier(profile).classify(profile.stacks.index(stack))
    return sample.state, profile.frames[sample.callback] if sample.callback >= 0 else None


# --- idle and busy on every shape ---------------------------------------------------------------


@pytest.mark.parametrize("name", list(SHAPES))
def test_idle_and_busy_samples_on_every_recorded_shape(name: str) -> None:
    shape = SHAPES[name]
    profile = serve(Threads(), 100, 100, shape, blocks=1).build()
    # THEN the wait is idle, and the endpoint is busy in the server's callback
    assert _state(profile, shape.idle) == (STATE_IDLE, None)
    assert _state(profile, shape.busy(ENDPOINT)) == (STATE_BUSY, shape.callback[0])


@pytest.mark.parametrize("name", list(SHAPES))
def test_every_shape_gives_the_same_findings(name: str) -> None:
    # GIVEN the same load (3 blocks of 100 ms between 200 ms of idle) on each shape
    profile = serve(Threads(), 100, 100, SHAPES[name]).build()
    # WHEN analysed
    a = analyze(profile)
    # THEN the loop is found by its stacks, its time split exactly, the culprit named
    assert a.thread_roles == {(100, 100): "event-loop"}
    assert (a.loop.idle_ms, a.loop.busy_ms, a.loop.blocked_ms) == pytest.approx((650, 300, 300))
    assert a.loop.episodes == 3 and a.loop.longest_block_ms == pytest.approx(100)
    assert [(c.file, c.line, c.route, c.episodes) for c in a.culprits] == [
        (APP, 12, "GET /users/{user_id}", 3)
    ]
    assert a.culprits[0].blocked_ms == pytest.approx(300)


def test_frames_below_a_c_loop_are_not_a_loop() -> None:
    # GIVEN the stack of a uvicorn process still importing the app, below any loop
    importing = (*uvicorn_below("3.11"), f("Config.load", f"{site('3.11')}/uvicorn/config.py"))
    profile = Threads().add(100, 100, importing, 5).build()
    # THEN it is no loop sample at all
    assert _state(profile, importing) == (STATE_OFF, None)
    assert thread_roles(profile, LoopClassifier(profile)) == {(100, 100): "other"}


# --- which thread is the event-loop thread --------------------------------------------------------

BACKGROUND_THREAD = (
    f("Thread._bootstrap", f"{lib('3.11')}/threading.py", 1002),
    f("Thread.run", f"{lib('3.11')}/threading.py", 982),
    f("run", f"{lib('3.11')}/asyncio/runners.py", 190),
    runner("3.11"),
)
BACKGROUND_LOOP = _shape(asyncio_loop("3.11", BACKGROUND_THREAD), ())
# `threading.Thread(target=loop.run_forever)`: the loop's own frames only
RUN_FOREVER_IDLE = (
    *BACKGROUND_THREAD[:2],
    f("BaseEventLoop.run_forever", f"{lib('3.11')}/asyncio/base_events.py", 607),
    f("BaseEventLoop._run_once", f"{lib('3.11')}/asyncio/base_events.py", 1884),
    f("EpollSelector.select", f"{lib('3.11')}/selectors.py", 468),
)
ANYIO_WORKER = (
    f("Thread._bootstrap", f"{lib('3.11')}/threading.py", 1002),
    f("WorkerThread.run", f"{site('3.11')}/anyio/_backends/_asyncio.py", 967),
    f("Queue.get", f"{lib('3.11')}/queue.py", 171),
)
TICKER = (
    f("Thread._bootstrap", f"{lib('3.11')}/threading.py", 1002),
    f("tick", APP, 50),
)
GUNICORN_CONTROL = (
    f("Thread._bootstrap", f"{lib('3.11')}/threading.py", 1002),
    f("ControlSocketServer._run_loop", f"{site('3.11')}/gunicorn/ctl/server.py", 197),
    f("run", f"{lib('3.11')}/asyncio/runners.py", 190),
    runner("3.11"),
)


def test_background_loops_in_threads_are_not_the_servers_loop() -> None:
    # GIVEN uvicorn's loop on the main thread, and threads the app started: a loop that
    # blocks itself for 30 ms at a time, an idle run_forever loop, a ticker, a pool worker
    shape = SHAPES["uvicorn-asyncio-3.11"]
    threads = serve(Threads(), 100, 100, shape)
    for _ in range(6):
        threads.add(100, 101, BACKGROUND_LOOP.idle, 2)
        threads.add(100, 101, BACKGROUND_LOOP.busy(BACKGROUND), 3)
    threads.add(100, 102, RUN_FOREVER_IDLE, 95)
    threads.add(100, 103, TICKER, 95)
    threads.add(100, 104, ANYIO_WORKER, 95)
    profile = threads.build()
    # WHEN analysed
    a = analyze(profile)
    # THEN only the server's loop is the event-loop thread; the background loop's sleep is
    # no culprit, and its time is not the server's
    assert a.thread_roles == {
        (100, 100): "event-loop",
        (100, 101): "other",
        (100, 102): "other",
        (100, 103): "other",
        (100, 104): "threadpool",
    }
    assert [c.line for c in a.culprits] == [12]
    assert (a.loop.idle_ms, a.loop.blocked_ms) == pytest.approx((650, 300))


def test_a_server_loop_caught_only_idle_is_still_found_by_its_server_frames() -> None:
    # GIVEN an idle hypercorn worker whose main thread waits, and a busy background loop
    hypercorn = SHAPES["hypercorn-uvloop-3.10"]
    threads = Threads().add(200, 200, hypercorn.idle, 50)
    threads.add(200, 201, BACKGROUND_LOOP.busy(BACKGROUND), 50)
    profile = threads.build()
    roles = thread_roles(profile, LoopClassifier(profile))
    assert roles == {(200, 200): "event-loop", (200, 201): "other"}


def test_gunicorn_masters_control_loop_is_not_an_event_loop() -> None:
    # GIVEN gunicorn's master (its control-socket loop in a thread) and two workers
    worker = SHAPES["gunicorn-uvicornworker-uvloop-3.11"]
    arbiter = (f("Arbiter.run", f"{site('3.11')}/gunicorn/arbiter.py", 257),)
    threads = Threads().add(10, 10, arbiter, 95).add(10, 11, GUNICORN_CONTROL, 95)
    serve(threads, 11, 11, worker)
    serve(threads, 12, 12, worker, blocks=2)
    a = analyze(threads.build())
    # THEN the workers' loops are the event-loop threads, merged...
    assert a.thread_roles == {
        (10, 10): "other",
        (10, 11): "other",
        (11, 11): "event-loop",
        (12, 12): "event-loop",
    }
    assert a.loop.threads == ((11, 11), (12, 12))
    assert a.loop.blocked_ms == pytest.approx(500) and a.loop.episodes == 5
    assert [(c.line, c.episodes) for c in a.culprits] == [(12, 5)]
    # ... and per process
    per = process_summaries(a)
    assert [(p.pid, p.event_loop_tids, p.episodes) for p in per] == [(11, (11,), 3), (12, (12,), 2)]
    assert [p.blocked_ms for p in per] == pytest.approx([300, 200])
    assert [p.idle_ms for p in per] == pytest.approx([650, 450])
    assert [p.utilization for p in per] == pytest.approx([300 / 950, 200 / 650])
    assert [[(c.rank, c.line, c.route, c.episodes) for c in p.culprits] for p in per] == [
        [(1, 12, "GET /users/{user_id}", 3)],
        [(1, 12, "GET /users/{user_id}", 2)],
    ]
    assert sum(p.culprits[0].blocked_ms for p in per) == pytest.approx(a.culprits[0].blocked_ms)


def test_an_unknown_servers_loop_is_the_main_threads() -> None:
    # GIVEN a script's own `asyncio.run(main())` on the main thread and a loop in a thread
    script = (f("<module>", "/srv/app/serve.py", 30), runner("3.11"))
    own = _shape(c_loop(script), (f("handle", "/srv/app/serve.py", 12),))
    threads = serve(Threads(), 300, 300, own)
    threads.add(300, 301, BACKGROUND_LOOP.idle, 95)
    profile = threads.build()
    # THEN the main thread's loop is the event loop
    roles = thread_roles(profile, LoopClassifier(profile))
    assert roles == {(300, 300): "event-loop", (300, 301): "other"}


def test_without_a_main_thread_loop_every_loop_thread_counts() -> None:
    # GIVEN an unknown server running two loops in threads of their own (py-spy may name
    # threads by pthread id, which is no process id either)
    threads = (
        Threads().add(400, 401, BACKGROUND_LOOP.idle, 10).add(400, 402, BACKGROUND_LOOP.idle, 10)
    )
    threads.add(400, 400, TICKER, 10)
    profile = threads.build()
    roles = thread_roles(profile, LoopClassifier(profile))
    assert roles == {(400, 401): "event-loop", (400, 402): "event-loop", (400, 400): "other"}


def test_several_server_loops_in_one_process_all_count() -> None:
    # GIVEN granian's thread workers (free-threaded builds): one loop per worker thread
    mt = tuple(
        Frame(fr.function, fr.file.replace("server/mp.py", "server/mt.py"), fr.line)
        for fr in GRANIAN_WORKER
    )
    shape = _shape(c_loop(mt), GRANIAN_CALLBACK)
    threads = serve(Threads(), 500, 501, shape)
    serve(threads, 500, 502, shape)
    threads.add(500, 500, TICKER, 95)
    profile = threads.build()
    roles = thread_roles(profile, LoopClassifier(profile))
    assert roles == {(500, 501): "event-loop", (500, 502): "event-loop", (500, 500): "other"}


def test_a_venv_folder_named_like_a_server_is_no_server() -> None:
    # GIVEN a main-thread loop and a loop thread whose app lives in /opt/uvicorn/ (a folder
    # named like the server, above site-packages): the main thread still wins
    venv = "/opt/uvicorn/venv/lib/python3.11"
    thread_loop = (
        f("Thread._bootstrap", f"{venv}/threading.py"),
        f("Runner.run", f"{venv}/asyncio/runners.py", 118),
    )
    main_loop = (f("<module>", "/srv/app/serve.py", 30), runner("3.11"))
    threads = Threads().add(600, 600, main_loop, 10).add(600, 601, thread_loop, 10)
    profile = threads.build()
    roles = thread_roles(profile, LoopClassifier(profile))
    assert roles == {(600, 600): "event-loop", (600, 601): "other"}
