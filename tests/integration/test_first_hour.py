"""What a new user reads first: the terminal summary of a real profile at 80, 120 and 200
columns, the warning when no traffic was seen, and a clean Ctrl-C during startup."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from asgiprof import store
from asgiprof.analyze.leaks import leak_findings, resource_summary
from asgiprof.analyze.result import AnalysisParams
from asgiprof.demo import uvicorn_command
from asgiprof.record.loadgen import drive_load, free_port
from tests.profiling import (
    DEMO_KINDS,
    Finished,
    asgiprof,
    demo_kinds,
    finish,
    start_asgiprof,
    summary,
    wait_until_serving,
)
from tests.servers import ServerFactory

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("needs_ptrace")]

WIDTHS = (80, 120, 200)


@pytest.fixture(scope="module")
def demo_profile(tmp_path_factory: pytest.TempPathFactory, examples_dir: Path) -> Path:
    """One real profile of examples/demo_app.py under load (`asgiprof demo`)."""
    out = tmp_path_factory.mktemp("first-hour") / "demo"
    done = asgiprof("demo", "--duration", "6", "--out", str(out), cwd=examples_dir, timeout_s=120.0)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _render(out: Path, width: int) -> list[str]:
    done = asgiprof("report", str(out), cwd=out, env={"COLUMNS": str(width)}, timeout_s=60.0)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def _shown_path(culprit: dict[str, Any], root: Path) -> str:
    return f"{os.path.relpath(culprit['file'], root)}:{culprit['line']}"


def test_the_demo_names_its_four_planted_lines_each_with_its_kind(
    demo_profile: Path, examples_dir: Path
) -> None:
    # The first report a newcomer reads: every planted line, and never `kind: unknown`
    assert demo_kinds(summary(demo_profile), examples_dir / "demo_app.py") == DEMO_KINDS


def test_the_demo_splits_routes_by_the_requests_its_access_log_counted(demo_profile: Path) -> None:
    # The demo's server logs its requests (into OUT/server.log, not the terminal): route
    # costs and the shared dependency are split by requests, and the report says so.
    data = summary(demo_profile)
    assert data["routes_evidence"] == "access-log", data["routes_evidence"]
    served = [r for r in data["routes"] if r["requests"]]
    assert len(served) >= 4 and all(r["requests"] > 0 for r in served), data["routes"]
    (dep,) = [d for d in data["dependencies"]["items"] if d["name"] == "current_user"]
    assert dep["split_by"] in ("requests", "one-route"), dep


@pytest.mark.parametrize("width", WIDTHS)
def test_terminal_shows_every_culprit_whole_at_each_width(
    demo_profile: Path, examples_dir: Path, width: int
) -> None:
    data = summary(demo_profile)
    culprits = data["culprits"]
    assert len(culprits) >= 3, culprits  # the demo plants four blocking lines
    lines = _render(demo_profile, width)
    text = "\n".join(lines)
    for c in culprits[:10]:
        where = _shown_path(c, examples_dir)
        # Relative to the app's root (uvicorn ran in examples/), never the absolute path.
        assert not where.startswith(".."), where
        holding = [line for line in lines if where in line]
        assert holding, f"{where} not whole on any line at {width} columns:\n{text}"
        # The same line number right after the path: not `demo_app.py:1` + `03` below.
        assert all(not line.split(where, 1)[1][:1].isdigit() for line in holding), (
            f"{where} runs on into other digits:\n{text}"
        )
        assert c["route"], c
        assert any(c["route"] in line for line in lines), (
            f"route {c['route']!r} not whole on any line at {width} columns:\n{text}"
        )
        assert c["file"] not in text, f"absolute path shown at {width} columns"
    # Below ~120 columns the list layout: one header line per culprit, nothing wider than
    # the terminal (the code and fix are indented under it).
    if width < 120:
        assert "┃ file:line" not in text
        too_wide = [line for line in lines if len(line) > width]
        assert not too_wide, too_wide
        for c in culprits[:10]:
            header = next(line for line in lines if _shown_path(c, examples_dir) in line)
            assert header.lstrip().startswith(f"{c['rank']} "), header
    if width >= 200:
        assert "┃ file:line" in text  # room for the table layout


def test_demo_under_load_has_traffic(demo_profile: Path) -> None:
    traffic = summary(demo_profile)["traffic"]
    assert traffic["level"] == "ok", traffic
    assert traffic["warning"] is None


def test_run_without_load_says_no_traffic(tmp_path: Path, examples_dir: Path) -> None:
    out = tmp_path / "idle"
    port = free_port()
    done = asgiprof(
        "run",
        "--duration",
        "5",
        "--out",
        str(out),
        "--",
        *uvicorn_command("healthy", port),
        cwd=examples_dir,
        env={"COLUMNS": "100"},
        timeout_s=90.0,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "! no traffic:" in done.stdout, done.stdout
    assert "no requests were seen" in done.stdout
    traffic = summary(out)["traffic"]
    assert traffic["level"] == "none", traffic
    assert traffic["route_samples"] == 0
    assert traffic["idle_share"] > 0.9
    assert summary(out)["schema"] == 1
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'class="traffic-warning"' in html and "No traffic" in html


# A server started from code, as in many Dockerfiles: `python serve.py`. Routers with
# prefixes live in another module; the app is made at module level and served by
# `uvicorn.run(app)` under `if __name__ == "__main__"`. A second app object (`admin`)
# is there to be named with --app.
SERVE_PY = """
import os
import sys

