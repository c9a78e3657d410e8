"""The report of a real profiled run, in headless Chromium: real uvicorn, real py-spy, real
load, then `report.html` opened from disk. A second app has hostile names everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asgiprof.demo import uvicorn_command
from asgiprof.record.loadgen import drive_load, free_port
from tests.browser.conftest import ARTIFACTS, Page
from tests.browser.test_layout_browser import assert_no_overflow
from tests.browser.test_report_browser import FLAME_PIXELS, INKED_PIXELS, center_of, click_frame
from tests.profiling import finish, start_asgiprof, summary, wait_until_serving
from tests.servers import HOST, planted_lines

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.usefixtures("needs_ptrace")]

HOSTILE_DIR = "evil<img src=x onerror=alert(1)>'\"dir"
HOSTILE_APP = '''\
"""An app whose names, path and source text are hostile HTML."""
import time

from fastapi import FastAPI

app = FastAPI()


def render_script_tag_x3C_script_x3E_():
    pass


async def slow_scriptalert():
    time.sleep(0.08); x = "</script><script>alert(1)</script><img src=x>"
    return x


@app.get("/</script><b>{name}")
async def endpoint(name: str):
    return {"x": await slow_scriptalert()}
'''


def profile(cwd: Path, module: str, out: Path, paths: list[str]) -> dict[str, object]:
    port = free_port()
    argv = uvicorn_command(module, port)
    proc = start_asgiprof("run", "--duration", "6", "--out", str(out), "--", *argv, cwd=cwd)
    try:
        wait_until_serving(port, path="/openapi.json")
        load = drive_load(f"http://{HOST}:{port}", paths, duration_s=4, concurrency=2)
        done = finish(proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert done.returncode == 0, done.stderr
    assert load.ok > 10
    return summary(out)


def open_report(page: Page, out: Path) -> None:
    url = (out / "report.html").resolve().as_uri()
    page.goto(url)
    page.wait_for("window.__asgiprofRendered === true", timeout=15)
    page.browser.pump(0.3)
    assert page.requested_urls == [url], "the report must not touch the network"
    assert page.console_errors == []


@pytest.mark.timeout(120)
def test_report_of_a_real_run_lists_the_planted_line_and_draws(
    page: Page, tmp_path: Path, examples_dir: Path
) -> None:
    # GIVEN a real profile of the blocking example
    out = tmp_path / "out"
    profile(examples_dir, "blocking_sleep", out, ["/users/1", "/healthy", "/sync"])
    (line,) = planted_lines(examples_dir / "blocking_sleep.py")
    # WHEN its report is opened from disk
    open_report(page, out)
    # THEN the first culprit row is the planted line, and the flamegraph drew
    first = page.evaluate("document.querySelector('.culprit-row').innerText")
    assert f"blocking_sleep.py:{line}" in first and "GET /users/{user_id}" in first
    assert page.evaluate(INKED_PIXELS) > 2000
    # AND a click on a frame zooms
    before = page.evaluate(FLAME_PIXELS)
    node = click_frame(page, "get_user")
    page.wait_for(f"window.__asgiprof.state().zoom === {node}", timeout=5)
    assert page.evaluate(FLAME_PIXELS) != before
    # AND the route switch changes the drawing
    view = "route:GET /sync"
    page.click(*center_of(page, f".route-row[data-view={json.dumps(view)}]"))
    page.wait_for(f"window.__asgiprof.state().view === {json.dumps(view)}", timeout=5)
    assert page.evaluate(FLAME_PIXELS) != before
    assert page.console_errors == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(ARTIFACTS / "report-real-run.png")
    # AND it reads at 800 and 1400 px: nothing runs off the page or out of its table
    assert_no_overflow(page, "layout-real-run")


@pytest.mark.timeout(120)
def test_hostile_names_from_a_real_app_render_as_text(page: Page, tmp_path: Path) -> None:
    # GIVEN a real app whose directory, function names, route and source are HTML
    app_dir = tmp_path / HOSTILE_DIR
    app_dir.mkdir()
    (app_dir / "evil_app.py").write_text(HOSTILE_APP, encoding="utf-8")
    out = tmp_path / "out"
    data = profile(app_dir, "evil_app", out, ["/%3C%2Fscript%3E%3Cb%3Ex"])
    culprits = data["culprits"]
    assert isinstance(culprits, list) and culprits, data
    assert "</script><script>alert(1)" in culprits[0]["code"]
    assert HOSTILE_DIR in culprits[0]["file"]
    # WHEN the report opens THEN no script ran, no element was injected, text is intact
    open_report(page, out)
    assert page.evaluate("document.scripts.length") == 2
    assert page.evaluate("document.images.length") == 0
    assert page.own_events("Page.javascriptDialogOpening") == []
    text = page.evaluate("document.querySelector('.culprit-row').innerText")
    assert "</script><script>alert(1)</script>" in text
    assert "/</script><b>{name}" in page.evaluate("document.body.innerText")
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<script>alert(1)" not in html and "<img src=x" not in html
