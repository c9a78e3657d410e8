"""The report reads at 800 and 1400 px: nothing runs off the page, no main table is wider
than its box; and the flamegraph starts where your code does, with a switch for the full
stacks. Screenshots of each width land in test-artifacts/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.browser.conftest import Page
from tests.browser.pages import ROW, assert_no_overflow, center_of, open_report, set_width
from tests.fastapi_frames import FASTAPI
from tests.reporter_fixtures import AUDIT, PLANTED

pytestmark = pytest.mark.browser


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
    # By default the framework frames above your code are left out: every request of the
    # sample passes through its (user) audit middleware first ...
    outer = json.dumps(FASTAPI.function)
    assert page.evaluate(f"window.__asgiprof.locate({outer})") is None
    assert page.evaluate(f"window.__asgiprof.locate({PLANTED.function!r})") is not None
    yours = page.evaluate(f"window.__asgiprof.locate({json.dumps(AUDIT.function)})")
    assert yours is not None
    top = page.evaluate("document.getElementById('flame-canvas').getBoundingClientRect().top")
    user_row = round((yours["y"] - top) / ROW)
    assert user_row <= 2, user_row  # right under the view's root (or one caller of yours)
    # ... and "Full stacks" brings them back, your code further down.
    page.click(*center_of(page, "#flame-full-stacks"))
    page.wait_for(f"window.__asgiprof.locate({outer}) !== null", timeout=5)
    full = page.evaluate(f"window.__asgiprof.locate({json.dumps(AUDIT.function)})")
    top = page.evaluate("document.getElementById('flame-canvas').getBoundingClientRect().top")
    assert round((full["y"] - top) / ROW) > user_row + 3
    assert page.console_errors == []
