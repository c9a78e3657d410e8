"""Blocking dependencies no endpoint names: an `Annotated` alias, a router, a nested one.

Three `async def` dependencies each make a sync call (`time.sleep(0.03)`, standing in for a
sync session store, audit log write or quota lookup) that holds the event loop 30 ms per
request, and none of them appears as `Depends(...)` in an endpoint's signature:

- `load_session` hides in the alias `Session = Annotated[..., Depends(load_session)]`, used
  by `GET /accounts/me` and `GET /catalog/items`;
- `audit_admin` is a router-level dependency (`APIRouter(dependencies=[...])`) of every
  route of the admin router: `GET /admin/stats` and `GET /admin/users`;
- `check_quota` is nested: the class dependency `Pager` depends on it, and
  `GET /catalog/items` and `GET /admin/users` depend on `Pager`.

asgiprof reads each route's dependency tree from FastAPI itself, so each `time.sleep` line is
a culprit in a dependency attributed to exactly the routes whose tree holds it. `GET /health`
uses only `get_tenant`, which awaits. The fix: make each call async (an async client,
driver or cache), or declare the dependency with plain `def` so it runs in the threadpool.

    uvicorn dependency_tree:app --port 8000 --loop asyncio
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI

LOAD_PATHS = ("/accounts/me", "/catalog/items", "/admin/stats", "/admin/users", "/health")


async def get_tenant() -> str:
    await asyncio.sleep(0.001)  # an awaited lookup: the loop serves others meanwhile
    return "acme"


async def load_session(tenant: Annotated[str, Depends(get_tenant)]) -> dict[str, str]:
    await asyncio.sleep(0.001)
    time.sleep(0.03)  # planted: sync session store read in an async dependency
    return {"user": "demo", "tenant": tenant}


# The alias is what endpoints name: their signatures never say `Depends(load_session)`.
Session = Annotated[dict[str, str], Depends(load_session)]


async def audit_admin() -> None:
    await asyncio.sleep(0.001)
    time.sleep(0.03)  # planted: sync audit log write in a router-level dependency


async def check_quota(tenant: Annotated[str, Depends(get_tenant)]) -> int:
    await asyncio.sleep(0.001)
    time.sleep(0.03)  # planted: sync quota lookup in a nested dependency
    return 100


class Pager:
    """A class dependency: FastAPI calls `Pager(...)`, solving `check_quota` first."""

    def __init__(self, quota: Annotated[int, Depends(check_quota)], page: int = 1) -> None:
        self.page = page
        self.size = min(quota, 20)


app = FastAPI(title="dependency tree")
admin = APIRouter(prefix="/admin", dependencies=[Depends(audit_admin)])


@app.get("/accounts/me")
async def my_account(session: Session) -> dict[str, str]:
    return session


@app.get("/catalog/items")
async def catalog(session: Session, pager: Annotated[Pager, Depends()]) -> dict[str, object]:
    return {"tenant": session["tenant"], "page": pager.page, "size": pager.size}


@admin.get("/stats")
async def admin_stats() -> dict[str, int]:
    return {"requests": 1}


@admin.get("/users")
async def admin_users(pager: Annotated[Pager, Depends()]) -> dict[str, int]:
    return {"page": pager.page, "size": pager.size}


@app.get("/health")
async def health(tenant: Annotated[str, Depends(get_tenant)]) -> dict[str, str]:
    return {"status": "ok", "tenant": tenant}


app.include_router(admin)
