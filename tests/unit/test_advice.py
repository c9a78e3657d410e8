"""The advice catalogue: every entry is found by its evidence and names the async fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from asgiprof.analyze.advice import (
    CATALOGUE,
    GENERIC_CPU,
    GENERIC_DB,
    GENERIC_IO,
    GENERIC_UNKNOWN,
    Advice,
    advice_text,
    find_advice,
    function_awaits,
)
from asgiprof.analyze.result import Kind
from asgiprof.model import Frame
from asgiprof.store.sources import SourceCache

SITE = "/venv/lib/python3.11/site-packages"
LIB = "/usr/lib/python3.11"
USER = Frame("handler", "/srv/app/main.py", 10)


def lib(path: str, function: str = "f", line: int = 1) -> Frame:
    return Frame(function, path, line)


def entry(name: str) -> Advice:
    return next(e for e in (*CATALOGUE, GENERIC_DB) if e.name == name)


# (entry name, culprit source line, frames the line called, lines above it, words in the fix)
CASES: list[tuple[str, str | None, list[Frame], list[str], tuple[str, ...]]] = [
    ("time.sleep", "time.sleep(0.1)", [], [], ("asyncio.sleep",)),
    ("time.sleep", "sleep(0.25)  # from time import sleep", [], [], ("asyncio.sleep",)),
    (
        "sync SQLAlchemy session",
        "rows = db.execute(stmt).all()",
        [
            lib(f"{SITE}/sqlalchemy/orm/session.py", "Session.execute"),
            lib(f"{SITE}/sqlalchemy/engine/default.py", "DefaultDialect.do_execute"),
        ],
        [],
        ("AsyncSession", "asyncpg", "aiosqlite"),
    ),
    ("sync SQLAlchemy session", "users = db.query(User).all()", [], [], ("AsyncSession",)),
    (
        "sqlite3",
        "rows = conn.execute(query).fetchall()",
        [],
        ["conn = sqlite3.connect(DB_PATH)"],
        ("aiosqlite",),
    ),
    ("sqlite3", "sqlite3.connect(path).execute(q)", [], [], ("aiosqlite",)),
    (
        "psycopg2 / psycopg (sync)",
        "cur.execute(SQL, (user_id,))",
        [lib(f"{SITE}/psycopg2/extras.py", "RealDictCursor.execute")],
        [],
        ("asyncpg", "AsyncConnection"),
    ),
    (
        "psycopg2 / psycopg (sync)",
        "cur.execute(SQL)",
        [lib(f"{SITE}/psycopg/cursor.py", "Cursor.execute")],
        [],
        ("asyncpg",),
    ),
    (
        "psycopg2 / psycopg (sync)",
        "cur.execute(SQL)",
        [],
        ["with psycopg2.connect(DSN) as conn, conn.cursor() as cur:"],
        ("asyncpg",),
    ),
    (
        "PyMySQL / mysqlclient",
        "cursor.execute(SQL)",
        [lib(f"{SITE}/pymysql/cursors.py", "Cursor.execute")],
        [],
        ("aiomysql",),
    ),
    (
        "requests",
        "r = requests.get(url, timeout=5)",
        [lib(f"{SITE}/requests/api.py", "get"), lib(f"{SITE}/urllib3/connectionpool.py")],
        [],
        ("httpx.AsyncClient",),
    ),
    ("requests", "resp = requests.post(URL, json=body)", [], [], ("httpx.AsyncClient",)),
    ("httpx (sync)", "r = httpx.get(url)", [], [], ("httpx.AsyncClient",)),
    (
        "urllib / http.client",
        "data = urlopen(url).read()",
        [lib(f"{LIB}/urllib/request.py", "urlopen"), lib(f"{LIB}/http/client.py")],
        [],
        ("httpx.AsyncClient",),
    ),
    (
        "pymongo",
        "doc = users.find_one({'_id': uid})",
        [lib(f"{SITE}/pymongo/synchronous/collection.py", "Collection.find_one")],
        [],
        ("AsyncMongoClient",),
    ),
    (
        "redis (sync)",
        "value = cache.get(key)",
        [lib(f"{SITE}/redis/commands/core.py", "BasicKeyCommands.get")],
        [],
        ("redis.asyncio",),
    ),
    ("redis (sync)", "value = r.get(key)", [], ["r = redis.Redis(host=HOST)"], ("redis.asyncio",)),
    (
        "subprocess",
        "out = subprocess.run(cmd, capture_output=True)",
        [lib(f"{LIB}/subprocess.py", "run")],
        [],
        ("create_subprocess_exec",),
    ),
    ("subprocess", "os.system('convert a.png b.jpg')", [], [], ("create_subprocess_exec",)),
    (
        "password hashing",
        "key = hashlib.pbkdf2_hmac('sha256', pw, salt, 200_000)",
        [],
        [],
        ("to_thread",),
    ),
    (
        "password hashing",
        "ok = pwd_context.verify(password, hashed)",
        [lib(f"{SITE}/passlib/context.py", "CryptContext.verify")],
        [],
        ("to_thread",),
    ),
    ("password hashing", "bcrypt.checkpw(pw, hashed)", [], [], ("to_thread",)),
    ("sorting", "ranked = sorted(RANKING, key=_rank_key)", [], [], ("nlargest", "to_thread")),
    ("sorting", "rows.sort(key=lambda r: r.price)", [], [], ("ORDER BY",)),
    (
        "pandas",
        "frame = df.groupby('user').sum()",
        [lib(f"{SITE}/pandas/core/groupby/groupby.py", "GroupBy.sum")],
        [],
        ("process pool",),
    ),
    ("pandas", "df = pd.read_csv(path)", [], [], ("process pool",)),
    (
        "large JSON",
        "body = json.dumps(report)",
        [lib(f"{LIB}/json/__init__.py", "dumps"), lib(f"{LIB}/json/encoder.py", "iterencode")],
        [],
        ("orjson",),
    ),
    (
        "response encoding",
        "return jsonable_encoder(items)",
        [lib(f"{SITE}/fastapi/encoders.py", "jsonable_encoder")],
        [],
        ("paginate",),
    ),
    (
        "file I/O",
        "data = Path(path).read_bytes()",
        [lib(f"{LIB}/pathlib.py", "Path.read_bytes")],
        [],
        ("aiofiles",),
    ),
    ("file I/O", "with open(path, 'rb') as f:", [], [], ("aiofiles",)),
    (
        "HTTP client per request",
        "async with httpx.AsyncClient() as client:",
        [],
        [],
        ("lifespan", "app.state"),
    ),
    (
        "HTTP client per request",
        "_client = httpx.AsyncClient(timeout=5)",
        [lib(f"{SITE}/httpx/_config.py", "create_ssl_context"), lib(f"{LIB}/ssl.py")],
        ["if _client is None:"],
        ("lifespan",),
    ),
    ("fsync", "os.fsync(log.fileno())", [], [], ("QueueHandler", "background task")),
    ("fsync", "log.flush()", [], ["log.write(line)"], ("QueueHandler",)),
    ("sync database call", "cur.execute(QUERY)", [], [], ("asyncpg", "aiosqlite")),
]


@pytest.mark.parametrize(("name", "code", "called", "near", "fix"), CASES)
def test_each_entry_is_found_by_its_evidence(
    name: str, code: str | None, called: list[Frame], near: list[str], fix: tuple[str, ...]
) -> None:
    found = find_advice(code, [USER, *called], near)
    assert found is not None and found.name == name
    assert all(word in found.text for word in fix)


def test_every_catalogue_entry_has_a_case() -> None:
    assert {e.name for e in CATALOGUE} | {GENERIC_DB.name} == {c[0] for c in CASES}


def test_awaited_calls_get_no_advice() -> None:
    assert find_advice("await asyncio.sleep(0.1)", [USER]) is None
    assert find_advice("data = await client.get(url)", [USER]) is None


def test_async_session_is_not_the_sync_session() -> None:
    # AsyncSession runs the ORM's files under greenlets: the sync advice must not apply.
    called = [
        lib(f"{SITE}/sqlalchemy/ext/asyncio/session.py", "AsyncSession.execute"),
        lib(f"{SITE}/sqlalchemy/util/_concurrency_py3k.py", "greenlet_spawn"),
        lib(f"{SITE}/sqlalchemy/orm/session.py", "Session.execute"),
    ]
    found = find_advice("rows = (await session.execute(q)).all()", [USER, *called])
    assert found is None or found.name != "sync SQLAlchemy session"


def test_async_clients_of_the_same_packages_are_not_matched() -> None:
    assert find_advice("x", [USER, lib(f"{SITE}/redis/asyncio/client.py")]) is None
    assert find_advice("x", [USER, lib(f"{SITE}/pymongo/asynchronous/collection.py")]) is None
    assert find_advice("x", [USER, lib(f"{SITE}/psycopg/cursor_async.py")]) is None


def test_library_frames_beat_the_source_line() -> None:
    # `.execute(` alone could be any driver: the SQLAlchemy frames say which.
    called = [lib(f"{SITE}/sqlalchemy/engine/base.py", "Connection.execute")]
    found = find_advice("conn.execute(q)", [USER, *called], ["conn = sqlite3.connect(p)"])
    assert found is not None and found.name == "sync SQLAlchemy session"


def test_generic_text_by_kind_when_nothing_matches() -> None:
    assert advice_text(None, "cpu") == GENERIC_CPU
    assert advice_text(None, "io") == GENERIC_IO
    assert advice_text(None, "unknown") == GENERIC_UNKNOWN
    assert advice_text(entry("time.sleep"), "cpu") == entry("time.sleep").text


def test_a_lazily_created_async_client_is_not_told_to_become_a_def_route() -> None:
    found = find_advice("_client = httpx.AsyncClient()", [USER], ["if _client is None:"])
    assert found is not None and found.name == "HTTP client per request"
    text = advice_text(found, "io", awaits=True)
    assert text is not None and "lifespan" in text and "`def`" not in text


def _source(lines: list[str]) -> Callable[[str, int], str | None]:
    return lambda file, line: lines[line - 1] if 1 <= line <= len(lines) else None


FUNCTION = [
    "async def get_orders(db: AsyncSession = Depends(session)):",
    "    rows = sync_lookup(db)",
    "    more = await db.execute(q)",
    "    return rows",
    "",
    "async def plain():",
    "    time.sleep(1)",
    "    return 1",
]


def test_function_awaits_reads_the_whole_function_and_only_it() -> None:
    read = _source(FUNCTION)
    assert function_awaits(read, "f.py", 2)  # the await is below the line
    assert not function_awaits(read, "f.py", 7)  # the next function's await is not its own


def test_function_awaits_through_the_source_cache(tmp_path: Path) -> None:
    # SourceCache hands out stripped lines (as a saved report's sources.json holds them):
    # an await below the culprit line must still count, and the next function's must not.
    app = tmp_path / "app.py"
    app.write_text(
        "import time\n"
        "\n"
        "@app.get('/a')\n"
        "async def a():\n"
        "    time.sleep(1)\n"
        "    if True:\n"
        "        await other()\n"
        "\n"
        "@app.get('/b')\n"
        "async def b():\n"
        "    time.sleep(1)\n"
        "    return 1\n"
        "\n"
        "async def c():\n"
        "    await other()\n"
    )
    cache = SourceCache()
    assert function_awaits(cache.read_line, str(app), 5)
    assert not function_awaits(cache.read_line, str(app), 11)


@pytest.mark.parametrize("kind", ["cpu", "io"])
def test_no_def_advice_for_a_function_that_awaits(kind: Kind) -> None:
    for entry_ in (None, entry("sync database call"), entry("sqlite3")):
        text = advice_text(entry_, kind, awaits=True)
        assert text is not None and "`def`" not in text, (entry_, text)
        plain = advice_text(entry_, kind, awaits=False)
        assert plain is not None and "def" in plain  # the control: it is said otherwise


def test_unknown_kind_says_why() -> None:
    from asgiprof.analyze.culprits import decide_kind
    from asgiprof.analyze.result import AnalysisParams

    params = AnalysisParams()
    kind, _, why = decide_kind(None, None, None, params)
    assert kind == "unknown" and "could not be split" in why
    kind, _, why = decide_kind(0.5, None, None, params)
    assert kind == "unknown" and "on the CPU 50%" in why
    assert decide_kind(0.9, None, None, params)[0] == "cpu"


def test_what_a_known_call_does_outranks_the_cpu_fit_but_not_a_direct_measurement() -> None:
    from asgiprof.analyze.culprits import decide_kind
    from asgiprof.analyze.result import AnalysisParams

    params = AnalysisParams()
    # pbkdf2 fitted at 27% on a CPU over a loaded server's windows: still cpu
    kind, ratio, why = decide_kind(None, 0.27, "cpu", params)
    assert (kind, ratio) == ("cpu", 0.27) and "known cpu call" in why and "27%" in why
    # ... the fit decides where the catalogue only guessed (a `.execute(` of some driver)
    assert decide_kind(None, 0.85, "io", params, guessed=True)[0] == "cpu"
    # ... and a direct measurement of its isolated episodes decides before either
    assert decide_kind(0.1, 0.9, "cpu", params)[0] == "io"
    assert decide_kind(None, 0.1, None, params)[0] == "io"  # no catalogue: the fit


def test_a_dependency_that_awaits_is_not_told_to_become_a_def() -> None:
    from asgiprof.analyze.dependencies import dependency_findings
    from asgiprof.analyze.result import AnalysisParams, Culprit, DependencyStats, DependencySummary

    source = [
        "async def current_user(session: AsyncSession = Depends(db)):",
        "    claims = jwt_decode_sync(token)",  # the blocking line (line 2)
        "    return await session.get(User, claims['sub'])",
        "",
        "async def plain_dep():",
        "    time.sleep(0.05)",  # line 6
        "    return 1",
    ]
    read = _source(source)

    def summary_for(name: str, line: int) -> DependencySummary:
        stats = DependencyStats(name, "deps.py", line, "loop", 500.0, 400.0, 0.0, 50, ("GET /me",))
        return DependencySummary(0.0, (stats,))

    def culprit_in(name: str, line: int) -> Culprit:
        return Culprit(
            1,
            "deps.py",
            line,
            name,
            None,
            "GET /me",
            ("GET /me",),
            "cpu",
            400.0,
            8,
            60.0,
            (),
            0,
            None,
            None,
            context="dependency",
            context_name=name,
        )

    params = AnalysisParams()
    (awaiting,) = dependency_findings(
        summary_for("current_user", 2), [culprit_in("current_user", 2)], params, read
    )
    assert "plain `def` so" not in awaiting.advice and "to_thread" in awaiting.advice
    (plain,) = dependency_findings(
        summary_for("plain_dep", 6), [culprit_in("plain_dep", 6)], params, read
    )
    assert "plain `def` so FastAPI runs it in the threadpool" in plain.advice
