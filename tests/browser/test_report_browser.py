"""report.html in headless Chromium, opened from file:// with no network: it must draw,
stay offline, keep hostile text inert, and respond to clicks, searches and view switches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asgiprof.model import RouteTable, TargetInfo
from asgiprof.reporters.html import REPORTER
from tests.browser.conftest import ARTIFACTS, Page
from tests.reporter_fixtures import (
    PLANTED,
    PLANTED_CODE,
    ROUTE_USER,
    sample_analysis,
    synthesize,
)

pytestmark = pytest.mark.browser

# Canvas pixels that are not (near) white: the flamegraph drew something.
INKED_PIXELS = """(() => {
  const c = document.getElementById('flame-canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] > 0 && (d[i] < 245 || d[i + 1] < 245 || d[i + 2] < 245)) n++;
  }
  return n;
})()"""
FLAME_PIXELS = "document.getElementById('flame-canvas').toDataURL()"
STATE = "window.__asgiprof.state()"


def open_report(page: Page, out_dir: Path) -> str:
    path = REPORTER.render(sample_analysis(), out_dir)
    url = path.resolve().as_uri()
    page.goto(url)
    page.wait_for("window.__asgiprofRendered === true", timeout=15)
    return url


# Resolves once the page has not scrolled for ~100 ms: a smooth scroll the page started (a
# click on a route row scrolls to the flamegraph) would move elements under the mouse.
SCROLL_SETTLED = """new Promise(done => {
  let y = scrollY, still = 0;
  const timer = setInterval(() => {
    if (scrollY !== y) { y = scrollY; still = 0; return; }
    if (++still >= 4) { clearInterval(timer); done(true); }
  }, 25);
})"""


def center_of(page: Page, selector: str) -> tuple[float, float]:
    page.evaluate(SCROLL_SETTLED, timeout=10)
    rect = page.evaluate(
        f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
        " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
        " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
    )
    return rect[0], rect[1]


def click_frame(page: Page, text: str) -> int:
    page.evaluate("document.getElementById('flame-wrap').scrollIntoView({block: 'center'})")
    where = page.evaluate(f"window.__asgiprof.locate({json.dumps(text)})")
    assert where is not None, f"no drawn frame contains {text!r}"
    page.click(where["x"] + min(where["w"] / 2, 40), where["y"] + where["h"] / 2)
    node: int = where["node"]
    return node


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
    target = TargetInfo((1,), ("uvicorn", "app:app"), "uvicorn")
    path = REPORTER.render(synthesize(target, [], RouteTable((), "none", "test")), tmp_path)
    # WHEN opened THEN it renders, says so, and logs nothing
    page.goto(path.resolve().as_uri())
    page.wait_for("window.__asgiprofRendered === true", timeout=15)
    assert page.evaluate("document.getElementById('flame-empty').hidden") is False
    assert page.evaluate("document.getElementById('flame-canvas').hidden") is True
    page.browser.pump(0.2)
    assert page.console_errors == []
