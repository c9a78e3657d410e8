"""The diagnostics of report.html in headless Chromium: findings, where culprits run and what
they call, middleware bars, dependencies, the threadpool chart under the loop timeline and
the resource charts. Opened from file:// with no network; hostile names stay text."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.conftest import ARTIFACTS, Page
from tests.browser.pages import (
    center_of,
    open_real_report,
    open_report,
    pixels,
    profile_app,
    shoot_section,
    texts,
)
from tests.reporter_fixtures import (
    DEP_NAME,
    HOSTILE_FINDING_TITLE,
    HOSTILE_FN,
    MW_NAME,
    sample_analysis,
)
from tests.servers import planted_lines

pytestmark = pytest.mark.browser


def test_diagnostics_render_offline_and_draw(page: Page, tmp_path: Path) -> None:
    # GIVEN the hostile sample report, diagnostics included, opened from disk
    analysis = sample_analysis()
    url = open_report(page, tmp_path, analysis)
    page.browser.pump(0.3)
    # THEN it stayed offline, logged nothing, and no hostile name became markup
    assert page.requested_urls == [url]
    assert page.console_errors == []
    assert page.evaluate("document.scripts.length") == 2
    assert page.evaluate("document.images.length") == 0
    assert page.own_events("Page.javascriptDialogOpening") == []
    # AND one card per finding, warnings first, the hostile title as plain text
    titles = texts(page, "#findings .finding-title")
    assert len(titles) == len(analysis.findings)
    ranked = sorted(analysis.findings, key=lambda f: f.severity != "warning")
    assert titles == [f"{f.severity}: {f.title}" for f in ranked]
    assert f"warning: {HOSTILE_FINDING_TITLE}" in titles
    # AND the culprit badges name the middleware layer and the dependency
    badges = texts(page, ".culprit-row .ctx")
    assert f"in middleware {MW_NAME}" in badges and f"in dependency {DEP_NAME}" in badges
    # AND the middleware bars are as wide as their shares (of the same track)
    widths = page.evaluate(
        """[...document.querySelectorAll('.mw-row')].map(r => {
             const bar = r.querySelector('.bar'), fill = r.querySelector('.bar-fill');
             return [r.querySelector('.layer-name').textContent, fill.getBoundingClientRect().width
               / bar.getBoundingClientRect().width];
           })"""
    )
    rows: dict[str, float] = dict(widths)
    layer = next(x for x in analysis.middleware.layers if x.name == MW_NAME)
    assert rows[MW_NAME] == pytest.approx(layer.share, abs=0.01)
    assert len(texts(page, "#dependencies tbody tr")) == len(analysis.dependencies.dependencies)
    # AND the threadpool chart drew, with red marks where both workers were busy
    charts = page.evaluate("window.__asgiprof.charts()")
    assert charts["threadpool"] is True
    inked, red = pixels(page, "#threadpool-canvas")
    assert inked > 3000 and red > 50
    # AND one resource chart per metric, leaking ones outlined
    # (RSS, open files, threads, connections, and connections to each of two remote ports)
    assert charts["resources"] == page.evaluate("document.querySelectorAll('.res-chart').length")
    assert charts["resources"] == 6
    leaking = page.evaluate(
        "[...document.querySelectorAll('.res-chart.leak')].map(e => e.dataset.metric)"
    )
    assert sorted(leaking) == sorted(
        g.metric for p in analysis.resources.processes for g in p.growth if g.leak
    )
    assert pixels(page, ".res-chart.leak canvas")[1] > 50
    page.evaluate("document.querySelectorAll('.calls').forEach(d => d.open = true)")
    for name in ("findings", "culprits", "threadpool", "middleware", "dependencies", "resources"):
        shoot_section(page, f"#{name}", f"report-{name}.png")


def test_call_chain_threadpool_hover_and_finding_links(page: Page, tmp_path: Path) -> None:
    open_report(page, tmp_path)
    # WHEN a culprit's call chain is opened
    page.click(*center_of(page, ".calls summary"))
    page.wait_for("document.querySelector('.calls').open === true", timeout=5)
    # THEN it lists the calls, library frames marked, and the row stays unselected
    assert page.evaluate("window.__asgiprof.state().selected") == -1
    calls = page.evaluate(
        "[...document.querySelectorAll('.calls li')].map(li => [li.className, "
        "li.querySelector('.call-fn').textContent])"
    )
    assert calls == [
        ["call call-library", "Session.execute"],
        ["call call-stdlib", "socket.recv_into"],
    ]
    row = page.evaluate("document.querySelector('.calls').closest('tr').innerText")
    assert HOSTILE_FN.function in row
    # WHEN the threadpool chart is hovered THEN a tooltip and both charts' cursors show
    x, y = center_of(page, "#threadpool-canvas")
    page.hover(x, y)
    tip = page.wait_for(
        "!document.getElementById('tooltip').hidden && "
        "document.getElementById('tooltip').textContent",
        timeout=5,
    )
    assert "workers busy on average" in tip
    assert page.evaluate("document.getElementById('timeline-cursor').hidden") is False
    # WHEN a resource chart is hovered THEN its value shows
    page.hover(*center_of(page, ".res-chart[data-metric=rss_bytes] canvas"))
    tip = page.wait_for("document.getElementById('tooltip').textContent", timeout=5)
    assert tip.startswith("RSS: ") and "MiB" in tip
    # WHEN a finding's section link is clicked THEN the page goes there
    page.click(*center_of(page, ".finding-link[href='#middleware']"))
    page.wait_for("location.hash === '#middleware'", timeout=5)
    assert page.console_errors == []


@pytest.mark.integration
@pytest.mark.usefixtures("needs_ptrace")
@pytest.mark.timeout(120)
def test_real_middleware_profile_shows_layers_badge_and_finding(
    page: Page, tmp_path: Path, examples_dir: Path
) -> None:
    # GIVEN a real profile of the middleware example (a blocking BaseHTTPMiddleware)
    out = tmp_path / "out"
    data = profile_app(examples_dir, "middleware_stack", out, ["/items/1", "/items/2", "/health"])
    (line,) = planted_lines(examples_dir / "middleware_stack.py")
    culprits = data["culprits"]
    assert isinstance(culprits, list)
    assert any(c["line"] == line and c["context"] == "middleware" for c in culprits), culprits
    # WHEN its report is opened THEN the planted line is badged with its layer
    open_real_report(page, out)
    first = page.evaluate("document.querySelector('.culprit-row').innerText")
    assert f"middleware_stack.py:{line}" in first and "in middleware AuditMiddleware" in first
    # AND the middleware section lists the layers in request order, AuditMiddleware as yours
    layers = texts(page, ".mw-row .layer-name")
    assert layers[0].startswith("server") and layers[-1] == "router + endpoints"
    audit = page.evaluate(
        "[...document.querySelectorAll('.mw-row')].find(r => "
        "r.querySelector('.layer-name').textContent === 'AuditMiddleware').innerText"
    )
    assert "your code" in audit
    # AND a middleware-cost finding leads the page
    kinds = page.evaluate("[...document.querySelectorAll('.finding')].map(f => f.dataset.kind)")
    assert "middleware-cost" in kinds
    assert page.console_errors == []
    page.evaluate("window.scrollTo(0, 0)")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(ARTIFACTS / "report-middleware-real-run.png")
