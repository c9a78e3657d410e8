"""`report.html`: one self-contained, offline page rendered from the Analysis with jinja2.

Contract: `report_payload(analysis)` is the plain data the page's JavaScript reads (one JSON
object, decoded and tested in Python); `report_context(analysis)` adds what the templates
print; `render_html(analysis)` returns the page; `REPORTER.render` writes it. Nothing here
fetches anything at view time: CSS and JS are inlined, allowed by sha256 hashes in a strict
Content-Security-Policy, and every piece of target-derived text reaches the page either
through autoescaped template text or through the `tojson` filter (which escapes `<`, `>`,
`&`, `'`, U+2028 and U+2029), never through string formatting.

Beyond the flamegraph, the page shows the diagnostics of the Analysis: findings (one card
each), where each culprit runs (middleware, dependency) and what it called, middleware self
time per layer, dependencies, busy threadpool workers over time and resource series per
process. Tables and text come from the templates; only the charts (threadpool, resources)
read numbers from the payload. A section without data is left out of the page.

Modules, one job each:

    environment.py  the jinja2 Environment, `tojson`, the Content-Security-Policy
    assets.py       the inlined CSS and JS with their CSP hashes
    formatting.py   the templates' number and path filters
    calltree.py     the prefix tree of stacks every flamegraph view shares
    payload.py      `report_payload`: what the page's JavaScript reads (payload_types.py)
    workers.py      the per-worker part of the payload (several server processes)
    charts.py       the threadpool and resource charts' data
    rows.py         the sections' table rows
    context.py      `report_context`: every template variable
"""

from __future__ import annotations

from pathlib import Path

from asgiprof.analyze.result import Analysis
from asgiprof.reporters.html.assets import InlineAsset, inline_asset
from asgiprof.reporters.html.calltree import CallTree, build_call_tree
from asgiprof.reporters.html.charts import (
    MIB,
    RESOURCE_METRICS,
    resources_payload,
    threadpool_payload,
)
from asgiprof.reporters.html.context import CULPRIT_ROWS, Card, header_cards, report_context
from asgiprof.reporters.html.environment import content_security_policy, environment, tojson
from asgiprof.reporters.html.formatting import (
    code_spans,
    format_count,
    format_ms,
    format_pct,
    short_path,
)
from asgiprof.reporters.html.payload import (
    KIND_CODES,
    MAIN_VIEWS,
    PAYLOAD_ELEMENT_ID,
    PAYLOAD_VERSION,
    report_payload,
)
from asgiprof.reporters.html.payload_types import Payload
from asgiprof.reporters.html.rows import (
    call_rows,
    culprit_rows,
    dependency_rows,
    finding_cards,
    fleet_rows,
    middleware_rows,
    threadpool_facts,
    worker_rows,
)
from asgiprof.reporters.html.workers import has_workers, is_main_process, workers_payload

__all__ = [
    "CULPRIT_ROWS",
    "KIND_CODES",
    "MAIN_VIEWS",
    "MIB",
    "PAYLOAD_ELEMENT_ID",
    "PAYLOAD_VERSION",
    "REPORTER",
    "RESOURCE_METRICS",
    "CallTree",
    "Card",
    "HtmlReporter",
    "InlineAsset",
    "Payload",
    "build_call_tree",
    "call_rows",
    "code_spans",
    "content_security_policy",
    "culprit_rows",
    "dependency_rows",
    "environment",
    "finding_cards",
    "fleet_rows",
    "format_count",
    "format_ms",
    "format_pct",
    "has_workers",
    "header_cards",
    "inline_asset",
    "is_main_process",
    "middleware_rows",
    "render_html",
    "report_context",
    "report_payload",
    "resources_payload",
    "short_path",
    "threadpool_facts",
    "threadpool_payload",
    "tojson",
    "worker_rows",
    "workers_payload",
]


def render_html(analysis: Analysis) -> str:
    return environment().get_template("report.html").render(report_context(analysis))


class HtmlReporter:
    name = "html"
    filename = "report.html"

    def render(self, analysis: Analysis, out_dir: Path) -> Path:
        path = out_dir / self.filename
        # Bytes, not text mode: the same analysis gives the same file on every platform.
        path.write_bytes(render_html(analysis).encode("utf-8"))
        return path


REPORTER = HtmlReporter()
