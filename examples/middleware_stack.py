"""Too many middleware layers, and one that blocks: where request time goes before the route.

Every request passes five layers of middleware before it reaches its route: Starlette's
`GZipMiddleware` and `CORSMiddleware`, a pure ASGI `RequestTimingMiddleware`, a pure ASGI
`SignatureMiddleware` that signs each response by hashing a few kilobytes in Python (~4 ms
of CPU per request, on the event loop), and `AuditMiddleware`, a `BaseHTTPMiddleware` whose
`dispatch` writes an audit record with a sync call (`time.sleep(0.03)`, standing in for a
sync logging handler, a sync HTTP call or a sync DB insert) before calling the route. The
routes themselves are cheap. asgiprof shows each layer's own share of the request time on
the event loop (the signing layer stands out) and reports the `time.sleep` line in
`AuditMiddleware.dispatch` as a culprit in middleware. The fixes: make the audit write async
(or hand it to a background task / queue), sign with C code (`hmac` over the whole body
once) or drop the layer, and prefer pure ASGI middleware to `BaseHTTPMiddleware`, which adds
a task and a memory stream to every request.

    uvicorn middleware_stack:app --port 8000 --loop asyncio
"""

from __future__ import annotations

import asyncio
import hashlib
import time

from fastapi import FastAPI, Request, Response
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOAD_PATHS = ("/items/1", "/items/2", "/health")

SIGNING_KEY = b"asgiprof-example-key"
SIGNING_ROUNDS = 1500  # one SHA-256 per round over a 4 KiB block, in a Python loop


class RequestTimingMiddleware:
    """Pure ASGI: adds a Server-Timing header; costs next to nothing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_timing(message: Message) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - started) * 1000
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={ms:.1f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_timing)


class SignatureMiddleware:
    """Pure ASGI: signs every request with a slow pure-Python key stretch (CPU on the loop)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["signature"] = self.sign(scope["path"].encode())
        await self.app(scope, receive, send)

    def sign(self, data: bytes) -> str:
        digest = SIGNING_KEY + data
        block = digest * (4096 // len(digest) + 1)
        for _ in range(SIGNING_ROUNDS):
            digest = hashlib.sha256(digest + block[:4096]).digest()
        return digest.hex()


class AuditMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        time.sleep(0.03)  # planted: sync audit write in middleware blocks every request
        response = await call_next(request)
        response.headers["x-audited"] = "1"
        return response


app = FastAPI(title="middleware_stack")


@app.get("/items/{item_id}")
async def get_item(item_id: int) -> dict[str, object]:
    await asyncio.sleep(0.005)
    return {"id": item_id, "name": f"item-{item_id}"}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


# Added innermost first: a request passes GZip, CORS, timing, signature, audit, then routes.
app.add_middleware(AuditMiddleware)
app.add_middleware(SignatureMiddleware)
app.add_middleware(RequestTimingMiddleware)
app.add_middleware(CORSMiddleware, allow_origins=["*"])
app.add_middleware(GZipMiddleware, minimum_size=500)
