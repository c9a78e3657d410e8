"""The Workers switch of report.html in headless Chromium: a two-worker report opened from
file:// lists both workers, and choosing one narrows the culprits table and the event-loop
timeline to that worker; a single-process report has no switch at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from asgiprof.analyze import analyze
from asgiprof.analyze.result import Analysis
from asgiprof.model import TargetInfo
from tests.browser.conftest import ARTIFACTS, Page
from tests.browser.pages import center_of, open_report, pixels, shoot_section, texts
from tests.profile_builder import IDLE, Builder
from tests.reporter_fixtures import (
    DEP,
    HASH,
    HOSTILE_FN,
    PLANTED,
    ROUTES,
    SAMPLE_PARAMS,
    SCRIPT,
    endpoint,
    read_line,
    solving,
)

pytestmark = pytest.mark.browser

HOT_PID, CALM_PID = 5101, 5102
# The hot worker blocks HOT_BLOCKS times in `get_user` (and every third time also in a
# hostile-named function), the calm one CALM_BLOCKS times in `hash_password`, late in the run.
HOT_BLOCKS, HOT_SAMPLES, HOSTILE_SAMPLES = 10, 15, 5
CALM_BLOCKS, CALM_SAMPLES = 3, 8
PERIOD_MS = 10.0  # 100 Hz


def two_workers() -> Analysis:
    b = Builder(
        routes=ROUTES,
        target=TargetInfo(
            pids=(5100, HOT_PID, CALM_PID),
            command=("uvicorn", "main:app", "--workers", "2", "--header", f"x:{SCRIPT}"),
            server="uvicorn",
        ),
    )
    for i in range(HOT_BLOCKS):
        b.add(HOT_PID, IDLE, 25, "MainThread", HOT_PID)
        b.add(HOT_PID, endpoint(PLANTED), HOT_SAMPLES, pid=HOT_PID)
        if i % 3 == 0:
            b.add(HOT_PID, endpoint(HOSTILE_FN), HOSTILE_SAMPLES, pid=HOT_PID)
    b.add(CALM_PID, IDLE, 400, "MainThread", CALM_PID)
    for _ in range(CALM_BLOCKS):
        b.add(CALM_PID, IDLE, 30, pid=CALM_PID)
        b.add(CALM_PID, solving(DEP, HASH), CALM_SAMPLES, pid=CALM_PID)
    return analyze(b.build(), SAMPLE_PARAMS, read_line)


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
    url = open_report(page, tmp_path, analysis)
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
    hot_episodes = HOT_BLOCKS + len(range(0, HOT_BLOCKS, 3))
    assert merged["episodes"] == len(analysis.episodes) == hot_episodes + CALM_BLOCKS
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
    calm_ms = CALM_BLOCKS * CALM_SAMPLES * PERIOD_MS
    assert cells == [f"{calm_ms:.0f} ms", str(CALM_BLOCKS), f"{CALM_SAMPLES * PERIOD_MS:.0f} ms"]
    calm = page.evaluate("window.__asgiprof.timeline()")
    assert calm["episodes"] == CALM_BLOCKS and calm["blocked_ms"] == pytest.approx(calm_ms, abs=1)
    assert calm["idle_ms"] < merged["idle_ms"]
    _, red_calm = pixels(page, "#timeline-canvas")
    assert 0 < red_calm < red_all
    assert texts(page, "#culprits [data-worker-badge]") == [f"PID {CALM_PID} (worker 2)"]
    stats = " ".join(texts(page, "#worker-stats .stat"))
    assert f"blocked {calm_ms:.0f} ms" in stats and f"{CALM_BLOCKS} episodes" in stats
    assert f"longest {CALM_SAMPLES * PERIOD_MS:.0f} ms" in stats
    shoot_section(page, "#workers", "report-workers-calm.png")

    # WHEN the hot worker's row is clicked
    page.click(*center_of(page, f".worker-row[data-pid='{HOT_PID}']"))
    page.wait_for(f"window.__asgiprof.state().worker === {HOT_PID}", timeout=5)
    # THEN its two culprits show in its own order, and the timeline follows
    assert shown_culprits(page) == ["get_user", HOSTILE_FN.function]
    hot = page.evaluate("window.__asgiprof.timeline()")
    assert hot["episodes"] == hot_episodes
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
    planted_s = HOT_BLOCKS * HOT_SAMPLES * PERIOD_MS / 1000
    assert cells == [f"{planted_s:.2f} s", str(HOT_BLOCKS), f"{HOT_SAMPLES * PERIOD_MS:.0f} ms"]
    assert page.evaluate("window.__asgiprof.timeline()") == merged
    assert page.console_errors == []
    page.evaluate("window.scrollTo(0, 0)")
    choose_worker(page, HOT_PID)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(ARTIFACTS / "report-workers.png")


def test_a_single_process_report_has_no_worker_switch(page: Page, tmp_path: Path) -> None:
    open_report(page, tmp_path)
    assert page.evaluate("document.getElementById('workers')") is None
    assert page.evaluate("document.querySelectorAll('[data-worker-badge]').length") == 0
    assert page.evaluate("window.__asgiprof.state().worker") is None
    assert page.console_errors == []
