"""The truth oracle of the busy test apps: what really ran on the event loop, measured in
the app itself (never in asgiprof, which stays out of process).

With `ASGIPROF_TRUTH=FILE` set, an app that calls `install(app)` at import and
`start_loop_timer()` in its lifespan writes JSON lines to FILE:

- `{"type": "start", ...}`: pid, loop class, how steps are timed.
- `{"type": "routes", "t0", "t1", "routes": {route: [loop_ms, steps, requests]},
  "other": [loop_ms, steps]}` every FLUSH_S: per route, the summed duration of the
  event-loop steps run for its requests that finished in [t0, t1) (unix seconds); `other`
  is steps outside any request (uvicorn's protocol callbacks, timers, startup);
  `loop_cpu_ms` and `loop_runq_ms` are the loop thread's CPU time and time waiting for a
  CPU in the interval (/proc schedstat): busy time beyond their sum was spent waiting for
  the GIL (or in blocking I/O).
- `{"type": "step", "t", "ms", "cpu_ms", "route", "what"}`: every single step of LONG_STEP_S
  or more, with the loop thread's CPU time in it (less than `ms` when other processes took
  the CPU, or the step waited on a lock or I/O), its route (None outside requests) and what
  it ran (coroutine and where it stopped).
- `{"type": "planted", "tag", "kind", "file", "line", "route", "t", "ms", "cpu_ms"}`: every
  planted blocking call, timed around the call by the app (`with planted(tag, kind):`),
  with the loop thread's CPU time over it (`time.thread_time`), so its kind is measured.

How steps are timed: on asyncio's pure-Python loop, `asyncio.events.Handle._run` is
wrapped (every callback: task steps and protocol callbacks). uvloop runs its handles in C,
so there a task factory wraps each task's coroutine in an object whose `send`/`throw` are
timed: task steps only (uvloop's protocol callbacks and timers are not seen).
A step belongs to the request whose `RequestTruth` is in its context: `TruthMiddleware`
(outermost app middleware) sets it, and names the route from `scope["route"].path` once
the app has answered.

The oracle must not change what asgiprof sees. Its frames that sit on the loop's stacks
(the wrapped `_run`, the coroutine wrapper, the middleware, the recorder) are compiled under
the file name of asyncio/events.py, and the two that run a step are named `_run`: asgiprof
reads them as the loop's own machinery (which they are), the stacks keep their usual shape,
and no oracle line can become a user-code culprit. Overhead: two clock reads and a context
lookup per step (plus two thread-CPU clock reads, ~1 us each); individual records only for
long steps, sums for the rest.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import atexit
import collections.abc
import contextvars
import linecache
import os
import sys
import threading
import time
from types import FrameType
from typing import Any

import orjson

ENV = "ASGIPROF_TRUTH"
LONG_STEP_S = 0.005
FLUSH_S = 0.5


class RequestTruth:
    """One request's loop time, counted by the steps that ran in its context."""

    __slots__ = ("long", "loop_s", "method", "planted", "route", "steps")

    def __init__(self, method: str) -> None:
        self.method = method
        self.route: str | None = None
        self.loop_s = 0.0
        self.steps = 0
        self.long: list[tuple[float, float, float, str]] = []
        self.planted: list[list[Any]] = []


REQUEST: contextvars.ContextVar[RequestTruth | None] = contextvars.ContextVar(
    "asgiprof_truth_request", default=None
)


class _State:
    """What the loop thread accumulates between flushes (swapped out by the flusher)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.routes: dict[str, list[float]] = {}
        self.other = [0.0, 0.0]
        self.long: list[tuple[float, float, float, str, str | None]] = []
        self.planted: list[list[Any]] = []
        # perf_counter -> unix time, fixed once so records of one run share a time base
        self.offset = time.time() - time.perf_counter()
        self.enabled = False


STATE = _State()


# The code that runs on the loop's stacks; compiled under asyncio/events.py (see above).
_HOT_SOURCE = """
def make_describe(task_type):
    def describe(what):
        # `coroutine qualname @ file:line where it is now` (for long steps only)
        owner = getattr(what, "__self__", None)
        if isinstance(owner, task_type):
            what = owner.get_coro()
        inner = getattr(what, "_coro", None)
        if inner is not None:
            what = inner
        name = getattr(what, "__qualname__", None) or type(what).__qualname__
        frame = getattr(what, "cr_frame", None)
        while frame is not None:
            awaited = getattr(what, "cr_await", None)
            if awaited is None or getattr(awaited, "cr_frame", None) is None:
                break
            what, frame = awaited, awaited.cr_frame
        if frame is not None:
            return f"{name} @ {frame.f_code.co_filename}:{frame.f_lineno}"
        return str(name)
    return describe