import uvicorn
from fastapi import FastAPI

from shop_api import router

app = FastAPI()
app.include_router(router, prefix="/api/v1")

admin = FastAPI()


@admin.get("/admin/stats")
async def stats() -> dict[str, int]:
    return {"ok": 1}


if __name__ == "__main__":
    uvicorn.run(
        admin if os.environ.get("SERVE_ADMIN") else app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="asyncio",
        log_level="warning",
    )
"""

SHOP_API_PY = """
import time

from fastapi import APIRouter

router = APIRouter(prefix="/shipping")


@router.get("/quotes/{order_id}")
async def quote(order_id: int) -> dict[str, int]:
    time.sleep(0.03)  # planted: a sync client call in async def
    return {"order_id": order_id}
"""


def _serve_py_app(root: Path) -> Path:
    app_dir = root / "svc"
    app_dir.mkdir()
    (app_dir / "serve.py").write_text(SERVE_PY, encoding="utf-8")
    (app_dir / "shop_api.py").write_text(SHOP_API_PY, encoding="utf-8")
    return app_dir


def _profile_serve_py(app_dir: Path, out: Path, path: str, *args: str) -> Finished:
    port = free_port()
    proc = start_asgiprof(
        "run",
        "--duration",
        "5",
        "--out",
        str(out),
        *args,
        "--",
        sys.executable,
        "serve.py",
        str(port),
        cwd=app_dir,
    )
    try:
        wait_until_serving(port, path=path)
        drive_load(f"http://127.0.0.1:{port}", [path], duration_s=3.0, concurrency=2)
    finally:
        done = finish(proc, 90.0)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_server_started_from_code_gets_its_route_templates(tmp_path: Path) -> None:
    app_dir = _serve_py_app(tmp_path)
    out = tmp_path / "out"
    _profile_serve_py(app_dir, out, "/api/v1/shipping/quotes/7")
    data = summary(out)
    route = "GET /api/v1/shipping/quotes/{order_id}"
    assert [r["route"] for r in data["routes"]][:1] == [route], data["routes"]
    culprit = data["culprits"][0]
    assert (Path(culprit["file"]).name, culprit["route"]) == ("shop_api.py", route)
    assert not any("route table not read" in note for note in data["notes"]), data["notes"]


def test_app_option_names_the_app_a_script_serves(tmp_path: Path) -> None:
    app_dir = _serve_py_app(tmp_path)
    out = tmp_path / "out"
    port = free_port()
    proc = start_asgiprof(
        "run",
        "--duration",
        "4",
        "--out",
        str(out),
        "--app",
        "serve:admin",
        "--",
        sys.executable,
        "serve.py",
        str(port),
        cwd=app_dir,
        env={"SERVE_ADMIN": "1"},
    )
    try:
        wait_until_serving(port, path="/admin/stats")
        drive_load(f"http://127.0.0.1:{port}", ["/admin/stats"], duration_s=2.5, concurrency=2)
    finally:
        done = finish(proc, 90.0)
    assert done.returncode == 0, done.stdout + done.stderr
    routes = orjson.loads((out / "routes.json").read_bytes())
    declared = {(r["method"], r["path"]) for r in routes["routes"]}
    # The admin app's table (FastAPI adds its docs routes), not the module's `app`.
    assert ("GET", "/admin/stats") in declared, declared
    assert not any(path.startswith("/api/") for _, path in declared), declared


def test_app_option_must_be_module_colon_attr(tmp_path: Path) -> None:
    done = asgiprof("run", "--app", "serve.py", "--", "python", "serve.py", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--app 'serve.py' is not MODULE:ATTR" in done.stderr
    assert "Traceback" not in done.stderr


SLOW_START_PY = """
import time

from fastapi import FastAPI

