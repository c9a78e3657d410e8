"""Planted blocking calls of known duration and kind, in every place they hide, for the
detection-accuracy benchmark (bench/accuracy.py).

Each planted line is marked `# planted: <tag>`; the bench finds them by that mark:

    route-io    time.sleep in an `async def` route          GET /route/io/{item_id}
    route-cpu   a busy loop in an `async def` route         GET /route/cpu/{item_id}
    dep-io      time.sleep in an `async def` dependency     GET /dep/io/{item_id}
    dep-cpu     a busy loop in an `async def` dependency    GET /dep/cpu/{item_id}
    helper-io   time.sleep in a helper of another module    GET /helper/io/{item_id}
    helper-cpu  a busy loop in a helper of another module   GET /helper/cpu/{item_id}
    mw-io       time.sleep in a pure ASGI middleware        GET /mw/io/{item_id}
    mw-cpu      a busy loop in a pure ASGI middleware       GET /mw/cpu/{item_id}

Environment: BENCH_BLOCK_MS (default 100) is every block's duration; BENCH_HEALTHY=1 makes
the healthy twin, where each block becomes its non-blocking equivalent (awaited sleep, or
the same sync call in the threadpool); BENCH_SLOW_CALLBACK_MS sets asyncio debug mode's
slow-callback threshold (for the PYTHONASYNCIODEBUG=1 comparison). `GET /ok` (awaits) and
`GET /threadpool` (`def`, sleeps in the threadpool) are healthy background traffic.

The busy loop is one line (`next(...)` over `time.perf_counter`), so py-spy shows the
planted line itself, as it shows the line calling `time.sleep`.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import planted_helpers as helpers
from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

BLOCK_S = float(os.environ.get("BENCH_BLOCK_MS", "100")) / 1000
HEALTHY = os.environ.get("BENCH_HEALTHY") == "1"
# Every block's (tag, start, end) in unix time, written at shutdown when set: the bench
# compares asgiprof's estimates with the blocks that fell inside py-spy's sampled windows.
BLOCK_LOG = os.environ.get("BENCH_BLOCK_LOG")
_blocks: list[tuple[str, float, float]] = []


def record(tag: str, start: float) -> None:
    _blocks.append((tag, start, time.time()))


def spin(seconds: float) -> None:
    """The healthy twin's CPU work, run in the threadpool."""
    deadline = time.perf_counter() + seconds
    next(t for t in iter(time.perf_counter, None) if t >= deadline)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    if os.environ.get("PYTHONASYNCIODEBUG"):
        # uvicorn's asyncio.run shim on Python 3.11 passes debug=False, which overrides
        # PYTHONASYNCIODEBUG: turn debug mode on the way the variable means to.
        loop.set_debug(True)
    slow_ms = os.environ.get("BENCH_SLOW_CALLBACK_MS")
    if slow_ms:
        loop.slow_callback_duration = float(slow_ms) / 1000
    yield
    if BLOCK_LOG:
        with open(BLOCK_LOG, "w") as f:
            json.dump(_blocks, f)


app = FastAPI(title="planted", lifespan=lifespan)


@app.get("/route/io/{item_id}")
async def route_io(item_id: int) -> dict[str, int]:
    if HEALTHY:
        await asyncio.sleep(BLOCK_S)
    else:
        start = time.time()
        time.sleep(BLOCK_S)  # planted: route-io
        record("route-io", start)
    return {"id": item_id}


@app.get("/route/cpu/{item_id}")
async def route_cpu(item_id: int) -> dict[str, int]:
    if HEALTHY:
        await run_in_threadpool(spin, BLOCK_S)
    else:
        deadline = time.perf_counter() + BLOCK_S
        start = time.time()
        next(t for t in iter(time.perf_counter, None) if t >= deadline)  # planted: route-cpu
        record("route-cpu", start)
    return {"id": item_id}


async def current_user() -> str:
    if HEALTHY:
        await asyncio.sleep(BLOCK_S)
    else:
        start = time.time()
        time.sleep(BLOCK_S)  # planted: dep-io
        record("dep-io", start)
    return "user"


async def permissions() -> str:
    if HEALTHY:
        await run_in_threadpool(spin, BLOCK_S)
    else:
        deadline = time.perf_counter() + BLOCK_S
        start = time.time()
        next(t for t in iter(time.perf_counter, None) if t >= deadline)  # planted: dep-cpu
        record("dep-cpu", start)
    return "admin"


@app.get("/dep/io/{item_id}")
async def dep_io(item_id: int, user: Annotated[str, Depends(current_user)]) -> dict[str, object]:
    return {"id": item_id, "user": user}


@app.get("/dep/cpu/{item_id}")
async def dep_cpu(item_id: int, role: Annotated[str, Depends(permissions)]) -> dict[str, object]:
    return {"id": item_id, "role": role}


@app.get("/helper/io/{item_id}")
async def helper_io(item_id: int) -> dict[str, object]:
    if HEALTHY:
        profile = await helpers.fetch_profile_async(BLOCK_S)
    else:
        start = time.time()
        profile = helpers.fetch_profile(BLOCK_S)
        record("helper-io", start)
    return {"id": item_id, **profile}


@app.get("/helper/cpu/{item_id}")
async def helper_cpu(item_id: int) -> dict[str, object]:
    if HEALTHY:
        score = await run_in_threadpool(helpers.score, BLOCK_S)
    else:
        start = time.time()
        score = helpers.score(BLOCK_S)
        record("helper-cpu", start)
    return {"id": item_id, "score": score}


@app.get("/mw/io/{item_id}")
async def mw_io(item_id: int) -> dict[str, int]:
    return {"id": item_id}


@app.get("/mw/cpu/{item_id}")
async def mw_cpu(item_id: int) -> dict[str, int]:
    return {"id": item_id}


@app.get("/ok")
async def ok() -> dict[str, str]:
    await asyncio.sleep(0.002)
    return {"status": "ok"}


@app.get("/threadpool")
def threadpool() -> dict[str, str]:
    time.sleep(0.01)
    return {"status": "ok"}


class AuditMiddleware:
    """Pure ASGI middleware that blocks (or, healthy, awaits) on `/mw/...` requests."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith("/mw/io/"):
            if HEALTHY:
                await asyncio.sleep(BLOCK_S)
            else:
                start = time.time()
                time.sleep(BLOCK_S)  # planted: mw-io
                record("mw-io", start)
        elif path.startswith("/mw/cpu/"):
            if HEALTHY:
                await run_in_threadpool(spin, BLOCK_S)
            else:
                deadline = time.perf_counter() + BLOCK_S
                start = time.time()
                next(t for t in iter(time.perf_counter, None) if t >= deadline)  # planted: mw-cpu
                record("mw-cpu", start)
        await self.app(scope, receive, send)


app.add_middleware(AuditMiddleware)
