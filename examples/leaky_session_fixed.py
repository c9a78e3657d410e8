"""The fix for `leaky_session.py`: a `yield` dependency that always closes its session.

Same database, same routes and same `NullPool`, but `get_session` opens a plain `Session`,
yields it, and closes it in `finally` once the response is sent: the connection (and its file
descriptor) is released after every request. Under the same steady load, RSS and open file
descriptors stay flat and asgiprof reports no possible leak.

    uvicorn leaky_session_fixed:app --port 8000 --loop asyncio
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from leaky_session import balance, create_database
from sqlalchemy import Engine
from sqlalchemy.orm import Session

LOAD_PATHS = ("/accounts/1/balance", "/accounts/2/balance")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    tmp, engine = create_database()
    app.state.engine = engine
    try:
        yield
    finally:
        engine.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


def get_session(request: Request) -> Iterator[Session]:
    engine: Engine = request.app.state.engine
    session = Session(engine)
    try:
        yield session
    finally:
        session.close()


app = FastAPI(title="leaky_session_fixed", lifespan=lifespan)


@app.get("/accounts/{account_id}/balance")
def account_balance(
    account_id: int, session: Annotated[Session, Depends(get_session)]
) -> dict[str, int]:
    return balance(session, account_id)
