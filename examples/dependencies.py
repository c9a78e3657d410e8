"""FastAPI dependencies cost time too: a blocking `async def` dependency blocks all its routes.

`get_current_user` is an `async def` dependency that checks the token with a sync call
(`time.sleep(0.03)`, standing in for a sync JWT-key fetch or a sync session lookup): every
route that depends on it, `GET /orders/{order_id}` and `GET /profile`, holds the event loop
for 30 ms per request, although neither endpoint blocks. `get_settings` is a sync `def`
dependency that reads its settings slowly (`time.sleep(0.01)`): FastAPI runs it in the
threadpool, so it costs a worker thread, not the loop. `get_db` is an async generator
dependency that only awaits. asgiprof reports the `time.sleep` line of `get_current_user`
as a culprit in a dependency, attributed to both routes, and lists the time spent solving
each dependency, on the loop and in the threadpool. The fix: make the check async (an async
client or cache), or declare the dependency with plain `def` so it runs in the threadpool.
`GET /public` only uses the healthy dependencies.

    uvicorn dependencies:app --port 8000 --loop asyncio
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, FastAPI

LOAD_PATHS = ("/orders/7", "/profile", "/public")

app = FastAPI(title="dependencies")


async def get_current_user(token: str = "demo-token") -> dict[str, str]:
    time.sleep(0.03)  # planted: sync token check in an async dependency
    return {"name": "demo", "token": token}


def get_settings() -> dict[str, str]:
    # A `def` dependency runs in the threadpool: this sleep holds a worker, not the loop.
    time.sleep(0.01)
    return {"currency": "EUR"}


async def get_db() -> AsyncIterator[dict[str, str]]:
    await asyncio.sleep(0.002)  # an awaited connect: the loop serves others meanwhile
    yield {"db": "connected"}


@app.get("/orders/{order_id}")
async def get_order(
    order_id: int,
    user: Annotated[dict[str, str], Depends(get_current_user)],
    db: Annotated[dict[str, str], Depends(get_db)],
) -> dict[str, object]:
    return {"id": order_id, "owner": user["name"], "db": db["db"]}


@app.get("/profile")
async def profile(
    user: Annotated[dict[str, str], Depends(get_current_user)],
    settings: Annotated[dict[str, str], Depends(get_settings)],
) -> dict[str, object]:
    return {"name": user["name"], "currency": settings["currency"]}


@app.get("/public")
async def public(
    settings: Annotated[dict[str, str], Depends(get_settings)],
    db: Annotated[dict[str, str], Depends(get_db)],
) -> dict[str, str]:
    return {"currency": settings["currency"], "db": db["db"]}
