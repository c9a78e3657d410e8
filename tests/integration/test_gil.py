"""GIL contention end to end: pure-Python CPU work in a `def` route, profiled under real load
with `asgiprof attach` on real uvicorn, is reported as starving the event loop of the GIL and
names the CPU line; the same app whose `def` route sleeps instead (releasing the GIL) is not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.profiling import attach_under_load, both
from tests.servers import ServerFactory, planted_lines

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("needs_ptrace")]

# Two of five requests compute a checksum (~70 ms of Python in a worker thread); the rest
# are light `async def` routes whose framework work on the loop needs the GIL.
PATHS = ("/reports/checksum", "/reports/checksum", "/items/1", "/items/2", "/healthy")
DURATION_S = 6.0
CONCURRENCY = 6


def gil_findings(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in data["findings"] if f["kind"] == "gil-contention"]


@pytest.mark.timeout(120)
def test_threadpool_cpu_work_starves_the_loop_of_the_gil_and_sleeping_workers_do_not(
    tmp_path: Path, server_factory: ServerFactory, examples_dir: Path
) -> None:
    # GIVEN the example app (its `def` route computes a checksum in pure Python) and the same
    # app whose `def` route sleeps as long instead
    cpu = server_factory("gil_contention", ready_path="/openapi.json")
    io = server_factory("gil_contention", app="io_app", ready_path="/openapi.json")
    # WHEN both are profiled for 6 s under the same concurrent load on all their routes
    p_cpu, p_io = both(
        lambda: attach_under_load(
            cpu,
            PATHS,
            tmp_path / "0",
            duration_s=DURATION_S,
            concurrency=CONCURRENCY,
            timeout_s=60.0,
        ),
        lambda: attach_under_load(
            io,
            PATHS,
            tmp_path / "1",
            duration_s=DURATION_S,
            concurrency=CONCURRENCY,
            timeout_s=60.0,
        ),
        DURATION_S + 120.0,
    )
    for p in (p_cpu, p_io):
        assert p.load.failed == 0, [s.first_error for s in p.load.paths]
        assert p.load.for_path("/reports/checksum").ok >= 10, p.load.paths
    # THEN the CPU app has a gil-contention finding naming the checksum line and its route
    (line,) = planted_lines(examples_dir / "gil_contention.py")
    (finding,) = gil_findings(p_cpu.data)
    assert finding["subject"] == "GET /reports/checksum", finding
    assert finding["pid"] == cpu.pid
    assert f"gil_contention.py:{line}) in GET /reports/checksum" in finding["detail"], finding
    assert finding["severity"] == "warning", finding
    assert "ProcessPoolExecutor" in finding["advice"]
    assert "starves the event loop of the GIL" in p_cpu.done.stdout
    # ... the line runs in the threadpool: it is no culprit of the loop
    assert not [c for c in p_cpu.data["culprits"] if c["line"] == line], p_cpu.data["culprits"]
    # ... and what the finding explains is not counted again in the culprit-less note
    stalls = int(finding["detail"].split(" blocking episode(s)")[0])
    assert stalls >= 3, finding
    assert stalls <= p_cpu.data["event_loop"]["episodes"]
    for note in p_cpu.data["notes"]:
        if "no single line of your code" in note:
            assert f"the gil-contention finding explains {stalls} more" in note, note
    # ... while the control, whose workers sleep with the GIL released, has none
    assert gil_findings(p_io.data) == [], p_io.data["findings"]
    routes = {r["route"]: r for r in p_io.data["routes"]}
    assert routes["GET /reports/checksum"]["threadpool_ms"] > 500  # its workers were busy


NATIVE_APP = """
\"\"\"A `def` login route hashing a password in native code that releases the GIL.\"\"\"
import asyncio
import hashlib

import argon2
import bcrypt
from fastapi import FastAPI

app = FastAPI()
HASHER = argon2.PasswordHasher(time_cost=4, memory_cost=32 * 1024, parallelism=1)
SALT = bcrypt.gensalt(rounds=11)


def hash_password() -> str:
    return {HASH}  # planted: native


@app.get("/login")
def login() -> dict[str, str]:
    return {{"token": hash_password()[-16:]}}


@app.get("/items/{{item_id}}")
async def get_item(item_id: int) -> dict[str, int]:
    return {{"item_id": item_id}}


@app.get("/healthy")
async def healthy() -> dict[str, str]:
    await asyncio.sleep(0.005)
    return {{"status": "ok"}}
"""
# Each about 50-150 ms of native work per call on a 2-CPU VM.
HASHES = {
    "pbkdf2": 'hashlib.pbkdf2_hmac("sha256", b"hunter2", b"salt", 150_000).hex()',
    "bcrypt": 'bcrypt.hashpw(b"hunter2", SALT).decode()',
    "argon2": 'HASHER.hash("hunter2")',
}
NATIVE_PATHS = ("/login", "/login", "/items/1", "/items/2", "/healthy")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("hashing", sorted(HASHES))
def test_workers_hashing_in_native_code_are_never_named_as_gil_holders(
    tmp_path: Path, server_factory: ServerFactory, hashing: str
) -> None:
    # GIVEN a `def` route spending its time in native hashing that releases the GIL, its
    # workers on CPU while the light async routes share the loop
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    app_file = app_dir / "native_hash.py"
    app_file.write_text(NATIVE_APP.format(HASH=HASHES[hashing]))
    (line,) = planted_lines(app_file)
    server = server_factory("native_hash", cwd=app_dir, ready_path="/openapi.json")
    # WHEN it is profiled for 6 s under the load of the GIL test
    p = attach_under_load(
        server,
        NATIVE_PATHS,
        tmp_path / "out",
        duration_s=DURATION_S,
        concurrency=CONCURRENCY,
        timeout_s=60.0,
    )
    assert p.load.failed == 0, [s.first_error for s in p.load.paths]
    assert p.load.for_path("/login").ok >= 10, p.load.paths
    routes = {r["route"]: r for r in p.data["routes"]}
    assert routes["GET /login"]["threadpool_ms"] > 500, routes  # the workers did hash
    # ... GIL holding was measured (py-spy --gil windows beside the sampling)
    assert list((tmp_path / "out" / "raw").glob("gil-*.speedscope.json"))
    # THEN no gil-contention finding names the hashing line (nor its route as the subject)
    for finding in gil_findings(p.data):
        assert f"native_hash.py:{line})" not in finding["detail"], finding
        assert finding["subject"] != "GET /login", finding
