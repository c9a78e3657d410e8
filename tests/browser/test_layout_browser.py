"""The report reads at 800 and 1400 px: nothing runs off the page, no main table is wider
than its box; and the flamegraph starts where your code does, with a switch for the full
stacks. Screenshots of each width land in test-artifacts/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import ARTIFACTS, Page
from tests.browser.test_report_browser import center_of, open_report
from tests.reporter_fixtures import PLANTED

pytestmark = pytest.mark.browser

WIDTHS = (800, 1400)
ROW = 18  # px per flamegraph row (report.js)

# Overflow of the page and of the main tables: the document no wider than the window, and
# no table (or its cells' content) wider than the box that holds it.
OVERFLOW = """(() => {
  const doc = document.documentElement;
  const out = {scrollWidth: doc.scrollWidth, innerWidth, tables: [], wide: []};
  for (const t of document.querySelectorAll('table')) {
    if (t.offsetParent === null) continue;  // not displayed
    const box = t.parentElement;
    if (t.scrollWidth > box.clientWidth + 1) {
      out.tables.push(`${t.id || t.className}: ${t.scrollWidth} > ${box.clientWidth}`);
    }
  }
  for (const e of document.querySelectorAll('body *')) {
    const r = e.getBoundingClientRect();
    if (r.width > 0 && r.right > innerWidth + 1) {
      out.wide.push(`${e.tagName}.${e.className}: right ${Math.round(r.right)}`);
    }
  }
  out.wide = out.wide.slice(0, 20);
  return out;
})()"""


def set_width(page: Page, width: int) -> None:
    page.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
    )
    page.wait_for(f"window.innerWidth === {width}", timeout=5)
    page.browser.pump(0.3)  # the page redraws its canvases on resize (debounced)


def assert_no_overflow(page: Page, name: str) -> None:
    for width in WIDTHS:
        set_width(page, width)
        page.evaluate("window.scrollTo(0, 0)")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(ARTIFACTS / f"{name}-{width}px.png")
        found: dict[str, Any] = page.evaluate(OVERFLOW)
        assert found["scrollWidth"] <= found["innerWidth"], (width, found)
        assert found["tables"] == [], (width, found)
        assert found["wide"] == [], (width, found)
    assert page.console_errors == []


def test_the_hostile_sample_report_has_no_overflow_at_800_and_1400_px(
    page: Page, tmp_path: Path
) -> None:
    open_report(page, tmp_path)
    assert_no_overflow(page, "layout-sample")
    # At 800 px the culprits are blocks: each route on one line of its own cell, never a
    # column one character wide.
    set_width(page, 800)
    widths = page.evaluate(
        "[...document.querySelectorAll('.culprit-row:not(.extra) td.route')]"
        ".map(td => td.getBoundingClientRect().width)"
    )
    assert widths and min(widths) >= 120, widths


def test_the_flamegraph_starts_at_your_code_with_a_switch_for_full_stacks(
    page: Page, tmp_path: Path
) -> None:
    open_report(page, tmp_path)
    page.evaluate("document.getElementById('flame-wrap').scrollIntoView({block: 'center'})")
    # By default the framework frames above your code are left out ...
    assert page.evaluate("window.__asgiprof.locate('run_endpoint_function')") is None
    planted = page.evaluate(f"window.__asgiprof.locate({PLANTED.function!r})")
    assert planted is not None
    top = page.evaluate("document.getElementById('flame-canvas').getBoundingClientRect().top")
    user_row = round((planted["y"] - top) / ROW)
    assert user_row <= 2, user_row  # right under the view's root (or one caller of yours)
    # ... and "Full stacks" brings them back, your code further down.
    page.click(*center_of(page, "#flame-full-stacks"))
    page.wait_for("window.__asgiprof.locate('run_endpoint_function') !== null", timeout=5)
    full = page.evaluate(f"window.__asgiprof.locate({PLANTED.function!r})")
    top = page.evaluate("document.getElementById('flame-canvas').getBoundingClientRect().top")
    assert round((full["y"] - top) / ROW) > user_row + 3
    assert page.console_errors == []
