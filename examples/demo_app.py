"""The app `asgiprof demo` profiles: one API with the classic ways to block the event loop.

Under `/api`, four routes block the loop in different ways: `GET /api/users/{user_id}`
makes a sync call (`time.sleep(0.05)`, standing in for `requests.get`) inside `async def`;
`GET /api/orders/{order_id}` depends on `current_user`, an `async def` dependency that
checks the token with a sync call (`time.sleep(0.03)`); `GET /api/products/search` runs a
sync sqlite3 query (a `LIKE` scan of 400 000 rows, ~40 ms) on the loop; `GET
/api/reports/daily` does pure-Python CPU work (~40 ms). `GET /api/health` only awaits and
`GET /api/export` is a `def` route whose sleep runs in the threadpool: neither blocks. The
fixes: await async clients and drivers (httpx.AsyncClient, aiosqlite), declare sync routes
and dependencies with plain `def` (they then run in the threadpool), and move CPU work off
the loop (`run_in_threadpool` for C code that releases the GIL, a process pool otherwise).

    uvicorn demo_app:app --port 8000 --loop asyncio
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request

LOAD_PATHS = (
    "/api/users/1",
    "/api/users/2",
    "/api/orders/7",
    "/api/products/search?q=blue",
    "/api/reports/daily",
    "/api/health",
    "/api/export",
)

PRODUCT_COUNT = 400_000

FILL_PRODUCTS = """
    INSERT INTO products (name, description)
    WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?)
    SELECT 'product ' || i || ' ' || substr('red green blue cyan pink gold', (i % 6) * 5 + 1, 4),
           'a ' || ((i * 7919) % 1000) || ' item for ' || ((i * 104729) % 977)
    FROM seq
"""


def create_products(db_path: Path) -> None:
    with closing(sqlite3.connect(db_path)) as conn:
        conn.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, description TEXT)")
        conn.execute(FILL_PRODUCTS, (PRODUCT_COUNT,))
        conn.commit()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    tmp = Path(tempfile.mkdtemp(prefix="asgiprof-demo-"))
    try:
        app.state.db_path = tmp / "shop.db"
        create_products(app.state.db_path)
        yield
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def current_user(token: str = "demo-token") -> dict[str, str]:
    time.sleep(0.03)  # planted: sync token check in an async dependency
    return {"name": "demo", "token": token}


router = APIRouter(prefix="/api")


@router.get("/users/{user_id}")
async def get_user(user_id: int) -> dict[str, object]:
    time.sleep(0.05)  # planted: sync call (think requests.get) in `async def`
    return {"id": user_id, "name": f"user-{user_id}"}


@router.get("/orders/{order_id}")
async def get_order(
    order_id: int, user: Annotated[dict[str, str], Depends(current_user)]
) -> dict[str, object]:
    await asyncio.sleep(0.01)
    return {"id": order_id, "owner": user["name"], "total_cents": 4200}


@router.get("/products/search")
async def search_products(request: Request, q: str = "blue") -> dict[str, object]:
    pattern = f"%{q}%"
    with closing(sqlite3.connect(request.app.state.db_path)) as conn:
        query = "SELECT count(*) FROM products WHERE name LIKE ? OR description LIKE ?"
        (matches,) = conn.execute(query, (pattern, pattern)).fetchone()  # planted: sync DB
    return {"q": q, "matches": matches}


@router.get("/reports/daily")
async def daily_report() -> dict[str, int]:
    checksum = sum(i * i % 7 for i in range(1_000_000))  # planted: pure-Python CPU work
    return {"checksum": checksum}


@router.get("/health")
async def health() -> dict[str, str]:
    await asyncio.sleep(0.005)
    return {"status": "ok"}


@router.get("/export")
def export() -> dict[str, str]:
    # A `def` route runs in the threadpool: this sleep holds a worker thread, not the loop.
    time.sleep(0.05)
    return {"status": "exported"}


app = FastAPI(title="asgiprof demo", lifespan=lifespan)
app.include_router(router)
