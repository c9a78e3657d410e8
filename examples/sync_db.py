"""A sync database session inside an `async def` route blocks the event loop per query.

`GET /reports/top-customers` runs a reporting query (a group-by over 200 000 orders in
sqlite, about 30-40 ms) through SQLAlchemy's sync `Session` inside `async def`: the driver
waits for sqlite on the event-loop thread, so every other request waits with it. asgiprof
reports the `session.execute` line as a culprit. The fix: use the async engine
(`AsyncSession` with `sqlite+aiosqlite`, or asyncpg for PostgreSQL) and await the query, as
`GET /reports/top-customers-async` does, or declare the route with plain `def` so it runs
in the threadpool, as `GET /reports/top-customers-threadpool` does. The database is a file
in a temporary directory, created by the lifespan at startup and removed at shutdown.

    uvicorn sync_db:app --port 8000 --loop asyncio
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

LOAD_PATHS = (
    "/reports/top-customers",
    "/reports/top-customers-async",
    "/reports/top-customers-threadpool",
)

ORDER_COUNT = 200_000


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int]
    total_cents: Mapped[int]
    status: Mapped[str]


# No index helps this report: sqlite scans and groups every order on each call.
TOP_CUSTOMERS = (
    select(
        Order.customer_id,
        func.count().label("orders"),
        func.sum(Order.total_cents).label("spent_cents"),
    )
    .where(Order.status != "cancelled")
    .group_by(Order.customer_id)
    .order_by(func.sum(Order.total_cents).desc())
    .limit(10)
)

# Deterministic rows generated inside sqlite: a Python loop would slow startup down.
FILL_ORDERS = text(
    """
    INSERT INTO orders (customer_id, total_cents, status)
    WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < :n)
    SELECT (i * 7919) % 5000, (i * 104729) % 100000,
           CASE i % 4 WHEN 3 THEN 'cancelled' WHEN 1 THEN 'shipped' ELSE 'paid' END
    FROM seq
    """
)


def create_orders(engine: Engine) -> None:
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.execute(FILL_ORDERS, {"n": ORDER_COUNT})
        session.commit()


def as_report(rows: Iterable[Sequence[int]]) -> list[dict[str, int]]:
    return [
        {"customer_id": customer_id, "orders": orders, "spent_cents": spent_cents}
        for customer_id, orders, spent_cents in rows
    ]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    tmp = Path(tempfile.mkdtemp(prefix="asgiprof-sync-db-"))
    url = f"sqlite:///{tmp / 'shop.db'}"
    engine = create_engine(url)
    async_engine = create_async_engine(url.replace("sqlite://", "sqlite+aiosqlite://", 1))
    try:
        create_orders(engine)
        app.state.engine = engine
        app.state.async_engine = async_engine
        yield
    finally:
        await async_engine.dispose()
        engine.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


app = FastAPI(title="sync_db", lifespan=lifespan)


@app.get("/reports/top-customers")
async def top_customers(request: Request) -> list[dict[str, int]]:
    engine: Engine = request.app.state.engine
    with Session(engine) as session:
        rows = session.execute(TOP_CUSTOMERS).all()  # planted: sync query on the event loop
    return as_report(rows)


@app.get("/reports/top-customers-async")
async def top_customers_async(request: Request) -> list[dict[str, int]]:
    async_engine: AsyncEngine = request.app.state.async_engine
    async with AsyncSession(async_engine) as session:
        rows = (await session.execute(TOP_CUSTOMERS)).all()
    return as_report(rows)


@app.get("/reports/top-customers-threadpool")
def top_customers_threadpool(request: Request) -> list[dict[str, int]]:
    # The same sync query in a `def` route runs in the threadpool, off the event loop.
    engine: Engine = request.app.state.engine
    with Session(engine) as session:
        rows = session.execute(TOP_CUSTOMERS).all()
    return as_report(rows)