def make_step(request_var, long_s, state, describe):
    def step(t0, dur, cpu, context, what):
        req = context.get(request_var) if context is not None else request_var.get()
        if req is not None:
            req.loop_s += dur
            req.steps += 1
            if dur >= long_s:
                req.long.append((t0, dur, cpu, describe(what)))
        else:
            other = state.other
            other[0] += dur
            other[1] += 1
            if dur >= long_s:
                state.long.append((t0, dur, cpu, describe(what), None))
    return step


def make_handle_run(orig, clock, cpu_clock, step):
    def _run(self):
        c0 = cpu_clock()
        t0 = clock()
        orig(self)
        step(t0, clock() - t0, cpu_clock() - c0, self._context, self._callback)
    return _run


def make_timed_coro(base, clock, cpu_clock, step):
    def make_send():
        def _run(self, value):
            c0 = cpu_clock()
            t0 = clock()
            try:
                return self._coro.send(value)
            finally:
                step(t0, clock() - t0, cpu_clock() - c0, None, self._coro)
        return _run

    def make_throw():
        def _run(self, *args):
            c0 = cpu_clock()
            t0 = clock()
            try:
                return self._coro.throw(*args)
            finally:
                step(t0, clock() - t0, cpu_clock() - c0, None, self._coro)
        return _run

    class TimedCoro(base):
        __slots__ = ("_coro",)

        def __init__(self, coro):
            self._coro = coro

        send = make_send()
        throw = make_throw()

        def close(self):
            return self._coro.close()

        def __await__(self):
            return self._coro.__await__()

        def __getattr__(self, name):
            return getattr(self._coro, name)

    return TimedCoro


def make_middleware(request_var, request_type, finish):
    class TruthMiddleware:
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            req = request_type(scope.get("method", "GET"))
            token = request_var.set(req)
            try:
                await self.app(scope, receive, send)
            finally:
                route = scope.get("route")
                path = getattr(route, "path", None)
                req.route = f"{req.method} {path}" if path else None
                request_var.reset(token)
                finish(req)

    return TruthMiddleware


def make_finish(state):
    def finish(req):
        route = req.route or "unrouted"
        with state.lock:
            entry = state.routes.get(route)
            if entry is None:
                entry = state.routes[route] = [0.0, 0.0, 0.0]
            entry[0] += req.loop_s
            entry[1] += req.steps
            entry[2] += 1
            state.long.extend((*step, req.route) for step in req.long)
            state.planted.extend([*rec, req.route] for rec in req.planted)
    return finish


def make_runnable_clock(fallback):
    def runnable_s():
        # This thread's CPU time plus its time waiting for a CPU (Linux schedstat): a
        # CPU-bound call starved by other processes is runnable all along, not waiting.
        try:
            with open("/proc/thread-self/schedstat", "rb") as f:
                cpu_ns, wait_ns = f.read().split()[:2]
            return (int(cpu_ns) + int(wait_ns)) / 1e9
        except (OSError, ValueError):
            return fallback()
    return runnable_s


def make_planted(request_var, clock, cpu_clock, runnable_clock, state, where):
    class planted:
        __slots__ = ("tag", "kind", "t0", "c0", "r0")

        def __init__(self, tag, kind):
            self.tag = tag
            self.kind = kind

        def __enter__(self):
            self.r0 = runnable_clock()
            self.c0 = cpu_clock()
            self.t0 = clock()
            return self

        def __exit__(self, *exc):
            dur = clock() - self.t0
            cpu = cpu_clock() - self.c0
            if not state.enabled:
                return False
            runnable = runnable_clock() - self.r0
            file, line = where(self.tag)
            rec = [self.tag, self.kind, file, line, self.t0, dur, cpu, runnable]
            req = request_var.get()
            if req is not None:
                req.planted.append(rec)
            else:
                with state.lock:
                    state.planted.append([*rec, None])
            return False

    return planted
