"""Busy test apps that measure their own truth, and the harness comparing asgiprof with it.

- `truth`: the oracle the apps import (records task steps and planted calls, see its doc).
- `app`: a realistic FastAPI app (async SQLAlchemy + aiosqlite, httpx to an upstream,
  pydantic, pure-ASGI and BaseHTTPMiddleware, a shared async dependency), CLEAN or PLANTED.
- `upstream`: the tiny Starlette service the app calls.
- `harness`: serve them, profile with asgiprof under wrk, score asgiprof against the truth.
"""
