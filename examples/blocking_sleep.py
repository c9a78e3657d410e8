"""A sync sleep inside an `async def` route blocks the event loop for every request.

`GET /users/{user_id}` calls `time.sleep(0.1)` (a stand-in for any sync call: `requests`, a
sync SDK, `open()` on a slow disk) inside `async def`, so the event loop can do nothing else
for 100 ms: eight concurrent requests take 0.8 s instead of 0.1 s, and every other route
waits too. asgiprof reports the `time.sleep` line as a culprit of kind `io`. The fix: await
an async equivalent (`await asyncio.sleep(...)`, an async client), or declare the route with
plain `def` so Starlette runs it in its threadpool, as `GET /sync` does. `GET /healthy`
awaits `asyncio.sleep(0.1)` and never blocks the loop.

    uvicorn blocking_sleep:app --port 8000 --loop asyncio
"""

from __future__ import annotations

import asyncio
import time

from fastapi import FastAPI

# Paths `asgiprof demo` and the tests load, in the order listed in README.md.
LOAD_PATHS = ("/users/1", "/users/2", "/healthy", "/sync")

app = FastAPI(title="blocking_sleep")


@app.get("/users/{user_id}")
async def get_user(user_id: int) -> dict[str, object]:
    time.sleep(0.1)  # planted: sync sleep in `async def` blocks the event loop
    return {"id": user_id, "name": f"user-{user_id}"}


@app.get("/healthy")
async def healthy() -> dict[str, str]:
    await asyncio.sleep(0.1)
    return {"status": "ok"}


@app.get("/sync")
def sync_route() -> dict[str, str]:
    # A `def` route runs in the threadpool: this sleep holds a worker thread, not the loop.
    time.sleep(0.1)
    return {"status": "ok", "ran_in": "threadpool"}
