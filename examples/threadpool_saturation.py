"""Sync `def` routes share one threadpool of 40 workers: slow ones exhaust it and others queue.

FastAPI runs every `def` route and dependency in anyio's worker threads, at most 40 at a time
per process (the default thread limiter's tokens). `GET /reports/slow` is a `def` route that
waits a second on a sync call (`time.sleep(1.0)`, standing in for a sync HTTP or DB call): with
more than 40 concurrent requests every worker is busy, and even `GET /quick`, a `def` route
that does nothing, waits in line for a worker. Nothing blocks the event loop, so no culprit is
reported; asgiprof shows the busy worker threads over time, how long all 40 were busy, and
which routes held them. The fixes: make the slow route `async def` with an async client so it
holds no thread, or raise the limit at startup
(`anyio.to_thread.current_default_thread_limiter().total_tokens = 100`) if the work must
stay sync. `GET /ping` is `async def` and never needs a worker.

    uvicorn threadpool_saturation:app --port 8000 --loop asyncio
"""

from __future__ import annotations

import time

from fastapi import FastAPI

LOAD_PATHS = ("/reports/slow", "/reports/slow", "/reports/slow", "/quick", "/ping")

app = FastAPI(title="threadpool_saturation")


@app.get("/reports/slow")
def slow_report() -> dict[str, str]:
    time.sleep(1.0)  # holds a worker thread for a second
    return {"report": "done"}


@app.get("/quick")
def quick() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/ping")
async def ping() -> dict[str, str]:
    return {"status": "pong"}
