"""A well-behaved app: nothing blocks the event loop, so asgiprof should report no culprit.

`async def` routes only await (`asyncio.sleep` stands in for an async database or HTTP
client), the one `def` route does its sync work in Starlette's threadpool, and responses
are small JSON. Use it as the control: the event loop is idle most of the time and no
blocking episode reaches the threshold.

    uvicorn healthy:app --port 8000 --loop asyncio
"""

from __future__ import annotations

import asyncio
import time

from fastapi import FastAPI

LOAD_PATHS = ("/items/1", "/items/2", "/items", "/health")

ITEMS = {item_id: {"id": item_id, "name": f"item-{item_id}"} for item_id in range(1, 11)}

app = FastAPI(title="healthy")


@app.get("/items/{item_id}")
async def get_item(item_id: int) -> dict[str, object]:
    await asyncio.sleep(0.02)  # an awaited query: the loop serves others meanwhile
    return ITEMS.get(item_id, {"id": item_id, "name": None})


@app.get("/items")
def list_items() -> list[dict[str, object]]:
    # Sync work in a `def` route runs in the threadpool, off the event loop.
    time.sleep(0.02)
    return list(ITEMS.values())


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
