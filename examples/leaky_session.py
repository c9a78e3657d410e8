"""A database session that is never closed: memory and open files grow with every request.

`get_session` hands each request a SQLAlchemy session from a `scoped_session` registry keyed
by a per-request id, and nothing ever calls `Sessions.remove()`: every session, its identity
map and its database connection stay in the registry forever. With `NullPool` (common behind
PgBouncer) each of those connections is a new sqlite connection, one more open file per
request. Under steady load, RSS and open file descriptors grow in a straight line; asgiprof's
resource series show it and report a possible leak. Nothing here blocks the event loop
(the routes are `def`, run in the threadpool). The fix, in `leaky_session_fixed.py`: a
`yield` dependency that closes its session in `finally`, with a plain `sessionmaker`.

    uvicorn leaky_session:app --port 8000 --loop asyncio
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, scoped_session
from sqlalchemy.orm import sessionmaker as make_sessionmaker
from sqlalchemy.pool import NullPool

LOAD_PATHS = ("/accounts/1/balance", "/accounts/2/balance")

ACCOUNTS = 1000


class Base(DeclarativeBase):
    pass


class Entry(Base):
    __tablename__ = "entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(index=True)
    amount_cents: Mapped[int]


FILL = text(
    """
    INSERT INTO entries (account_id, amount_cents)
    WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < :n)
    SELECT i % :accounts, (i * 7919) % 10000 - 5000 FROM seq
    """
)


def create_database() -> tuple[Path, Engine]:
    """A sqlite file in a temporary folder, filled with ledger entries."""
    tmp = Path(tempfile.mkdtemp(prefix="asgiprof-leaky-"))
    engine = create_engine(f"sqlite:///{tmp / 'ledger.db'}", poolclass=NullPool)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.execute(FILL, {"n": 20 * ACCOUNTS, "accounts": ACCOUNTS})
        session.commit()
    return tmp, engine


def balance(session: Session, account_id: int) -> dict[str, int]:
    time.sleep(0.02)  # the rest of the request's sync work (a `def` route: in the threadpool)
    total = session.scalar(
        select(func.coalesce(func.sum(Entry.amount_cents), 0)).where(Entry.account_id == account_id)
    )
    return {"account_id": account_id, "balance_cents": int(total or 0)}


_request_ids = itertools.count()
SESSIONS: scoped_session[Session] | None = None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    global SESSIONS
    tmp, engine = create_database()
    SESSIONS = scoped_session(make_sessionmaker(engine), scopefunc=lambda: next(_request_ids))
    try:
        yield
    finally:
        SESSIONS.registry.clear()
        engine.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


def get_session() -> Session:
    assert SESSIONS is not None
    return SESSIONS()  # leaked: a new registry entry per call, never removed or closed


app = FastAPI(title="leaky_session", lifespan=lifespan)


@app.get("/accounts/{account_id}/balance")
def account_balance(
    account_id: int, session: Annotated[Session, Depends(get_session)]
) -> dict[str, int]:
    return balance(session, account_id)
