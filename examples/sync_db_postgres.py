"""Sync PostgreSQL drivers in `async def` routes block the event loop for every query.

`GET /customers/{customer_id}/orders/sync` runs a report query through SQLAlchemy's sync
`Session` (psycopg2 underneath) inside `async def`, and `GET
/customers/{customer_id}/orders/psycopg2` runs the same query on a raw psycopg2 cursor: the
driver waits for PostgreSQL on the event-loop thread, so every other request waits too. The
query sums a customer's orders and waits 30 ms in the server (`pg_sleep(0.03)`, standing in
for a slow plan or a busy database). asgiprof reports the two query lines as culprits of kind
`io`, with the SQLAlchemy call chain on the stack and advice naming AsyncSession and asyncpg.
The fix: the same query through `AsyncSession` with asyncpg (`GET
/customers/{customer_id}/orders/async-session`) or a raw asyncpg pool (`GET
/customers/{customer_id}/orders/asyncpg`): the loop serves other requests while PostgreSQL
works, and neither is a culprit.

Needs a PostgreSQL server: `ASGIPROF_PG_DSN=postgresql://user@127.0.0.1:5432/db` (the tests
start their own, see tests/postgres.py). The lifespan creates and fills an `orders` table.

    ASGIPROF_PG_DSN=... uvicorn sync_db_postgres:app --port 8000 --loop asyncio
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import psycopg2.pool
from fastapi import FastAPI, Request
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

LOAD_PATHS = (
    "/customers/7/orders/sync",
    "/customers/7/orders/psycopg2",
    "/customers/7/orders/async-session",
    "/customers/7/orders/asyncpg",
)

ORDER_COUNT = 50_000

SETUP = (
    "CREATE TABLE IF NOT EXISTS orders "
    "(id serial PRIMARY KEY, customer_id int NOT NULL, total_cents int NOT NULL)",
    "INSERT INTO orders (customer_id, total_cents) "
    f"SELECT i % 500, (i::bigint * 104729) % 100000 FROM generate_series(1, {ORDER_COUNT}) AS i "
    "WHERE NOT EXISTS (SELECT 1 FROM orders)",
)

# One customer's order count and spend; pg_sleep makes the server take 30 ms.
REPORT_SQL = (
    "SELECT count(*) AS orders, coalesce(sum(total_cents), 0) AS spent "
    "FROM orders, pg_sleep(0.03) WHERE customer_id = {cid}"
)
REPORT = text(REPORT_SQL.format(cid=":cid"))


def dsn() -> str:
    value = os.environ.get("ASGIPROF_PG_DSN")
    if not value:
        raise RuntimeError("set ASGIPROF_PG_DSN=postgresql://user@host:port/db to run this app")
    return value


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    url = dsn().split("://", 1)[1]
    engine = create_engine(f"postgresql+psycopg2://{url}", pool_size=5)
    async_engine = create_async_engine(f"postgresql+asyncpg://{url}", pool_size=5)
    with engine.begin() as conn:
        for statement in SETUP:
            conn.execute(text(statement))
    raw_pool = psycopg2.pool.SimpleConnectionPool(1, 5, dsn())
    pg_pool = await asyncpg.create_pool(dsn(), min_size=1, max_size=5)
    app.state.engine, app.state.async_engine = engine, async_engine
    app.state.raw_pool, app.state.pg_pool = raw_pool, pg_pool
    try:
        yield
    finally:
        await pg_pool.close()
        raw_pool.closeall()
        await async_engine.dispose()
        engine.dispose()


app = FastAPI(title="sync_db_postgres", lifespan=lifespan)


@app.get("/customers/{customer_id}/orders/sync")
async def orders_sync(customer_id: int, request: Request) -> dict[str, int]:
    engine: Engine = request.app.state.engine
    with Session(engine) as session:
        row = session.execute(REPORT, {"cid": customer_id}).one()  # planted: sync Session
    return {"orders": row.orders, "spent_cents": row.spent}


@app.get("/customers/{customer_id}/orders/psycopg2")
async def orders_psycopg2(customer_id: int, request: Request) -> dict[str, int]:
    pool: psycopg2.pool.SimpleConnectionPool = request.app.state.raw_pool
    conn = pool.getconn()
    try:
        with conn.cursor() as cur:
            cur.execute(REPORT_SQL.format(cid="%s"), (customer_id,))  # planted: psycopg2
            orders, spent = cur.fetchone()
        conn.rollback()
    finally:
        pool.putconn(conn)
    return {"orders": orders, "spent_cents": spent}


@app.get("/customers/{customer_id}/orders/async-session")
async def orders_async_session(customer_id: int, request: Request) -> dict[str, int]:
    async_engine: AsyncEngine = request.app.state.async_engine
    async with AsyncSession(async_engine) as session:
        row = (await session.execute(REPORT, {"cid": customer_id})).one()
    return {"orders": row.orders, "spent_cents": row.spent}


@app.get("/customers/{customer_id}/orders/asyncpg")
async def orders_asyncpg(customer_id: int, request: Request) -> dict[str, int]:
    pool: asyncpg.Pool = request.app.state.pg_pool
    row = await pool.fetchrow(REPORT_SQL.format(cid="$1"), customer_id)
    assert row is not None
    return {"orders": row["orders"], "spent_cents": row["spent"]}
