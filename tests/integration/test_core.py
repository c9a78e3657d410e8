"""Issue 2 end to end: `asgiprof run` and `asgiprof attach` on real uvicorn under real load
find the line that blocks the event loop, its route and its blocked time."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import psutil
import pytest

from asgiprof import store
from asgiprof.demo import uvicorn_command
from asgiprof.record.loadgen import drive_load, free_port, start_load_thread
from tests.planted_truth import planted_truth, truth_env
from tests.profiling import (
    culprit_at,
    finish,
    start_asgiprof,
    summary,
    wait_until_serving,
)
from tests.servers import HOST, ServerFactory, load_paths, planted_lines

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("needs_ptrace")]

BLOCKING_PATH = "/users/1"


@pytest.mark.timeout(120)
def test_run_finds_the_sleeping_line_its_route_and_its_blocked_time(
    tmp_path: Path, examples_dir: Path
) -> None:
    # GIVEN asgiprof launching the blocking example for 9 s (the server times its own
    # planted sleeps: the truth)
    port, out, truth_file = free_port(), tmp_path / "out", tmp_path / "truth.log"
    proc = start_asgiprof(
        "run",
        "--duration",
        "9",
        "--out",
        str(out),
        "--",
        *uvicorn_command("blocking_sleep", port),
        cwd=examples_dir,
        env=truth_env(truth_file),
    )
    try:
        # WHEN one client hits the blocking route and others the awaiting and def routes
        wait_until_serving(port)
        blocking = start_load_thread(
            f"http://{HOST}:{port}", [BLOCKING_PATH], duration_s=5.5, concurrency=1
        )
        others = drive_load(
            f"http://{HOST}:{port}", ["/healthy", "/sync"], duration_s=5.5, concurrency=4
        )
        assert blocking.join(15)
        done = finish(proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert done.returncode == 0, done.stderr
    served = blocking.result.for_path(BLOCKING_PATH).ok
    assert served >= 20 and others.ok >= 20

    # THEN the sleeping line is the top culprit, under its route, with the blocked time
    data = summary(out)
    (line,) = planted_lines(examples_dir / "blocking_sleep.py")
    culprit = culprit_at(data, examples_dir / "blocking_sleep.py", line)
    assert culprit is not None, data["culprits"]
    assert culprit["rank"] == 1
    assert culprit["route"] == "GET /users/{user_id}"
    assert (
        culprit["code"]
        == "time.sleep(0.1)  # planted: sync sleep in `async def` blocks the event loop"
    )
    assert culprit["kind"] == "io"
    assert culprit["advice"] and "asyncio.sleep" in culprit["advice"]
    # ... with the blocked time the app measured, within the sampling error of the samples
    truth = planted_truth(out, truth_file, examples_dir / "blocking_sleep.py", line)
    assert truth.logged >= served, (truth, served)
    assert abs(culprit["blocked_ms"] - truth.ms) <= truth.tolerance_ms(), (
        truth.describe(culprit["blocked_ms"]),
        culprit,
    )
    # ... the awaiting route is no culprit, and the def route's sleep is threadpool time
    assert [c["route"] for c in data["culprits"]] == ["GET /users/{user_id}"]
    routes = {r["route"]: r for r in data["routes"]}
    assert routes["GET /sync"]["threadpool_ms"] > 1000
    assert routes["GET /sync"]["blocked_ms"] == 0
    assert data["event_loop"]["longest_block_ms"] >= 80
    assert data["sampling"]["samples"] > 0 and data["target"]["server"] == "uvicorn"
    # ... the terminal shows it, and every artifact is there
    assert "time.sleep(0.1)" in done.stdout and "GET /users/{user_id}" in done.stdout
    for name in ("report.html", "profile.speedscope.json", "stacks.folded", "meta.json"):
        assert (out / name).is_file(), name
    # py-spy's raw output is kept: speedscope chunks (the samples py-spy took, in order;
    # chrometrace only when asked for, record/sampler.chunk_format)
    chunks = store.chunk_files(out)
    assert chunks and all(c.name.endswith(".speedscope.json") for c in chunks), chunks
    # ... and consecutive chunks nearly touch: the next py-spy starts before the last chunk
    # is sealed (typically 15-60 ms apart; generous for a loaded 2-core machine)
    spans = sorted(
        (meta["start_s"], meta["end_s"])
        for meta in (json.loads(f.read_text()) for f in (out / "raw").glob("chunk-*[0-9].json"))
    )
    assert len(spans) >= 3
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(spans)]
    assert max(gaps) < 0.5, gaps
    # ... and the server was stopped
    assert not [
        p for p in psutil.Process().children(recursive=True) if "uvicorn" in " ".join(p.cmdline())
    ]


@pytest.mark.timeout(120)
def test_attach_finds_the_culprit_and_leaves_the_server_serving(
    tmp_path: Path, server_factory: ServerFactory, examples_dir: Path
) -> None:
    server = server_factory("blocking_sleep")
    out = tmp_path / "out"
    proc = start_asgiprof(
        "attach", str(server.pid), "--duration", "6", "--out", str(out), cwd=tmp_path
    )
    load = drive_load(server.url, [BLOCKING_PATH, "/healthy"], duration_s=5, concurrency=2)
    done = finish(proc, 60)
    assert done.returncode == 0, done.stderr
    assert load.for_path(BLOCKING_PATH).ok >= 10
    data = summary(out)
    (line,) = planted_lines(examples_dir / "blocking_sleep.py")
    assert culprit_at(data, examples_dir / "blocking_sleep.py", line) is not None
    assert data["target"]["pids"][0] == server.pid
    # THEN the same process still answers
    after = drive_load(server.url, ["/healthy"], duration_s=1, concurrency=1)
    assert after.ok >= 1 and after.failed == 0
    assert psutil.Process(server.pid).status() not in (
        psutil.STATUS_STOPPED,
        psutil.STATUS_TRACING_STOP,
    )


@pytest.mark.timeout(120)
def test_a_healthy_app_under_load_has_no_culprit(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    server = server_factory("healthy")
    out = tmp_path / "out"
    proc = start_asgiprof(
        "attach", str(server.pid), "--duration", "6", "--out", str(out), cwd=tmp_path
    )

    load = drive_load(server.url, load_paths(server.cwd, "healthy"), duration_s=5, concurrency=8)
    done = finish(proc, 60)
    assert done.returncode == 0, done.stderr
    assert load.ok > 50
    data = summary(out)
    assert data["culprits"] == []
    assert data["event_loop"]["utilization"] > 0  # it did see the loop working
