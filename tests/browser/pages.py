"""Helpers the browser tests share: open a report, find and click what it drew, measure
canvases and overflow, and profile a real app for its report."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from asgiprof.analyze.result import Analysis
from asgiprof.demo import uvicorn_command
from asgiprof.record.loadgen import drive_load, free_port
from asgiprof.reporters.html import REPORTER
from tests.browser.conftest import ARTIFACTS, Page
from tests.profiling import finish, start_asgiprof, summary, wait_until_serving
from tests.reporter_fixtures import sample_analysis
from tests.servers import HOST

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


def open_report(page: Page, out_dir: Path, analysis: Analysis | None = None) -> str:
    """Render `analysis` (the hostile sample by default) to report.html and open it."""
    path = REPORTER.render(analysis or sample_analysis(), out_dir)
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


# Pixels of a canvas that are not (near) white, and those that are clearly red.
CANVAS_PIXELS = """((selector) => {
  const c = document.querySelector(selector);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let inked = 0, red = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] === 0) continue;
    if (d[i] < 245 || d[i + 1] < 245 || d[i + 2] < 245) inked++;
    if (d[i] > 200 && d[i + 1] < 90 && d[i + 2] < 90) red++;
  }
  return [inked, red];
})(%s)"""
TEXTS = "[...document.querySelectorAll(%s)].map(e => e.textContent.replace(/\\s+/g, ' ').trim())"


def shoot_section(page: Page, selector: str, name: str) -> None:
    """A PNG of one element in test-artifacts/ (`page.screenshot` takes the whole page)."""
    x, y, w, h = page.evaluate(
        f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
        ".getBoundingClientRect(); return [r.left + scrollX, r.top + scrollY, r.width, r.height];"
        " })()"
    )
    shot = page.call(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": x, "y": y, "width": w, "height": h, "scale": 1},
        },
        timeout=30.0,
    )
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / name).write_bytes(base64.b64decode(shot["data"]))


def pixels(page: Page, selector: str) -> tuple[int, int]:
    inked, red = page.evaluate(CANVAS_PIXELS % json.dumps(selector))
    return inked, red


def texts(page: Page, selector: str) -> list[str]:
    found: list[str] = page.evaluate(TEXTS % json.dumps(selector))
    return found


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


def open_real_report(page: Page, out: Path) -> None:
    """Open the report.html of a real run in `out`: offline, no console error."""
    url = (out / "report.html").resolve().as_uri()
    page.goto(url)
    page.wait_for("window.__asgiprofRendered === true", timeout=15)
    page.browser.pump(0.3)
    assert page.requested_urls == [url], "the report must not touch the network"
    assert page.console_errors == []


def profile_app(cwd: Path, module: str, out: Path, paths: list[str]) -> dict[str, object]:
    """`asgiprof run` a real uvicorn app `module` in `cwd` for 6 s under load on `paths`;
    its summary.json."""
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
