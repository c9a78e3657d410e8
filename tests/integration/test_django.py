"""Django's middleware chain on a real server: two middlewares of the app that block the
loop one after the other, found each at its line, under its own name, with the time the
server measured itself.

The trap (found trying asgiprof on a Django app): the two calls hold 90% of the loop
between them and each is always followed by the other, never by itself, so chance alone
predicted much of their stickiness; the 20 ms one was not found (analyze/episodes.py
`is_blocking`), and both were put in the outer middleware's layer, Django's handler being
read as a middleware taking 96% of request time.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from asgiprof.record.loadgen import free_port
from tests.planted_truth import planted_truth, truth_env
from tests.profiling import asgiprof, culprit_at
from tests.servers import HOST, planted_lines

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("needs_ptrace")]

APP = """
import asyncio
import time

import django
from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.utils.decorators import async_only_middleware

settings.configure(
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    SECRET_KEY="not-a-secret-" * 4,
    MIDDLEWARE=[
        "django.middleware.common.CommonMiddleware",
        "mw_app.AuditMiddleware",
        "mw_app.tracing",
    ],
)
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


class AuditMiddleware:
    async_capable = True
    sync_capable = False

    def __init__(self, get_response):
        self.get_response = get_response
        markcoroutinefunction(self)  # Django awaits it as async only when marked

    async def __call__(self, request):
        time.sleep(0.025)  # planted: a blocking audit write
        return await self.get_response(request)


@async_only_middleware
def tracing(get_response):
    async def middleware(request):
        time.sleep(0.02)  # planted: a blocking trace export
        return await get_response(request)

    return middleware


async def health(request):
    await asyncio.sleep(0.005)
    return JsonResponse({"ok": True})


urlpatterns = [path("health/", health)]
app = get_asgi_application()
"""


@pytest.mark.timeout(150)
def test_two_blocking_middlewares_in_a_row_are_both_found_with_their_time(
    tmp_path: Path,
) -> None:
    app_file = tmp_path / "mw_app.py"
    app_file.write_text(textwrap.dedent(APP).lstrip("\n"), encoding="utf-8")
    audit, tracing = planted_lines(app_file)
    out, truth_file = tmp_path / "out", tmp_path / "truth.log"
    port = free_port()
    server = [sys.executable, "-m", "uvicorn", "mw_app:app", "--host", HOST, "--port", str(port)]
    # WHEN the server runs under asgiprof as a user runs it, loaded all along by asgiprof's
    # own clients: the two calls hold the loop nearly all the time (what hid the second)
    done = asgiprof(
        *("run", "--duration", "8", "--out", str(out), "--load-url", "{url}/health/"),
        *("--concurrency", "8", "--", *server, "--loop", "asyncio"),
        cwd=tmp_path,
        env=truth_env(truth_file),
    )
    assert done.returncode == 0, done.stderr
    data = orjson.loads((out / "summary.json").read_bytes())
    assert data["load"]["requests"] >= 40, data["load"]
    # THEN Django's handler is no middleware (the app: its task's stacks start below it),
    # each of the app's middlewares is a layer under its own name ...
    layers = {m["name"]: m["role"] for m in data["middleware"]["layers"]}
    assert layers.get("ASGIHandler", "app") == "app", layers
    assert layers.get("AuditMiddleware") == layers.get("tracing") == "middleware", layers
    # ... and both lines are culprits in their layer, with the time the server measured
    for line, layer in ((audit, "AuditMiddleware"), (tracing, "tracing")):
        culprit = culprit_at(data, app_file, line)
        assert culprit is not None, data["culprits"]
        assert (culprit["context"], culprit["context_name"]) == ("middleware", layer)
        truth = planted_truth(out, truth_file, app_file, line)
        print(f"{layer}: {truth.describe(culprit['blocked_ms'])}")
        assert abs(culprit["blocked_ms"] - truth.ms) <= truth.tolerance_ms(), truth.describe(
            culprit["blocked_ms"]
        )
