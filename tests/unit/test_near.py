"""Where a culprit's client was made: its function's lines, then the definitions in its
file of the names it uses, read by the advice catalogue (analyze/near.py)."""

from __future__ import annotations

from asgiprof.analyze.advice import GENERIC_DB, find_advice
from asgiprof.analyze.near import HELPER_LINES, Definitions, lines_above

APP = "/srv/app/main.py"
SOURCE = """\
import sqlite3
import psycopg2

_pool = []


def _sync_connection():
    if not _pool:
        _pool.append(sqlite3.connect("app.db"))
    return _pool[0]


def other():
    conn = psycopg2.connect("postgresql://db")
    return conn


async def report(category):
    count = await count_items(category)
    conn = _sync_connection()
    (total,) = conn.execute(QUERY, (7,)).fetchone()
    return {"total": total}


async def direct():
    (total,) = _sync_connection().execute(QUERY).fetchone()
    return total


async def unknown_origin(conn):
    return conn.execute(QUERY).fetchall()


async def long_signature(
    category: str,
    conn: Connection,
):
    rows = conn.execute(QUERY).fetchmany(10)
    return rows
"""


class Source:
    """A file's stripped lines as analyze() reads them, counting the reads."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.reads = 0

    def read_line(self, file: str, line: int) -> str | None:
        self.reads += 1
        if file != APP or not 1 <= line <= len(self.lines):
            return None
        return self.lines[line - 1].strip()

    def line_of(self, text: str) -> int:
        return next(i + 1 for i, t in enumerate(self.lines) if text in t)

    def code(self, text: str) -> str:
        return self.lines[self.line_of(text) - 1].strip()


def advice_for(text: str, source: str = SOURCE) -> str | None:
    src = Source(source)
    line = src.line_of(text)
    near = lines_above(src.read_line, APP, line)
    made = Definitions(src.read_line).made_lines(APP, [src.code(text), *near], local_to=near)
    found = find_advice(src.code(text), [], [*near, *made])
    return found.name if found is not None else None


def test_a_helper_called_on_the_line_names_the_driver() -> None:
    # `_sync_connection().execute(...)`: the line says only "a database call"; the helper's
    # body, in the same file, says sqlite3 (whose queries compute on the calling thread)
    src = Source(SOURCE)
    text = "_sync_connection().execute"
    near = lines_above(src.read_line, APP, src.line_of(text))
    assert find_advice(src.code(text), [], near) is GENERIC_DB
    assert advice_for(text) == "sqlite3"
    made = Definitions(src.read_line).made_lines(APP, [src.code(text)])
    assert "def _sync_connection():" in made and "return _pool[0]" in made
    found = find_advice(src.code(text), [], made)
    assert found is not None and found.kind == "cpu"


def test_a_local_is_followed_to_the_helper_that_made_it_not_to_another_functions_local() -> None:
    # `conn = _sync_connection()` above the line: `conn` is this function's own; the
    # `conn = psycopg2.connect(...)` earlier in the file belongs to another function
    assert advice_for("conn.execute(QUERY, (7,))") == "sqlite3"


def test_a_name_with_no_definition_in_the_file_stays_a_generic_database_call() -> None:
    # a parameter: its origin is the caller, not another function's `conn = psycopg2...`;
    # and the file's imports are no evidence
    assert advice_for("return conn.execute(QUERY).fetchall()") == GENERIC_DB.name
    # ... also when the signature runs over several lines
    assert advice_for("rows = conn.execute(QUERY).fetchmany(10)") == GENERIC_DB.name


def test_a_module_level_client_names_its_library() -> None:
    source = (
        "import redis\n\ncache = redis.Redis(host='cache')\n\n"
        "async def get(key):\n    return cache.get(key)\n"
    )
    src = Source(source)
    made = Definitions(src.read_line).made_lines(APP, [src.code("return cache.get")])
    assert made == ["cache = redis.Redis(host='cache')"]
    found = find_advice("return cache.get(key)", [], made)
    assert found is not None and found.name.startswith("redis")


def test_a_file_is_read_once_for_its_definitions() -> None:
    src = Source(SOURCE)
    defs = Definitions(src.read_line)
    defs.made_lines(APP, ["_sync_connection().execute(q)"])
    first = src.reads
    assert first > len(src.lines)  # the whole file, once
    defs.made_lines(APP, ["_sync_connection().execute(q)"])
    # the second lookup reads the helper again (its def and body), not the whole file
    assert src.reads - first <= HELPER_LINES + 1, src.reads - first