time.sleep(8)  # a slow import: connecting to services, loading a model, ...
app = FastAPI()
"""


def test_ctrl_c_while_the_server_starts_prints_one_line_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    (tmp_path / "slow_start.py").write_text(SLOW_START_PY, encoding="utf-8")
    out = tmp_path / "out"
    proc = start_asgiprof(
        "run", "--out", str(out), "--", *uvicorn_command("slow_start", free_port()), cwd=tmp_path
    )
    # Wait (bounded) for the server to be started, then Ctrl-C about 1 s in.
    deadline = time.monotonic() + 10.0
    children: list[psutil.Process] = []
    while not children and time.monotonic() < deadline:
        time.sleep(0.1)
        children = psutil.Process(proc.pid).children(recursive=True)
    assert children, "asgiprof started no server"
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    done = finish(proc, 30.0)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "interrupted while the server was starting" in lines[0]
    assert "Traceback" not in done.stdout + done.stderr
    assert not out.exists(), list(out.rglob("*"))
    _, alive = psutil.wait_procs(children, timeout=10.0)
    assert not alive, alive


def test_help_shows_flags_without_a_value(tmp_path: Path) -> None:
    for command in ("run", "attach", "report"):
        done = asgiprof(command, "--help", cwd=tmp_path, env={"COLUMNS": "100"})
        assert done.returncode == 0, done.stderr
        assert "<bool>" not in done.stdout, done.stdout
        (line,) = [x for x in done.stdout.splitlines() if x.strip().startswith("--open")]
        assert line.split()[1] == "Open", line  # `--open` takes no value


def test_open_on_a_machine_without_a_display_prints_the_url(demo_profile: Path) -> None:
    done = asgiprof(
        "report",
        str(demo_profile),
        "--open",
        cwd=demo_profile,
        env={"DISPLAY": "", "WAYLAND_DISPLAY": "", "COLUMNS": "80"},
        timeout_s=60.0,
    )
    assert done.returncode == 0, done.stderr
    uri = (demo_profile / "report.html").resolve().as_uri()
    assert any(line.endswith(f"open {uri}") for line in done.stdout.splitlines()), done.stdout


def test_attach_says_it_detached_and_the_server_runs_on(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    server = server_factory("healthy")
    done = asgiprof(
        "attach",
        str(server.pid),
        "--duration",
        "2",
        "--out",
        str(tmp_path / "out"),
        cwd=server.cwd,
        timeout_s=60.0,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"detached, PID {server.pid} still running" in done.stdout
    assert psutil.pid_exists(server.pid) and psutil.Process(server.pid).status() != "zombie"


# An app whose first minute under load fills a cache (RSS grows steadily, then levels off):
# a short run sees only this warm-up of the load, which is no evidence of a leak.
WARMUP_APP_PY = """
import time

from fastapi import FastAPI

app = FastAPI()
CACHE: list[bytes] = []
FIRST: list[float] = []
FILL_S = 60.0  # the cache fills for this long after the first request, steadily
PER_S = 20  # entries of 256 KiB a second: 5 MiB/s


@app.get("/item/{n}")
async def item(n: int) -> dict[str, int]:
    now = time.monotonic()
    if not FIRST:
        FIRST.append(now)
    due = int(min(now - FIRST[0], FILL_S) * PER_S)
    while len(CACHE) < due:
        CACHE.append(b"x" * (256 * 1024))  # touched pages: counted in RSS
    return {"n": n, "cached": len(CACHE)}
"""


def test_a_run_that_only_saw_the_load_warm_up_makes_no_leak_finding(tmp_path: Path) -> None:
    (tmp_path / "warmup_app.py").write_text(WARMUP_APP_PY, encoding="utf-8")
    out = tmp_path / "out"
    port = free_port()
    proc = start_asgiprof(
        "run",
        "--duration",
        "14",
        "--out",
        str(out),
        "--",
        *uvicorn_command("warmup_app", port),
        cwd=tmp_path,
    )
    try:
        wait_until_serving(port, path="/docs")
        time.sleep(1.5)  # the server idles first: load starts seconds after it
        drive_load(f"http://127.0.0.1:{port}", ["/item/1"], duration_s=10.0, concurrency=4)
    finally:
        done = finish(proc, 90.0)
    assert done.returncode == 0, done.stdout + done.stderr
    data = summary(out)
    resources = data["resources"]
    (series,) = [p["series"] for p in resources["processes"]]
    grew_mib = (max(series["rss_bytes"]) - min(series["rss_bytes"])) / 2**20
    assert grew_mib > 8, grew_mib  # the warm-up was there to be mistaken for a leak
    # The warm-up counted from the first request (the load started seconds in) ...
    assert resources["first_request_s"] is not None and resources["first_request_s"] > 1.0
    # ... so the cache filling under load is no leak: after the warm-up, too short a trend
    # (or, once the load stopped, one that levels off).
    assert not [f for f in data["findings"] if f["kind"] == "possible-leak"], data["findings"]
    assert "possible leak" not in done.stdout
    (rss,) = [g for g in resources["processes"][0]["growth"] if g["metric"] == "rss_bytes"]
    assert rss["not_leak"] is not None, rss
    # Control: the old rule (warm-up from the first poll, any span, levelling off or not)
    # calls these very polls a leak.
    profile = store.load_profile(out)
    old = AnalysisParams(leak_min_trend_s=0.0, leak_min_late_slope=0.0)
    assert leak_findings(resource_summary(profile.resources, old, None)), series["rss_bytes"]
