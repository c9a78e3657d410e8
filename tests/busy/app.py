"""A realistic busy FastAPI app for trust tests (issue 12): CLEAN (nothing blocks the loop)
or PLANTED (BUSY_PLANTED=1: seven blocking calls, each marked `# planted: TAG`).

Served as `tests.busy.app:app` from the repository root. Environment:
BUSY_DB (sqlite file made by `seed()`), or BUSY_DB_URL (an async SQLAlchemy URL, e.g.
postgresql+asyncpg://..., seeded by `seed()` through its sync twin), BUSY_UPSTREAM (base
URL of tests/busy/upstream.py),
BUSY_PLANTED=1 for the planted variant, ASGIPROF_TRUTH=FILE to record the truth
(tests/busy/truth.py).

Clean part: SQLAlchemy 2 AsyncSession on aiosqlite (a few hundred rows, several queries
per request), one httpx.AsyncClient made in the lifespan and shared, pydantic response
models, a pure-ASGI middleware (examples/middleware_stack.py's timing layer) and a
BaseHTTPMiddleware, an async dependency shared by three routes (`current_account`), one
route that only returns that dependency (`/me`).

Planted (every call timed by the app itself, `truth.planted`):
    dep-sleep     time.sleep(0.03) in the async dependency shared by 3 routes   io
    json-default  json.dumps(indent=2, default=user function) of 4,000 objects   cpu
    sorted-key    sorted(30,000 items, key=user function)                          cpu
    pbkdf2        hashlib.pbkdf2_hmac, 90,000 iterations                           cpu
    bcrypt        bcrypt.checkpw, 2^9 rounds                                       cpu
    argon2        argon2-cffi PasswordHasher.verify (parallelism 1)                cpu
    sqlite-sync   a sync sqlite3 query                                             cpu
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import bcrypt
import httpx
from argon2 import PasswordHasher
from fastapi import Depends, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy import ForeignKey, String, create_engine, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from starlette.middleware.base import BaseHTTPMiddleware

from examples.middleware_stack import RequestTimingMiddleware
from tests.busy import truth

PLANTED = os.environ.get("BUSY_PLANTED") == "1"
DB_PATH = os.environ.get("BUSY_DB", "busy.sqlite")
DB_URL = os.environ.get("BUSY_DB_URL") or f"sqlite+aiosqlite:///{DB_PATH}"
UPSTREAM = os.environ.get("BUSY_UPSTREAM", "http://127.0.0.1:1")
CATEGORIES = ("books", "garden", "kitchen", "music", "tools", "toys")
ITEMS = 300
ACCOUNTS = 20


# ----------------------------------------------------------------------------- database


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "account"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    tier: Mapped[str] = mapped_column(String(10))


class Item(Base):
    __tablename__ = "item"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(60))
    category: Mapped[str] = mapped_column(String(20), index=True)
    price: Mapped[float]
    stock: Mapped[int]


class Review(Base):
    __tablename__ = "review"
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id"), index=True)
    stars: Mapped[int]
    body: Mapped[str] = mapped_column(String(200))


def seed(url: str) -> None:
    """Create and fill the database at a sync SQLAlchemy URL (`sqlite:///FILE`,
    `postgresql+psycopg2://...`); the harness runs this before the server starts."""
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(Account),
            [{"id": i, "name": f"account {i}", "tier": "gold"} for i in range(1, ACCOUNTS + 1)],
        )
        conn.execute(
            insert(Item),
            [
                {
                    "id": i,
                    "name": f"item {i}",
                    "category": CATEGORIES[i % len(CATEGORIES)],
                    "price": round((i * 7919) % 1000 / 10, 2),
                    "stock": i % 17,
                }
                for i in range(1, ITEMS + 1)
            ],
        )
        conn.execute(
            insert(Review),
            [
                {"id": i, "item_id": 1 + i % ITEMS, "stars": 1 + i % 5, "body": f"review {i}"}
                for i in range(1, 3 * ITEMS + 1)
            ],
        )
    engine.dispose()


# ----------------------------------------------------------------------------- models


class ReviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    stars: int
    body: str


class ItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    category: str
    price: float
    stock: int
    reviews: list[ReviewOut] = []


class ItemPage(BaseModel):
    items: list[ItemOut]
    total: int


class AccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    tier: str


class CategoryStats(BaseModel):
    category: str
    items: int
    mean_price: float
    rate: float


class Quote(BaseModel):
    item: ItemOut
    lines: int
    upstream_ns: list[int]


# ----------------------------------------------------------------------------- lifespan


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    truth.start_loop_timer()
    engine = create_async_engine(DB_URL, pool_size=16, max_overflow=8)
    app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
    app.state.client = httpx.AsyncClient(
        base_url=UPSTREAM, timeout=10.0, limits=httpx.Limits(max_connections=32)
    )
    try:
        yield
    finally:
        await app.state.client.aclose()
        await engine.dispose()
        truth.stop_loop_timer()


app = FastAPI(title="busy", lifespan=lifespan)


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


Db = Annotated[AsyncSession, Depends(get_db)]


async def current_account(request: Request, db: Db) -> Account:
    """Shared by /items/{item_id}, /items and /me."""
    account_id = 1 + int(request.headers.get("x-account", "0")) % ACCOUNTS
    account = await db.get(Account, account_id)
    assert account is not None
    if PLANTED:
        with truth.planted("dep-sleep", "io"):
            time.sleep(0.03)  # planted: dep-sleep
    return account


CurrentAccount = Annotated[Account, Depends(current_account)]


# ----------------------------------------------------------------------------- clean routes


@app.get("/items/{item_id}", response_model=ItemOut)
async def get_item(item_id: int, db: Db, account: CurrentAccount) -> ItemOut:
    item = await db.get(Item, 1 + item_id % ITEMS)
    assert item is not None
    reviews = (await db.scalars(select(Review).where(Review.item_id == item.id).limit(5))).all()
    out = ItemOut.model_validate(item)
    out.reviews = [ReviewOut.model_validate(r) for r in reviews]
    return out


@app.get("/items", response_model=ItemPage)
async def list_items(db: Db, account: CurrentAccount, page: int = 0) -> ItemPage:
    rows = (
        await db.scalars(select(Item).order_by(Item.price.desc()).limit(20).offset(page % 10 * 20))
    ).all()
    total = await db.scalar(select(func.count()).select_from(Item))
    return ItemPage(items=[ItemOut.model_validate(r) for r in rows], total=total or 0)


@app.get("/me", response_model=AccountOut)
async def me(account: CurrentAccount) -> AccountOut:
    return AccountOut.model_validate(account)


@app.get("/categories/{name}", response_model=CategoryStats)
async def category_stats(name: str, request: Request, db: Db) -> CategoryStats:
    count, mean = (
        await db.execute(
            select(func.count(Item.id), func.avg(Item.price)).where(Item.category == name)
        )
    ).one()
    answer = await request.app.state.client.get(f"/rates/{name}")
    return CategoryStats(
        category=name, items=count, mean_price=float(mean or 0.0), rate=answer.json()["rate"]
    )


@app.get("/quotes/{item_id}", response_model=Quote)
async def quote(item_id: int, request: Request, db: Db) -> Quote:
    client: httpx.AsyncClient = request.app.state.client
    item = await db.get(Item, 1 + item_id % ITEMS)
    assert item is not None
    first, second = await asyncio.gather(
        client.get(f"/quote/{item_id}"), client.get(f"/quote/{item_id + 1}")
    )
    lines = len(first.json()["lines"]) + len(second.json()["lines"])
    return Quote(item=ItemOut.model_validate(item), lines=lines, upstream_ns=[item_id, item_id + 1])


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


# ----------------------------------------------------------------------------- planted routes


# Made at import (uvicorn imports the app inside its loop, which asgiprof tells apart),
# so that building an export is cheap and json.dumps is the one thing that blocks.
EXPORT_TIMES = [datetime.datetime(2026, 1, 1) + datetime.timedelta(minutes=n) for n in range(80)]


class ExportRow:
    __slots__ = ("id", "name", "price", "when")

    def __init__(self, item: Item, n: int) -> None:
        self.id = item.id * 1000 + n
        self.name = item.name
        self.price = item.price
        self.when = EXPORT_TIMES[n]


def _default(obj: object) -> object:
    """json.dumps calls back into this for every ExportRow and datetime."""
    if isinstance(obj, ExportRow):
        return {"id": obj.id, "name": obj.name, "price": obj.price, "when": obj.when}
    if isinstance(obj, datetime.datetime):
        return obj.isoformat()
    raise TypeError(type(obj).__name__)


RANKING = [(i * 7919) % 100_003 for i in range(30_000)]


def _rank_key(value: int) -> tuple[int, int]:
    return (value % 97, -value)


PASSWORD = b"correct horse battery staple"
BCRYPT_HASH = bcrypt.hashpw(PASSWORD, bcrypt.gensalt(9))
ARGON = PasswordHasher(time_cost=4, memory_cost=16_384, parallelism=1)
ARGON_HASH = ARGON.hash(PASSWORD)
_sync_db: list[sqlite3.Connection] = []


def _sync_connection() -> sqlite3.Connection:
    if not _sync_db:
        _sync_db.append(sqlite3.connect(DB_PATH, check_same_thread=False))
    return _sync_db[0]


def planted_routes(app: FastAPI) -> None:
    @app.get("/export/{category}")
    async def export(category: str, db: Db) -> Response:
        items = (await db.scalars(select(Item).where(Item.category == category))).all()
        # Real CPU work in the same loop step as the planted json.dumps (4,000 objects): timed
        # so that asgiprof's culprit here is checked against the app's time, not counted as
        # invented, though it is no planted mistake.
        with truth.planted("export-rows", "cpu"):
            big = [ExportRow(item, n) for n in range(80) for item in items]  # timed: export-rows
        with truth.planted("json-default", "cpu"):
            body = json.dumps(big, indent=2, default=_default)  # planted: json-default
        return Response(body[:2000], media_type="application/json")

    @app.get("/ranking")
    async def ranking(db: Db) -> dict[str, Any]:
        total = await db.scalar(select(func.count()).select_from(Item))
        with truth.planted("sorted-key", "cpu"):
            ranked = sorted(RANKING, key=_rank_key)  # planted: sorted-key
        return {"top": ranked[:10], "items": total}

    @app.get("/login/pbkdf2")
    async def login_pbkdf2(request: Request) -> dict[str, Any]:
        await asyncio.sleep(0)
        with truth.planted("pbkdf2", "cpu"):
            digest = hashlib.pbkdf2_hmac("sha256", PASSWORD, b"salt", 90_000)  # planted: pbkdf2
        return {"digest": digest.hex()[:16]}

    @app.get("/login/bcrypt")
    async def login_bcrypt(request: Request) -> dict[str, Any]:
        await asyncio.sleep(0)
        with truth.planted("bcrypt", "cpu"):
            ok = bcrypt.checkpw(PASSWORD, BCRYPT_HASH)  # planted: bcrypt
        return {"ok": ok}

    @app.get("/login/argon2")
    async def login_argon2(request: Request) -> dict[str, Any]:
        await asyncio.sleep(0)
        with truth.planted("argon2", "cpu"):
            ok = ARGON.verify(ARGON_HASH, PASSWORD)  # planted: argon2
        return {"ok": ok}

    @app.get("/reports/{category}")
    async def report(category: str, db: Db) -> dict[str, Any]:
        count = await db.scalar(select(func.count(Item.id)).where(Item.category == category))
        query = (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000)"
            " SELECT sum(x % ?) FROM c"
        )
        with truth.planted("sqlite-sync", "cpu"):
            (total,) = _sync_connection().execute(query, (7,)).fetchone()  # planted: sqlite-sync
        return {"category": category, "items": count, "total": total}


if PLANTED:
    planted_routes(app)


# ----------------------------------------------------------------------------- middleware


class RequestId(BaseHTTPMiddleware):
    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers["x-request-id"] = request.headers.get("x-request-id", "-")
        return response


app.add_middleware(RequestId)
app.add_middleware(RequestTimingMiddleware)
truth.install(app)  # outermost, so every step of a request is counted
