"""CPU work inside an `async def` route holds the event loop while it computes.

`GET /users/{user_id}/password-check` derives a PBKDF2 key (200 000 rounds of SHA-256,
about 40-50 ms) right on the event loop, as login handlers often do: while it hashes, no
other request makes progress, so latency of every route grows with the login rate.
asgiprof reports the `hashlib.pbkdf2_hmac` line as a culprit of kind `cpu`. The fix: run
the hash off the loop, `await run_in_threadpool(...)` (or `asyncio.to_thread`), as
`GET /users/{user_id}/password-check-offloaded` does (hashlib releases the GIL while it
hashes, so threads run it in parallel); for pure-Python CPU work use a process pool.
`GET /healthy` only awaits.

    uvicorn cpu_work:app --port 8000 --loop asyncio
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

LOAD_PATHS = (
    "/users/1/password-check",
    "/users/2/password-check",
    "/users/1/password-check-offloaded",
    "/healthy",
)

ITERATIONS = 200_000
SALT = b"asgiprof-example-salt"
STORED_KEY = hashlib.pbkdf2_hmac("sha256", b"correct horse", SALT, ITERATIONS)

app = FastAPI(title="cpu_work")


@app.get("/users/{user_id}/password-check")
async def password_check(user_id: int, password: str = "correct horse") -> dict[str, object]:
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), SALT, ITERATIONS)  # planted: CPU on loop
    return {"user_id": user_id, "valid": hmac.compare_digest(key, STORED_KEY)}


@app.get("/users/{user_id}/password-check-offloaded")
async def password_check_offloaded(
    user_id: int, password: str = "correct horse"
) -> dict[str, object]:
    key = await run_in_threadpool(
        hashlib.pbkdf2_hmac, "sha256", password.encode(), SALT, ITERATIONS
    )
    return {"user_id": user_id, "valid": hmac.compare_digest(key, STORED_KEY)}


@app.get("/healthy")
async def healthy() -> dict[str, str]:
    await asyncio.sleep(0.01)
    return {"status": "ok"}
