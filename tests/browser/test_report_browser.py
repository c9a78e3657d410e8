"""report.html in headless Chromium, opened from file:// with no network: it must draw,
stay offline, keep hostile text inert, and respond to clicks, searches and view switches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asgiprof.reporters.html import REPORTER
from tests.browser.conftest import ARTIFACTS, Page
from tests.browser.pages import (
    FLAME_PIXELS,
    INKED_PIXELS,
    STATE,
    center_of,
    click_frame,
    open_report,
)
from tests.reporter_fixtures import (
    PLANTED,
    PLANTED_CODE,
    ROUTE_USER,
    empty_analysis,
)

pytestmark = pytest.mark.browser


def test_report_draws_offline_without_errors(page: Page, tmp_path: Path) -> None:
    # GIVEN the hostile sample report opened from disk
    url = open_report(page, tmp_path)
    page.browser.pump(0.5)  # late console messages or requests
    # THEN nothing but the file itself was requested, nothing was logged as an error
    assert page.requested_urls == [url]
    assert page.console_errors == []
    # AND hostile text stayed text: no extra scripts, images or dialogs
    assert page.evaluate("document.scripts.length") == 2
    assert page.evaluate("document.images.length") == 0
    assert page.own_events("Page.javascriptDialogOpening") == []
    # AND the culprits table lists the planted line first
    first = page.evaluate("document.querySelector('.culprit-row').innerText")
    assert PLANTED.function in first and f"main.py:{PLANTED.line}" in first
    assert PLANTED_CODE in first
    # AND the flamegraph and the timeline drew pixels
    assert page.evaluate(INKED_PIXELS) > 5000
    state = page.evaluate(STATE)
    assert state["view"] == "loop" and state["drawn"] > 5
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(ARTIFACTS / "report.png")


def test_click_on_a_frame_zooms_and_reset_restores(page: Page, tmp_path: Path) -> None:
    open_report(page, tmp_path)
    # (the framework frame is drawn with the full stacks only)
    page.click(*center_of(page, "#flame-full-stacks"))
    page.wait_for("window.__asgiprof.locate('run_endpoint_function') !== null", timeout=5)
    before = page.evaluate(FLAME_PIXELS)
    # WHEN a frame is clicked
    node = click_frame(page, "run_endpoint_function")
    # THEN the graph zooms to it: state, data-zoom, breadcrumb and pixels all follow
    page.wait_for(f"window.__asgiprof.state().zoom === {node}", timeout=5)
    assert page.evaluate("document.getElementById('flame-wrap').dataset.zoom") == str(node)
    crumbs = page.evaluate("document.getElementById('flame-crumbs').textContent")
    assert crumbs.endswith("run_endpoint_function")
    assert page.evaluate(FLAME_PIXELS) != before
    # WHEN reset is clicked THEN the whole view is back
    page.click(*center_of(page, "#flame-reset"))
    page.wait_for("window.__asgiprof.state().zoom === 0", timeout=5)
    assert page.evaluate(FLAME_PIXELS) == before
    assert page.console_errors == []


def test_route_view_changes_the_drawing(page: Page, tmp_path: Path) -> None:
    open_report(page, tmp_path)
    before = page.evaluate(FLAME_PIXELS)
    # WHEN the route's row in the routes table is clicked
    view = f"route:{ROUTE_USER}"
    page.click(*center_of(page, f".route-row[data-view={json.dumps(view)}]"))
    # THEN the flamegraph shows that route and draws something else
    page.wait_for(f"window.__asgiprof.state().view === {json.dumps(view)}", timeout=5)
    assert page.evaluate("document.getElementById('route-select').value") == view
    assert page.evaluate(FLAME_PIXELS) != before
    assert page.evaluate(INKED_PIXELS) > 1000
    # AND switching views with the buttons works too
    page.click(*center_of(page, "#view-buttons button[data-view=threadpool]"))
    page.wait_for("window.__asgiprof.state().view === 'threadpool'", timeout=5)
    assert page.console_errors == []


def test_clicking_a_culprit_shows_its_stack_and_focuses_the_graph(
    page: Page, tmp_path: Path
) -> None:
    open_report(page, tmp_path)
    page.click(*center_of(page, ".culprit-row[data-culprit='0'] .rank"))
    page.wait_for("!document.getElementById('stack-panel').hidden", timeout=5)
    hit = page.evaluate("document.querySelector('#stack-list li.hit').textContent")
    assert hit == f"{PLANTED.function} ({PLANTED.file}:{PLANTED.line})"
    state = page.evaluate(STATE)
    assert state["view"] == "blocking" and state["selected"] == 0
    crumbs = page.evaluate("document.getElementById('flame-crumbs').textContent")
    assert crumbs.endswith(PLANTED.function)
    # A second click deselects.
    page.click(*center_of(page, ".culprit-row[data-culprit='0'] .rank"))
    page.wait_for("document.getElementById('stack-panel').hidden", timeout=5)
    assert page.console_errors == []


def test_search_highlights_matches(page: Page, tmp_path: Path) -> None:
    open_report(page, tmp_path)
    page.click(*center_of(page, "#view-buttons button[data-view=all]"))
    before = page.evaluate(FLAME_PIXELS)
    page.click(*center_of(page, "#flame-search"))
    page.type_text("session.execute")
    text = page.wait_for("document.getElementById('search-result').textContent", timeout=5)
    assert text.startswith("matches: ")
    assert page.evaluate("window.__asgiprof.state().query") == "session.execute"
    assert page.evaluate(FLAME_PIXELS) != before


def test_timeline_hover_names_the_culprit(page: Page, tmp_path: Path) -> None:
    open_report(page, tmp_path)
    # Hover the first episode's mark, found from the payload the page itself reads.
    x, y = page.evaluate(
        """(() => {
          const data = JSON.parse(document.getElementById('asgiprof-data').textContent);
          const c = document.getElementById('timeline-canvas');
          c.scrollIntoView({block: 'center'});
          const r = c.getBoundingClientRect();
          const tl = data.timeline, ep = data.episodes;
          const span = tl.idle_ms.length * tl.width_s;
          const k = ep.culprit.indexOf(0);
          const mid = ep.start_s[k] + ep.ms[k] / 2000;
          return [r.left + (mid - tl.start_s) / span * r.width, r.top + 10];
        })()"""
    )
    page.hover(x, y)
    tip = page.wait_for(
        "!document.getElementById('tooltip').hidden && "
        "document.getElementById('tooltip').textContent",
        timeout=5,
    )
    assert tip.startswith("Blocked ")
    assert PLANTED.function in tip and f"{PLANTED.file}:{PLANTED.line}" in tip


def test_an_empty_report_opens_without_errors(page: Page, tmp_path: Path) -> None:
    # GIVEN an analysis without a single sample
    path = REPORTER.render(empty_analysis(routes=()), tmp_path)
    # WHEN opened THEN it renders, says so, and logs nothing
    page.goto(path.resolve().as_uri())
    page.wait_for("window.__asgiprofRendered === true", timeout=15)
    assert page.evaluate("document.getElementById('flame-empty').hidden") is False
    assert page.evaluate("document.getElementById('flame-canvas').hidden") is True
    page.browser.pump(0.2)
    assert page.console_errors == []
