"""The catalogue of well-known blocking calls and their async fixes, kept as data.

An entry matches a culprit by its source line (the call the user wrote) or by a library
frame on the culprit's stack (py-spy sees Python frames only, so `time.sleep` itself is
invisible but `requests/sessions.py` is not). The first matching entry wins.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from asgiprof.analyze.result import Kind
from asgiprof.model import Frame


@dataclass(frozen=True, slots=True)
class Advice:
    name: str
    kind: Kind
    text: str
    code: re.Pattern[str] | None = None  # matched against the culprit's source line
    path: re.Pattern[str] | None = None  # matched against files on the culprit's stack


def _c(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


CATALOGUE: tuple[Advice, ...] = (
    Advice(
        "time.sleep",
        "io",
        "time.sleep() blocks the event loop: use `await asyncio.sleep(...)`.",
        code=_c(r"\b(?:time\.)?sleep\s*\("),
    ),
    Advice(
        "sync SQLAlchemy session",
        "io",
        "A sync SQLAlchemy Session blocks the event loop on every query: use "
        "`AsyncSession` (sqlalchemy.ext.asyncio) with an async driver (asyncpg, aiosqlite, "
        "psycopg async), or make the route a plain `def` so it runs in the threadpool.",
        path=_c(r"[/\\]sqlalchemy[/\\](?!ext[/\\]asyncio)"),
    ),
    Advice(
        "sqlite3",
        "io",
        "sqlite3 calls block the event loop: use `aiosqlite` (or SQLAlchemy's AsyncSession "
        "with sqlite+aiosqlite), or move the work to a `def` route.",
        code=_c(r"\bsqlite3\b|\.execute\(|\.executemany\(|\.fetch(?:all|one|many)\("),
    ),
    Advice(
        "psycopg2",
        "io",
        "psycopg2 is synchronous and blocks the event loop: use `asyncpg` or psycopg 3's "
        "`AsyncConnection`, or SQLAlchemy's AsyncSession with one of them.",
        path=_c(r"[/\\]psycopg2[/\\]"),
        code=_c(r"\bpsycopg2\b"),
    ),
    Advice(
        "requests",
        "io",
        "requests is synchronous and blocks the event loop for the whole HTTP call: use "
        "`httpx.AsyncClient` (await client.get(...)) or aiohttp.",
        path=_c(r"[/\\](?:requests|urllib3)[/\\]"),
        code=_c(r"\brequests\.(?:get|post|put|patch|delete|head|request|Session)\b"),
    ),
    Advice(
        "urllib / http.client",
        "io",
        "urllib/http.client calls are synchronous: use `httpx.AsyncClient` or aiohttp.",
        path=_c(r"[/\\](?:urllib[/\\]request|http[/\\]client)\.py$"),
        code=_c(r"\burlopen\s*\(|\bHTTPS?Connection\b"),
    ),
    Advice(
        "pymongo",
        "io",
        "pymongo is synchronous: use `motor` (AsyncIOMotorClient) or pymongo's AsyncMongoClient.",
        path=_c(r"[/\\]pymongo[/\\]"),
    ),
    Advice(
        "redis (sync)",
        "io",
        "The sync redis client blocks the event loop: use `redis.asyncio.Redis`.",
        path=_c(r"[/\\]redis[/\\](?!asyncio)"),
    ),
    Advice(
        "subprocess",
        "io",
        "subprocess.run/check_output wait synchronously: use "
        "`await asyncio.create_subprocess_exec(...)`.",
        path=_c(r"[/\\]subprocess\.py$"),
        code=_c(r"\bsubprocess\.(?:run|call|check_call|check_output)\b|\bos\.system\("),
    ),
    Advice(
        "password hashing",
        "cpu",
        "Password hashing is deliberately slow CPU work: run it off the loop with "
        "`await anyio.to_thread.run_sync(...)` (hashlib and bcrypt release the GIL) or "
        "`loop.run_in_executor`.",
        path=_c(r"[/\\](?:bcrypt|passlib|argon2)[/\\]"),
        code=_c(r"\bpbkdf2_hmac\b|\bscrypt\b|\bbcrypt\.|\bhashpw\b|\bcheckpw\b"),
    ),
    Advice(
        "large JSON",
        "cpu",
        "Encoding/decoding large JSON on the loop is CPU work: use orjson, stream the "
        "payload, or offload it with `anyio.to_thread.run_sync`.",
        path=_c(r"[/\\]json[/\\](?:encoder|decoder)\.py$"),
        code=_c(r"\bjson\.(?:dumps|loads|dump|load)\s*\("),
    ),
    Advice(
        "pandas",
        "cpu",
        "pandas work holds the loop: offload it with `anyio.to_thread.run_sync` or a "
        "process pool (`loop.run_in_executor(ProcessPoolExecutor(), ...)`).",
        path=_c(r"[/\\](?:pandas|numpy)[/\\]"),
        code=_c(r"\bpd\.|\bpandas\."),
    ),
    Advice(
        "file I/O",
        "io",
        "Reading or writing files blocks the loop on slow disks and big files: use "
        "`anyio.Path` / aiofiles, or `anyio.to_thread.run_sync`.",
        code=_c(r"\bopen\s*\(|\.read(?:_text|_bytes)?\s*\(|\.write(?:_text|_bytes)?\s*\("),
    ),
)

GENERIC_CPU = (
    "CPU-bound work in an `async def` holds the event loop: move it to a `def` route "
    "(threadpool), `anyio.to_thread.run_sync`, or a process pool for pure-Python work."
)
GENERIC_IO = (
    "A synchronous wait in an `async def` holds the event loop: use the library's async "
    "API, or make the route a plain `def` so FastAPI runs it in the threadpool."
)


def find_advice(code: str | None, stack: Sequence[Frame]) -> Advice | None:
    """The catalogue entry for this culprit: library frames on the stack are the stronger
    evidence (a `.execute(` line may be any driver), so path matches are tried first."""
    files = [f.file for f in stack]
    for entry in CATALOGUE:
        if entry.path is not None and any(entry.path.search(p) for p in files):
            return entry
    if code:
        for entry in CATALOGUE:
            if entry.code is not None and entry.code.search(code):
                return entry
    return None


def advice_text(entry: Advice | None, kind: Kind) -> str | None:
    if entry is not None:
        return entry.text
    if kind == "cpu":
        return GENERIC_CPU
    if kind == "io":
        return GENERIC_IO
    return None
