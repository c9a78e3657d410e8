"""Pure-Python CPU work in a `def` route holds the GIL and starves the event loop.

FastAPI runs `def` routes in anyio's worker threads, so `GET /reports/checksum` (about
50-100 ms of pure-Python arithmetic per call) never runs on the event loop; but a thread
running Python code holds the GIL, and the event-loop thread must take it back for every
step of framework code (parsing a request, routing, writing a response). It waits up to the
GIL's switch interval (5 ms) each time, so the light `async def` routes `GET /items/{item_id}`
and `GET /healthy` slow down whenever checksums are being computed. asgiprof reports a
`gil-contention` finding naming the checksum line. The fix: run pure-Python CPU work in a
process pool (`loop.run_in_executor(ProcessPoolExecutor(), ...)`), use code that releases
the GIL while it computes (numpy, hashlib on big buffers, native extensions), or bound how
many such requests run at once.

`io_app` is the same app whose `def` route waits in `time.sleep` for as long instead: a
sleeping thread releases the GIL, so the event loop is not starved (no finding).

    uvicorn gil_contention:app --port 8000 --loop asyncio
    uvicorn gil_contention:io_app --port 8000 --loop asyncio   # the control
"""

from __future__ import annotations

import asyncio
import time

from fastapi import FastAPI

LOAD_PATHS = ("/reports/checksum", "/reports/checksum", "/items/1", "/items/2", "/healthy")

# About 60-80 ms of pure-Python work on a 2-CPU VM with Python 3.11.
ROUNDS = 1_500_000
SLEEP_S = 0.07  # the control's wait, about as long as the checksum takes


def make_app(*, cpu: bool) -> FastAPI:
    api = FastAPI(title="gil_contention" if cpu else "gil_contention io")

    @api.get("/reports/checksum")
    def checksum(seed: int = 7) -> dict[str, int]:
        if not cpu:
            time.sleep(SLEEP_S)  # releases the GIL while it waits
            return {"checksum": seed}
        total = sum((i * seed) % 97 for i in range(ROUNDS))  # planted: holds the GIL
        return {"checksum": total}

    @api.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @api.get("/healthy")
    async def healthy() -> dict[str, str]:
        await asyncio.sleep(0.005)
        return {"status": "ok"}

    return api


app = make_app(cpu=True)
io_app = make_app(cpu=False)
