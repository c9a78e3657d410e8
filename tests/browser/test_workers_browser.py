"""The Workers switch of report.html in headless Chromium: a two-worker report opened from
file:// lists both workers, and choosing one narrows the culprits table and the event-loop
timeline to that worker; a single-process report has no switch at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from asgiprof.analyze.result import Analysis
from asgiprof.model import RouteTable, TargetInfo, ThreadInfo
from asgiprof.reporters.html import REPORTER
from tests.browser.conftest import ARTIFACTS, Page
from tests.browser.test_findings_browser import pixels, shoot_section, texts
from tests.browser.test_report_browser import center_of
from tests.reporter_fixtures import (
    HASH,
    HOSTILE_FN,
    IDLE_STACK,
    PLANTED,
    REQUEST_BASE,
    ROUTE_ITEMS,
    ROUTE_LOGIN,
    ROUTE_USER,
    ROUTES,
    SCRIPT,
    Segment,
    ThreadPlan,
    sample_analysis,
    synthesize,
)

pytestmark = pytest.mark.browser

HOT_PID, CALM_PID = 5101, 5102


def two_workers() -> Analysis:
    """Two uvicorn workers: the hot one blocks often in `get_user` (and in a hostile-named
    function), the calm one now and then in `hash_password`, and only late in the run."""
    hot: list[Segment] = []
    calm: list[Segment] = [Segment(IDLE_STACK, 400, "idle")]
    for i in range(10):
        hot.append(Segment(IDLE_STACK, 25, "idle"))
        hot.append(Segment((*REQUEST_BASE, PLANTED), 15, "blocked", ROUTE_USER))
        if i % 3 == 0:
            hot.append(Segment((*REQUEST_BASE, HOSTILE_FN), 5, "blocked", ROUTE_ITEMS))
    for _ in range(3):
        calm.append(Segment(IDLE_STACK, 30, "idle"))
        calm.append(Segment((*REQUEST_BASE, HASH), 8, "blocked", ROUTE_LOGIN))
    target = TargetInfo(
        pids=(5100, HOT_PID, CALM_PID),
        command=("uvicorn", "main:app", "--workers", "2", "--header", f"x:{SCRIPT}"),
        server="uvicorn",
    )
    plans = [
        ThreadPlan(ThreadInfo(HOT_PID, HOT_PID, "MainThread"), "event-loop", hot),
        ThreadPlan(ThreadInfo(CALM_PID, CALM_PID, "MainThread"), "event-loop", calm),
    ]
    return synthesize(target, plans, RouteTable(ROUTES, "app"), timeline_bins=100)


def open_report(page: Page, analysis: Analysis, out_dir: Path) -> str:
    url = REPORTER.render(analysis, out_dir).resolve().as_uri()
    page.goto(url)
    page.wait_for("window.__asgiprofRendered === true", timeout=15)
    return url


def shown_culprits(page: Page) -> list[str]:
    """Function names of the culprit rows shown, top to bottom."""
    found: list[str] = page.evaluate(
        "[...document.querySelectorAll('.culprit-row')].filter(r => !r.hidden)"
        ".map(r => r.querySelector('.fn').textContent)"
    )
    return found


def choose_worker(page: Page, pid: int | str) -> None:
    page.evaluate(
        "(() => { const s = document.getElementById('worker-select');"
        f" s.value = '{pid}'; s.dispatchEvent(new Event('change')); }})()"
    )


def test_switching_worker_narrows_culprits_and_timeline(page: Page, tmp_path: Path) -> None:
    # GIVEN a two-worker report opened from disk
    analysis = two_workers()
    url = open_report(page, analysis, tmp_path)
    page.browser.pump(0.2)
    assert page.requested_urls == [url]
    # THEN both workers are listed, the hot one marked, every culprit shown
    rows = texts(page, "#workers-table tbody tr")
    assert [r.split()[:2] for r in rows] == [["PID", str(HOT_PID)], ["PID", str(CALM_PID)]]
    assert "most blocked" in rows[0] and "get_user" in rows[0] and "nothing blocked" not in rows[1]
    options = texts(page, "#worker-select option")
    assert options == ["all workers", f"PID {HOT_PID} (worker 1)", f"PID {CALM_PID} (worker 2)"]
    merged = page.evaluate("window.__asgiprof.timeline()")
    assert shown_culprits(page) == ["get_user", "hash_password", HOSTILE_FN.function]
    assert merged["episodes"] == len(analysis.episodes) == 17
    assert merged["blocked_ms"] == pytest.approx(analysis.loop.blocked_ms, abs=1)
    _, red_all = pixels(page, "#timeline-canvas")

    # WHEN the calm worker is chosen in the switch
    choose_worker(page, CALM_PID)
    # THEN only its culprit shows, with its own figures, and its timeline is drawn
    assert page.evaluate("window.__asgiprof.state().worker") == CALM_PID
    assert shown_culprits(page) == ["hash_password"]
    cells = page.evaluate(
        "[...[...document.querySelectorAll('.culprit-row')].find(r => !r.hidden).cells]"
        ".slice(4).map(c => c.textContent)"
    )
    assert cells == ["240 ms", "3", "80 ms"]
    calm = page.evaluate("window.__asgiprof.timeline()")
    assert calm["episodes"] == 3 and calm["blocked_ms"] == pytest.approx(240, abs=1)
    assert calm["idle_ms"] < merged["idle_ms"]
    _, red_calm = pixels(page, "#timeline-canvas")
    assert 0 < red_calm < red_all
    assert texts(page, "#culprits [data-worker-badge]") == [f"PID {CALM_PID} (worker 2)"]
    stats = " ".join(texts(page, "#worker-stats .stat"))
    assert "blocked 240 ms" in stats and "3 episodes" in stats and "longest 80 ms" in stats
    shoot_section(page, "#workers", "report-workers-calm.png")

    # WHEN the hot worker's row is clicked
    page.click(*center_of(page, f".worker-row[data-pid='{HOT_PID}']"))
    page.wait_for(f"window.__asgiprof.state().worker === {HOT_PID}", timeout=5)
    # THEN its two culprits show in its own order, and the timeline follows
    assert shown_culprits(page) == ["get_user", HOSTILE_FN.function]
    hot = page.evaluate("window.__asgiprof.timeline()")
    assert hot["episodes"] == 14
    assert hot["blocked_ms"] + calm["blocked_ms"] == pytest.approx(merged["blocked_ms"], abs=1)
    assert page.evaluate("document.getElementById('worker-select').value") == str(HOT_PID)

    # WHEN the header's top culprit is clicked under the calm worker's filter
    choose_worker(page, CALM_PID)
    page.click(*center_of(page, ".verdict"))
    # THEN every worker shows again, and the culprit is selected
    page.wait_for("window.__asgiprof.state().worker === null", timeout=5)
    assert page.evaluate("window.__asgiprof.state().selected") == 0
    assert shown_culprits(page) == ["get_user", "hash_password", HOSTILE_FN.function]
    cells = page.evaluate(
        "[...document.querySelector('.culprit-row').cells].slice(4).map(c => c.textContent)"
    )
    assert cells == ["1.50 s", "10", "150 ms"]
    assert page.evaluate("window.__asgiprof.timeline()") == merged
    assert page.console_errors == []
    page.evaluate("window.scrollTo(0, 0)")
    choose_worker(page, HOT_PID)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(ARTIFACTS / "report-workers.png")


def test_a_single_process_report_has_no_worker_switch(page: Page, tmp_path: Path) -> None:
    open_report(page, sample_analysis(), tmp_path)
    assert page.evaluate("document.getElementById('workers')") is None
    assert page.evaluate("document.querySelectorAll('[data-worker-badge]').length") == 0
    assert page.evaluate("window.__asgiprof.state().worker") is None
    assert page.console_errors == []
