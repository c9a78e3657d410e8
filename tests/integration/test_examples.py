"""Every example app serves its routes under real uvicorn and load on 127.0.0.1, and the
planted blocking calls really block: concurrent requests to them run one after another."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from asgiprof.record.loadgen import drive_load
from asgiprof.record.sampler import find_pyspy
from tests.servers import ServerFactory, load_paths, planted_lines

# Example module -> how many lines in it are marked as planted blocking calls.
EXAMPLES = {
    "blocking_sleep": 1,
    "sync_db": 1,
    "cpu_work": 1,
    "healthy": 0,
    "demo_app": 4,
    "sync_db_postgres": 2,
    "middleware_stack": 1,
    "dependencies": 1,
    "dependency_tree": 3,
    "threadpool_saturation": 0,
    "leaky_session": 0,
    "leaky_session_fixed": 0,
    "gil_contention": 1,
    "background_task": 1,
}
# Examples that need a service the test starts elsewhere (tests/integration/test_causes.py).
NEEDS_SERVICE = {"sync_db_postgres"}


def test_every_example_is_documented_and_marks_its_planted_lines(examples_dir: Path) -> None:
    readme = (examples_dir / "README.md").read_text(encoding="utf-8")
    on_disk = {path.stem for path in examples_dir.glob("*.py")}
    assert set(EXAMPLES) <= on_disk
    for module in sorted(on_disk):
        planted = EXAMPLES.get(module)
        path = examples_dir / f"{module}.py"
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert docstring, f"{module}: say what is wrong and the fix"
        if planted or planted_lines(path):
            assert "fix" in docstring.lower(), f"{module}: say what the fix is"
        assert f"`{module}.py`" in readme
        if planted is not None:
            assert len(planted_lines(path)) == planted, module
        assert load_paths(examples_dir, module)


@pytest.mark.integration
@pytest.mark.timeout(90)
@pytest.mark.parametrize("module", sorted(set(EXAMPLES) - NEEDS_SERVICE))
def test_example_answers_every_route_under_load(
    module: str, server_factory: ServerFactory, examples_dir: Path
) -> None:
    # GIVEN the example under uvicorn
    server = server_factory(module)
    paths = load_paths(examples_dir, module)
    # WHEN it is loaded for 2 s
    result = drive_load(server.url, paths, duration_s=2.0, concurrency=4, timeout_s=10.0)
    # THEN every route answered, and none failed
    for stats in result.paths:
        assert stats.ok > 0, f"{stats.path}: no successful request ({stats.first_error})"
        assert stats.failed == 0, f"{stats.path}: {stats.failed} failed ({stats.first_error})"


async def _concurrent_get_s(url: str, count: int) -> float:
    """Wall time for `count` GETs to `url` sent at once, each on its own connection."""
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(timeout=10.0, limits=limits, trust_env=False) as client:
        await client.get(url)  # warm up: the route's first call may import or compile
        started = time.perf_counter()
        responses = await asyncio.gather(*(client.get(url) for _ in range(count)))
        elapsed_s = time.perf_counter() - started
    assert [r.status_code for r in responses] == [200] * count
    return elapsed_s


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_blocking_route_serialises_requests_while_others_overlap(
    server_factory: ServerFactory,
) -> None:
    # GIVEN blocking_sleep: /users sleeps 0.1 s on the loop, /healthy awaits, /sync is threaded
    server = server_factory("blocking_sleep")
    # WHEN 8 requests go to each route at once
    blocking_s = asyncio.run(_concurrent_get_s(f"{server.url}/users/1", 8))
    healthy_s = asyncio.run(_concurrent_get_s(f"{server.url}/healthy", 8))
    threaded_s = asyncio.run(_concurrent_get_s(f"{server.url}/sync", 8))
    # THEN the blocking ones run one after another (8 x 0.1 s); the others overlap (~0.1 s)
    assert blocking_s >= 0.7
    assert healthy_s < 0.5
    assert threaded_s < 0.5


@pytest.mark.integration
@pytest.mark.timeout(90)
@pytest.mark.usefixtures("needs_ptrace")
def test_pyspy_sees_the_example_server_event_loop(server_factory: ServerFactory) -> None:
    server = server_factory("healthy")
    dump = subprocess.run(
        [find_pyspy(), "dump", "--pid", str(server.pid)],
        capture_output=True,
        text=True,
        timeout=30.0,
    )
    assert dump.returncode == 0, dump.stderr
    assert "uvicorn" in dump.stdout
    assert "run_forever" in dump.stdout