"""

_hot: dict[str, Any] = {}
exec(compile(_HOT_SOURCE, asyncio.events.__file__, "exec"), _hot)

_step = _hot["make_step"](REQUEST, LONG_STEP_S, STATE, _hot["make_describe"](asyncio.Task))
_where_cache: dict[str, tuple[str, int]] = {}


def _where(tag: str) -> tuple[str, int]:
    """File and line of the `# planted: TAG` mark in the caller of the `with` block."""
    hit = _where_cache.get(tag)
    if hit is not None:
        return hit
    frame: FrameType | None = sys._getframe(2)  # __exit__ <- the app's function
    file, line = "?", 0
    if frame is not None:
        file = frame.f_code.co_filename
        mark = f"# planted: {tag}"
        for number, text in enumerate(linecache.getlines(file), start=1):
            if text.rstrip().endswith(mark):
                line = number
                break
    _where_cache[tag] = (file, line)
    return file, line


_finish = _hot["make_finish"](STATE)


TruthMiddleware: Any = _hot["make_middleware"](REQUEST, RequestTruth, _finish)
_runnable_s = _hot["make_runnable_clock"](time.thread_time)


planted: Any = _hot["make_planted"](
    REQUEST, time.perf_counter, time.thread_time, _runnable_s, STATE, _where
)


class _Writer:
    """Appends buffered JSON lines every FLUSH_S from a daemon thread, and at shutdown."""

    def __init__(self, path: str, loop_tid: int) -> None:
        self.path = path
        self._stop = threading.Event()
        self._t0 = time.time()
        self._schedstat = f"/proc/self/task/{loop_tid}/schedstat"
        self._sched = self._read_sched()
        self._thread = threading.Thread(target=self._loop, name="truth-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()
        atexit.register(self.close)

    def _loop(self) -> None:
        while not self._stop.wait(FLUSH_S):
            self.flush()

    def write(self, records: list[dict[str, Any]]) -> None:
        with open(self.path, "ab") as f:
            f.write(b"".join(orjson.dumps(r) + b"\n" for r in records))

    def _read_sched(self) -> tuple[float, float]:
        """The loop thread's (CPU ms, ms waiting for a CPU) so far (Linux schedstat)."""
        try:
            with open(self._schedstat, "rb") as f:
                cpu_ns, wait_ns = f.read().split()[:2]
            return int(cpu_ns) / 1e6, int(wait_ns) / 1e6
        except (OSError, ValueError):
            return 0.0, 0.0

    def flush(self) -> None:
        offset = STATE.offset
        t1 = time.time()
        sched = self._read_sched()
        cpu_ms, runq_ms = sched[0] - self._sched[0], sched[1] - self._sched[1]
        self._sched = sched
        with STATE.lock:
            routes, STATE.routes = STATE.routes, {}
            other, STATE.other = STATE.other, [0.0, 0.0]
            long, STATE.long = STATE.long, []
            plants, STATE.planted = STATE.planted, []
        records: list[dict[str, Any]] = [
            {
                "type": "routes",
                "t0": self._t0,
                "t1": t1,
                "routes": {r: [v[0] * 1000, v[1], v[2]] for r, v in routes.items()},
                "other": [other[0] * 1000, other[1]],
                "loop_cpu_ms": cpu_ms,
                "loop_runq_ms": runq_ms,
            }
        ]
        self._t0 = t1
        records.extend(
            {
                "type": "step",
                "t": t0 + offset,
                "ms": dur * 1000,
                "cpu_ms": cpu * 1000,
                "what": what,
                "route": route,
            }
            for t0, dur, cpu, what, route in long
        )
        records.extend(
            {
                "type": "planted",
                "tag": tag,
                "kind": kind,
                "file": file,
                "line": line,
                "t": t0 + offset,
                "ms": dur * 1000,
                "cpu_ms": cpu * 1000,
                "runnable_ms": runnable * 1000,
                "route": route,
            }
            for tag, kind, file, line, t0, dur, cpu, runnable, route in plants
        )
        self.write(records)

    def close(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self.flush()


_writer: _Writer | None = None


def enabled() -> bool:
    return bool(os.environ.get(ENV))


def install(app: Any) -> None:
    """Add the request-tracking middleware (outermost of the app's own) when enabled."""
    if enabled():
        app.add_middleware(TruthMiddleware)


def start_loop_timer() -> None:
    """Time every step of the running loop from now on (call it in the lifespan)."""
    global _writer
    path = os.environ.get(ENV)
    if not path or _writer is not None:
        return
    loop = asyncio.get_running_loop()
    if isinstance(loop, asyncio.BaseEventLoop):
        handle = asyncio.events.Handle
        handle._run = _hot["make_handle_run"](  # type: ignore[method-assign]
            handle._run, time.perf_counter, time.thread_time, _step
        )
        how = "Handle._run"
    else:
        timed = _hot["make_timed_coro"](
            collections.abc.Coroutine, time.perf_counter, time.thread_time, _step
        )

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            return asyncio.Task(timed(coro), loop=loop, **kwargs)

        loop.set_task_factory(factory)
        how = "task factory"
    STATE.enabled = True
    _writer = _Writer(path, threading.get_native_id())
    _writer.write(
        [
            {
                "type": "start",
                "pid": os.getpid(),
                "t": time.time(),
                "loop": f"{type(loop).__module__}.{type(loop).__qualname__}",
                "timed_by": how,
                "long_step_ms": LONG_STEP_S * 1000,
            }
        ]
    )
    _writer.start()


def stop_loop_timer() -> None:
    """Flush everything (call it at the end of the lifespan)."""
    if _writer is not None:
        _writer.close()
