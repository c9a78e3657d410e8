"""The upstream service the busy app calls through its shared httpx.AsyncClient: a few
awaiting Starlette routes with small JSON answers (served by its own uvicorn process)."""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def rate(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    await asyncio.sleep(0.003)
    return JSONResponse({"name": name, "rate": (len(name) * 37 % 100) / 100})


async def quote(request: Request) -> JSONResponse:
    n = int(request.path_params["n"])
    await asyncio.sleep(0.002)
    return JSONResponse({"n": n, "lines": [{"sku": f"S{n}-{i}", "qty": i} for i in range(20)]})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


app = Starlette(
    routes=[
        Route("/rates/{name}", rate),
        Route("/quote/{n:int}", quote),
        Route("/health", health),
    ]
)
