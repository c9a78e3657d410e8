"""`asgiprof demo`: profile the bundled example app under generated load, end to end.

It launches `examples/demo_app.py` with uvicorn on 127.0.0.1 (a free port) exactly as
`asgiprof run` would, drives HTTP load at its routes while sampling, and prints the result.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.text import Text

from asgiprof.analyze.result import Analysis
from asgiprof.errors import UsageError
from asgiprof.record.loadgen import LoadThread, free_port, start_load_thread
from asgiprof.record.target import Target
from asgiprof.session import ProfileOptions, run_server

DEMO_MODULE = "demo_app"
# Routes of examples/demo_app.py, weighted by repetition like real traffic.
DEMO_PATHS = (
    "/api/users/1",
    "/api/users/2",
    "/api/orders/7",
    "/api/products/search?q=blue",
    "/api/reports/daily",
    "/api/health",
    "/api/health",
    "/api/export",
)
LOAD_CONCURRENCY = 8


def examples_dir() -> Path:
    """The examples shipped in the wheel (asgiprof/examples) or a source checkout's."""
    candidates = (
        Path(__file__).resolve().parent / "examples",
        Path(__file__).resolve().parents[1] / "examples",
    )
    for path in candidates:
        if (path / f"{DEMO_MODULE}.py").is_file():
            return path
    raise UsageError("the bundled examples are missing from this installation: reinstall asgiprof")


def uvicorn_command(module: str, port: int, *extra: str, access_log: bool = False) -> list[str]:
    """uvicorn serving `module:app` on 127.0.0.1 with the asyncio loop, in this interpreter
    (the demo's command; the tests launch their apps the same way): quietly, or with its
    access log (`run` keeps the server's output in OUT/server.log, not on the terminal)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        f"{module}:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "asyncio",
        "--log-level",
        "info" if access_log else "warning",
        *extra,
    ]


def _check_requirements() -> None:
    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(
            f"the demo app needs {', '.join(missing)}: pip install 'asgiprof[examples]'"
        )


def run_demo(options: ProfileOptions, console: Console) -> Analysis:
    _check_requirements()
    port = free_port()
    # With its access log: requests per route split the shared dependency (route_costs.py).
    argv = uvicorn_command(DEMO_MODULE, port, access_log=True)
    load: list[LoadThread] = []
    duration_s = options.duration_s or 8.0

    def start_load(target: Target) -> Callable[[], None]:
        console.print(
            Text(f"driving load at http://127.0.0.1:{port} for {duration_s:.0f} s ..."),
            style="dim",
        )
        load.append(
            start_load_thread(
                f"http://127.0.0.1:{port}",
                DEMO_PATHS,
                duration_s=duration_s,
                concurrency=LOAD_CONCURRENCY,
            )
        )

        def stop() -> None:
            load[0].stop()
            load[0].join(10.0)

        return stop

    analysis = run_server(
        argv,
        ProfileOptions(
            duration_s=duration_s,
            out=options.out,
            rate_hz=options.rate_hz,
            open_browser=options.open_browser,
            params=options.params,
        ),
        console,
        cwd=examples_dir(),
        on_ready=start_load,
    )
    if load and not load[0].is_alive():
        result = load[0].result
        console.print(
            Text(
                f"load: {result.ok} requests answered, {result.failed} failed, "
                f"{result.requests_per_s:.0f} req/s"
            )
        )
    return analysis
