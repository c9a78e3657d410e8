"""The catalogue of well-known blocking calls and their async fixes, kept as data.

An entry matches a culprit by evidence, strongest first:
1. `path`: a library file on the culprit's stack, at or above the culprit line (py-spy sees
   Python frames only, so `time.sleep` itself is invisible but `requests/sessions.py` is not);
   `unless_path` vetoes it (SQLAlchemy's AsyncSession runs the same ORM files under greenlets);
2. `code`: the culprit's own source line (the call the user wrote);
3. `near`: the lines of the culprit's function above it (where the client was made).
Within one kind of evidence, the first matching entry wins; `GENERIC_DB` (any `.execute(`)
comes last. Every entry has a unit test in tests/unit/test_advice.py.

Advice is checked against the code it is shown on: a fix whose premise is false for that
function is not given. "Make it a plain `def`" is wrong for a function that awaits
something (a `def` cannot await), so entries carry `text_awaiting`, said instead there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from asgiprof.analyze.near import BLOCK_START, DEF
from asgiprof.analyze.result import Kind
from asgiprof.model import Frame


@dataclass(frozen=True, slots=True)
class Advice:
    name: str
    kind: Kind
    text: str
    code: re.Pattern[str] | None = None  # matched against the culprit's source line
    path: re.Pattern[str] | None = None  # matched against files on the culprit's stack
    unless_path: re.Pattern[str] | None = None  # ... unless one of them matches this
    near: re.Pattern[str] | None = None  # matched against the function's lines above it
    # Said instead of `text` when the culprit's function awaits (no "make it a `def`").
    text_awaiting: str | None = None


def _c(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_SEP = r"[/\\]"

SQLALCHEMY_SYNC = Advice(
    "sync SQLAlchemy session",
    "io",
    "A sync SQLAlchemy Session waits for the database on the event loop: use `AsyncSession` "
    "(sqlalchemy.ext.asyncio) with an async driver (postgresql+asyncpg, sqlite+aiosqlite, "
    "mysql+aiomysql) and `await session.execute(...)`, or make the route a plain `def` so "
    "it runs in the threadpool.",
    text_awaiting=(
        "A sync SQLAlchemy Session waits for the database on the event loop: use "
        "`AsyncSession` (sqlalchemy.ext.asyncio) with an async driver (postgresql+asyncpg, "
        "sqlite+aiosqlite, mysql+aiomysql) and `await session.execute(...)`."
    ),
    path=_c(rf"{_SEP}sqlalchemy{_SEP}"),
    unless_path=_c(rf"{_SEP}sqlalchemy{_SEP}(?:ext{_SEP}asyncio|util{_SEP}_concurrency_py3k)"),
    code=_c(r"\.query\("),
)

CATALOGUE: tuple[Advice, ...] = (
    Advice(
        "time.sleep",
        "io",
        "time.sleep() blocks the event loop: use `await asyncio.sleep(...)`.",
        code=_c(r"(?<!asyncio\.)\b(?:time\.)?sleep\s*\("),
    ),
    SQLALCHEMY_SYNC,
    Advice(
        "sqlite3",
        # sqlite runs inside the process: its queries compute (and read pages) on the
        # calling thread, so a sync query holds the loop thread on the CPU.
        "cpu",
        "sqlite3 calls block the event loop while sqlite reads and computes: use `aiosqlite` "
        "(or SQLAlchemy's AsyncSession with sqlite+aiosqlite), or move the work to a `def` "
        "route.",
        text_awaiting=(
            "sqlite3 calls block the event loop while sqlite reads and computes: use "
            "`aiosqlite` (or SQLAlchemy's AsyncSession with sqlite+aiosqlite), or run the "
            "query with `await anyio.to_thread.run_sync(...)`."
        ),
        path=_c(rf"{_SEP}sqlite3{_SEP}"),
        code=_c(r"\bsqlite3\."),
        near=_c(r"\bsqlite3\b"),
    ),
    Advice(
        "psycopg2 / psycopg (sync)",
        "io",
        "psycopg2 (and psycopg 3's sync Connection) wait for PostgreSQL on the event loop: use "
        "`asyncpg` or psycopg 3's `AsyncConnection`, or SQLAlchemy's AsyncSession with "
        "postgresql+asyncpg.",
        path=_c(rf"{_SEP}psycopg2{_SEP}|{_SEP}psycopg{_SEP}(?!.*_async\.py$)"),
        code=_c(r"\bpsycopg2?\."),
        near=_c(r"\bpsycopg2?\b"),
    ),
    Advice(
        "PyMySQL / mysqlclient",
        "io",
        "PyMySQL and mysqlclient are synchronous: use `aiomysql` or `asyncmy`, or SQLAlchemy's "
        "AsyncSession with mysql+aiomysql.",
        path=_c(rf"{_SEP}(?:pymysql|MySQLdb){_SEP}"),
        near=_c(r"\b(?:pymysql|MySQLdb)\b"),
    ),
    Advice(
        "HTTP client per request",
        "cpu",
        "Creating an HTTP client builds an SSL context (it reads and parses the CA bundle) on "
        "the event loop, for every request that makes one: create one `httpx.AsyncClient` "
        "(or aiohttp `ClientSession`) in the app's lifespan, keep it on `app.state`, and "
        "reuse it (it also pools connections).",
        path=_c(rf"{_SEP}httpx{_SEP}_config\.py$|{_SEP}certifi{_SEP}"),
        code=_c(
            r"\bhttpx\.(?:Async)?Client\s*\(|\bAsyncClient\s*\(|\bClientSession\s*\("
            r"|\bssl\.create_default_context\s*\("
        ),
    ),
    Advice(
        "requests",
        "io",
        "requests is synchronous and blocks the event loop for the whole HTTP call: use "
        "`httpx.AsyncClient` (await client.get(...)) or aiohttp.",
        path=_c(rf"{_SEP}(?:requests|urllib3){_SEP}"),
        code=_c(r"\brequests\.(?:get|post|put|patch|delete|head|request|Session)\b"),
    ),
    Advice(
        "httpx (sync)",
        "io",
        "httpx's sync API (`httpx.get`, `httpx.Client`) blocks the event loop: use "
        "`httpx.AsyncClient` and `await client.get(...)`.",
        code=_c(r"\bhttpx\.(?:get|post|put|patch|delete|head|request|stream|Client)\b"),
    ),
    Advice(
        "urllib / http.client",
        "io",
        "urllib/http.client calls are synchronous: use `httpx.AsyncClient` or aiohttp.",
        path=_c(rf"{_SEP}(?:urllib{_SEP}request|http{_SEP}client)\.py$"),
        code=_c(r"\burlopen\s*\(|\bHTTPS?Connection\b"),
    ),
    Advice(
        "pymongo",
        "io",
        "pymongo's MongoClient is synchronous: use pymongo's `AsyncMongoClient` (or motor).",
        path=_c(rf"{_SEP}pymongo{_SEP}(?!asynchronous{_SEP})"),
        near=_c(r"\bMongoClient\b|\bpymongo\b"),
    ),
    Advice(
        "redis (sync)",
        "io",
        "The sync redis client blocks the event loop on every command: use "
        "`redis.asyncio.Redis` and await it.",
        path=_c(rf"{_SEP}redis{_SEP}(?!asyncio{_SEP})"),
        near=_c(r"\bredis\.(?:Redis|StrictRedis|from_url)\b"),
    ),
    Advice(
        "subprocess",
        "io",
        "subprocess.run/check_output wait synchronously: use "
        "`await asyncio.create_subprocess_exec(...)`.",
        path=_c(rf"{_SEP}subprocess\.py$"),
        code=_c(r"\bsubprocess\.(?:run|call|check_call|check_output)\b|\bos\.system\("),
    ),
    Advice(
        "password hashing",
        "cpu",
        "Password hashing is deliberately slow CPU work: run it off the loop with "
        "`await anyio.to_thread.run_sync(...)` (hashlib and bcrypt release the GIL) or "
        "`loop.run_in_executor`.",
        path=_c(rf"{_SEP}(?:bcrypt|passlib|argon2){_SEP}"),
        code=_c(r"\bpbkdf2_hmac\b|\bscrypt\b|\bbcrypt\.|\bhashpw\b|\bcheckpw\b"),
    ),
    Advice(
        "pandas",
        "cpu",
        "pandas work holds the loop: offload it with `anyio.to_thread.run_sync` or a "
        "process pool (`loop.run_in_executor(ProcessPoolExecutor(), ...)`).",
        path=_c(rf"{_SEP}(?:pandas|numpy){_SEP}"),
        code=_c(r"\bpd\.|\bpandas\.|\.to_csv\(|\.read_csv\(|\.groupby\("),
    ),
    Advice(
        "large JSON",
        "cpu",
        "Encoding/decoding large JSON on the loop is CPU work: use orjson, stream or paginate "
        "the payload, or offload it with `anyio.to_thread.run_sync`.",
        path=_c(rf"{_SEP}json{_SEP}(?:encoder|decoder|__init__)\.py$"),
        code=_c(r"\bjson\.(?:dumps|loads|dump|load)\s*\("),
    ),
    Advice(
        "sorting",
        "cpu",
        "Sorting a big list on the loop is CPU work in C (with a `key=` function, Python work "
        "too): sort less (paginate, `heapq.nlargest` for a top N, ORDER BY in the database), "
        "or offload it with `await anyio.to_thread.run_sync(sorted, items)`.",
        code=_c(r"\bsorted\s*\(|\.sort\s*\("),
    ),
    Advice(
        "response encoding",
        "cpu",
        "FastAPI's jsonable_encoder walks a big response object by object on the loop: "
        "paginate, return a pre-serialized `Response` (orjson bytes), or declare a "
        "`response_model` so pydantic serializes it in Rust.",
        path=_c(rf"{_SEP}fastapi{_SEP}encoders\.py$"),
    ),
    Advice(
        "fsync",
        "io",
        "`os.fsync` (and `flush` before it) waits until the disk has the data, on the event "
        "loop, in every request that runs it: write per-request records (audit or access "
        "logs) from a background task or a `logging.handlers.QueueHandler` thread, or batch "
        "them and sync once in a while with `await anyio.to_thread.run_sync(os.fsync, fd)`.",
        code=_c(r"\bos\.(?:fsync|fdatasync)\s*\(|\.flush\s*\(\s*\)"),
    ),
    Advice(
        "file I/O",
        "io",
        "Reading or writing files blocks the loop on slow disks and big files: use "
        "`anyio.Path` / aiofiles, or `anyio.to_thread.run_sync`.",
        path=_c(rf"{_SEP}(?:pathlib|shutil)\.py$"),
        code=_c(r"\bopen\s*\(|\.read(?:_text|_bytes)?\s*\(|\.write(?:_text|_bytes|lines)?\s*\("),
    ),
)

# Any `.execute(` or `.fetchall()` without stronger evidence: a database driver, but which?
GENERIC_DB = Advice(
    "sync database call",
    "io",
    "A synchronous database call waits on the event loop: use the driver's async API "
    "(aiosqlite for sqlite3, asyncpg or psycopg's AsyncConnection for psycopg2, aiomysql for "
    "PyMySQL, SQLAlchemy's AsyncSession with one of them), or make the route a plain `def`.",
    code=_c(r"\.execute(?:many)?\(|\.fetch(?:all|one|many)\(|\.commit\(\)"),
    text_awaiting=(
        "A synchronous database call waits on the event loop: use the driver's async API "
        "(aiosqlite for sqlite3, asyncpg or psycopg's AsyncConnection for psycopg2, aiomysql "
        "for PyMySQL, SQLAlchemy's AsyncSession with one of them)."
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
# The function also awaits: it cannot become a `def`.
GENERIC_CPU_AWAITING = (
    "CPU-bound work in an `async def` holds the event loop: run it with "
    "`await anyio.to_thread.run_sync(...)` (C code that releases the GIL) or in a process "
    "pool (`await loop.run_in_executor(pool, ...)`) for pure-Python work."
)
GENERIC_IO_AWAITING = (
    "A synchronous wait in an `async def` holds the event loop: use the library's async "
    "API, or run the call with `await anyio.to_thread.run_sync(...)`."
)
# Kind unknown (neither clearly waiting nor clearly computing): both remedies apply.
GENERIC_UNKNOWN = (
    "This line holds the event loop synchronously (see why its kind is unknown): if it "
    "waits (network, disk, a lock), use an async API or `await anyio.to_thread.run_sync(...)`;"
    " if it computes, move the work to a thread or process pool."
)
_AWAIT = re.compile(r"\bawait\b|\basync\s+(?:with|for)\b")
FUNCTION_LINES = 80  # how far function_awaits reads above and below the line


def function_awaits(read_line: Callable[[str, int], str | None], file: str, line: int) -> bool:
    """Whether the function holding `file:line` awaits anything: its lines from its `def`
    down to the next `def`, `class` or decorator line. Lines come stripped (SourceCache
    keeps no indentation, and a saved report's sources are stripped too), so the end of a
    function is where the next block starts, not where the indentation returns."""
    found_def = False
    for number in range(line, max(0, line - FUNCTION_LINES), -1):
        text = read_line(file, number)
        if text is None:
            return False
        if _AWAIT.search(text):
            return True
        if DEF.match(text):
            found_def = True
            break
    if not found_def:
        return False
    for number in range(line + 1, line + FUNCTION_LINES):
        text = read_line(file, number)
        if text is None:
            break
        text = text.strip()
        if BLOCK_START.match(text):
            break
        if not text.startswith("#") and _AWAIT.search(text):
            return True
    return False


def _path_matches(entry: Advice, files: Sequence[str]) -> bool:
    if entry.path is None or not any(entry.path.search(f) for f in files):
        return False
    return entry.unless_path is None or not any(entry.unless_path.search(f) for f in files)


# Files where a library waits for I/O or hashes in C: a stack held still there under an
# `await` line of the user's is a sync call hidden in an "async" library (a quick step of
# pure-Python library code, such as building a SQLAlchemy statement, is not).
_BLOCKING_CALL_FILES = re.compile(
    rf"{_SEP}(?:socket|ssl|subprocess)\.py$|"
    rf"{_SEP}(?:sqlite3|psycopg2|pymysql|MySQLdb|requests|urllib3|pymongo|bcrypt|passlib|"
    rf"argon2){_SEP}|{_SEP}http{_SEP}client\.py$|{_SEP}redis{_SEP}(?!asyncio{_SEP})"
)


def is_blocking_call(stack: Sequence[Frame]) -> bool:
    """Does `stack` (what an await line called) run a library call known to block?"""
    return any(_BLOCKING_CALL_FILES.search(f.file) for f in stack)


def find_advice(
    code: str | None, stack: Sequence[Frame], near: Sequence[str] = ()
) -> Advice | None:
    """The catalogue entry for a culprit: `stack` is the culprit frame and what it called,
    `near` the source lines of its function above it."""
    files = [f.file for f in stack]
    for entry in CATALOGUE:
        if _path_matches(entry, files):
            return entry
    if code:
        for entry in CATALOGUE:
            if entry.code is not None and entry.code.search(code):
                return entry
    for line in near:
        for entry in CATALOGUE:
            if entry.near is not None and entry.near.search(line):
                return entry
    if code and GENERIC_DB.code is not None and GENERIC_DB.code.search(code):
        return GENERIC_DB
    return None


def advice_text(entry: Advice | None, kind: Kind, awaits: bool = False) -> str | None:
    """The fix to show: the entry's (without "make it a `def`" when the function
    `awaits`), else the generic one for the kind."""
    if entry is not None:
        return entry.text_awaiting if awaits and entry.text_awaiting else entry.text
    if kind == "cpu":
        return GENERIC_CPU_AWAITING if awaits else GENERIC_CPU
    if kind == "io":
        return GENERIC_IO_AWAITING if awaits else GENERIC_IO
    return GENERIC_UNKNOWN
