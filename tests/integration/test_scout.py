"""--scout-rate on real servers: sampled slowly while the loop runs short steps, at the full
rate once a route blocks it, and the blocking line found (issue 16: pause a healthy server
less without losing the culprits of a blocked one).

Two uvicorn servers of one FastAPI app profiled at once (`asgiprof attach --rate 100
--scout-rate 20`): one loaded on a route that blocks the loop (`time.sleep` in an async
route), the control, a server of two worker processes (the signal is the busiest of their
loops), on a route that awaits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.profiling import attach_under_load, both, culprit_at
from tests.servers import ServerFactory, planted_lines

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("needs_ptrace")]

APP = """
import asyncio
import time

from fastapi import FastAPI

app = FastAPI()


@app.get("/block")
async def block() -> dict[str, int]:
    time.sleep(0.1)  # planted: blocks the loop
    return {"ok": 1}


@app.get("/wait")
async def wait() -> dict[str, int]:
    await asyncio.sleep(0.01)
    return {"ok": 1}
"""
SECONDS = 14


def _chunks(out: Path) -> list[dict[str, Any]]:
    return [orjson.loads(p.read_bytes()) for p in sorted((out / "raw").glob("chunk-*[0-9].json"))]


@pytest.mark.timeout(240)
def test_a_blocked_loop_is_sampled_at_the_full_rate_and_a_healthy_one_is_not(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "scout_app.py").write_text(APP)
    (line,) = planted_lines(app_dir / "scout_app.py")
    blocked = server_factory("scout_app", cwd=app_dir, ready_path="/openapi.json")
    healthy = server_factory(
        "scout_app", cwd=app_dir, ready_path="/openapi.json", extra_args=("--workers", "2")
    )
    flags = ("--rate", "100", "--scout-rate", "20")
    # WHEN both are attached to for 14 s under load, one on /block, one on /wait
    p_blocked, p_healthy = both(
        lambda: attach_under_load(
            blocked, ["/block"], tmp_path / "blocked", duration_s=SECONDS, concurrency=2,
            extra=flags,
        ),
        lambda: attach_under_load(
            healthy, ["/wait"], tmp_path / "healthy", duration_s=SECONDS, concurrency=2,
            extra=flags,
        ),
        SECONDS + 150.0,
    )  # fmt: skip
    # THEN the blocked server's sampler started at 20 Hz and went to 100 Hz, saying which
    # line the loop held ...
    sampling = p_blocked.data["sampling"]
    assert sampling["scout_hz"] == 20
    raised = [c for c in sampling["rate_changes"] if c["scout"] and c["to_hz"] > c["from_hz"]]
    assert raised and raised[0]["from_hz"] == 20 and raised[0]["to_hz"] == 100, sampling
    assert f"scout_app.py:{line}" in raised[0]["reason"]
    rates = [c["rate_hz"] for c in _chunks(tmp_path / "blocked")]
    assert rates[0] == 20 and rates.count(100) >= 3, rates
    # ... and the blocking line is a culprit
    assert culprit_at(p_blocked.data, app_dir / "scout_app.py", line) is not None
    # ... while the healthy one stayed at 20 Hz throughout, with no culprit, in either
    # worker
    calm = p_healthy.data["sampling"]
    assert calm["rate_changes"] == [] and calm["scout_hz"] == 20, calm
    assert {c["rate_hz"] for c in _chunks(tmp_path / "healthy")} == {20}
    assert p_healthy.data["culprits"] == []
    # (both workers sampled; the kernel may hand both keep-alive connections to one of them,
    # as it did in a CI run: then the other loop idles, which the signal must also take)
    loops = [w["event_loop"]["busy_ms"] for w in p_healthy.data["processes"]]
    assert len(loops) == 2 and max(loops) > 100, p_healthy.data["processes"]
    assert any("--scout-rate 20" in n for n in p_healthy.data["notes"])
    print(f"\nblocked: rates {rates}, {raised[0]['reason']}")
