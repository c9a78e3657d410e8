"""Reference FastAPI app for the overhead benchmark: healthy, cheap, async routes.

`GET /items/{item_id}` validates its path and query parameters, builds a pydantic response
model and awaits once (a stand-in for an async DB call that answers at once): about the
work of a real JSON endpoint, so the profiler's cost is measured against realistic
per-request work. `GET /ok` is the readiness probe.

BENCH_PYINSTRUMENT=1 wraps the app in a pure ASGI middleware that profiles every request
with pyinstrument (async_mode="enabled", interval BENCH_PYINSTRUMENT_INTERVAL_S, default
0.01 s = 100 Hz), the way its docs suggest profiling a FastAPI app per request.

PYTHONASYNCIODEBUG=1 turns on asyncio debug mode. uvicorn's `asyncio.run` shim on Python
3.11 passes `debug=False`, which silently overrides the variable, so the lifespan calls
`loop.set_debug(True)` itself when the variable is set.

    uvicorn ref_app:app --port 8000 --loop asyncio
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send


class Item(BaseModel):
    id: int
    name: str
    tags: list[str]
    price_cents: int
    in_stock: bool


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    if os.environ.get("PYTHONASYNCIODEBUG"):
        # uvicorn's asyncio.run shim on Python 3.11 passes debug=False, which overrides
        # PYTHONASYNCIODEBUG: turn debug mode on the way the variable means to.
        asyncio.get_running_loop().set_debug(True)
    yield


app = FastAPI(title="ref_app", lifespan=lifespan)


@app.get("/items/{item_id}", response_model=Item)
async def get_item(item_id: int, detail: bool = False) -> Item:
    await asyncio.sleep(0)
    tags = [f"tag-{item_id % 7}", f"tag-{item_id % 11}"] + (["detail"] if detail else [])
    return Item(
        id=item_id, name=f"item {item_id}", tags=tags, price_cents=item_id * 10, in_stock=True
    )


@app.get("/ok")
async def ok() -> dict[str, str]:
    return {"status": "ok"}


class PyinstrumentMiddleware:
    """Profile each HTTP request with pyinstrument; sessions are built, then dropped."""

    def __init__(self, app: ASGIApp, interval_s: float) -> None:
        self.app = app
        self.interval_s = interval_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from pyinstrument import Profiler

        profiler = Profiler(interval=self.interval_s, async_mode="enabled")
        profiler.start()
        try:
            await self.app(scope, receive, send)
        finally:
            profiler.stop()


if os.environ.get("BENCH_PYINSTRUMENT") == "1":
    app.add_middleware(
        PyinstrumentMiddleware,
        interval_s=float(os.environ.get("BENCH_PYINSTRUMENT_INTERVAL_S", "0.01")),
    )
