"""`report_context(analysis)`: the template variables of report.html (header facts, section
rows, the payload, the inlined assets and their CSP)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

from markupsafe import Markup

from asgiprof import __version__
from asgiprof.analyze.result import ROUTE_VIEW_PREFIX, Analysis
from asgiprof.model import LoadInfo
from asgiprof.reporters.document import plain
from asgiprof.reporters.html.assets import inline_asset
from asgiprof.reporters.html.environment import content_security_policy
from asgiprof.reporters.html.formatting import format_count, format_ms, format_pct
from asgiprof.reporters.html.payload import PAYLOAD_ELEMENT_ID, report_payload
from asgiprof.reporters.html.payload_types import Payload
from asgiprof.reporters.html.rows import (
    culprit_rows,
    dependency_rows,
    finding_cards,
    fleet_rows,
    middleware_rows,
    threadpool_facts,
    worker_rows,
)
from asgiprof.reporters.html.workers import worker_name

# Culprit rows shown before "Show N more": the top of the ranking is what matters.
CULPRIT_ROWS: Final = 10


@dataclass(frozen=True, slots=True)
class Card:
    label: str
    value: str
    detail: str
    tone: str  # "", "busy", "blocked", "ok": CSS modifier


def report_context(analysis: Analysis) -> dict[str, Any]:
    """Template variables: header facts, table rows, payload, inlined assets and CSP."""
    payload = report_payload(analysis)
    return {
        **_header(analysis),
        **_sections(analysis, payload),
        "routes": _route_rows(analysis),
        "routes_evidence": analysis.routes_evidence,
        "request_overhead_ms": analysis.request_overhead_ms,
        "finding_min_samples": analysis.params.finding_min_samples,
        "loop_episodes": analysis.loop.episodes,
        "loop_blocked_ms": analysis.loop.blocked_ms,
        "block_threshold_ms": analysis.params.block_threshold_ms,
        "culprit_rows": CULPRIT_ROWS,
        **_page(payload),
    }


def _header(analysis: Analysis) -> dict[str, Any]:
    """What the page's header says about the target, the run and the loop."""
    profile = analysis.profile
    target = profile.target
    started_at = profile.sampling.started_at
    started = (
        datetime.fromtimestamp(started_at, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        if started_at > 0
        else None
    )
    names = (worker_name(analysis, p) if profile.sources else str(p) for p in target.pids)
    return {
        "version": __version__,
        "title": f"asgiprof report: {target.server}",
        "command": shlex.join(target.command),
        "server": target.server,
        "pids": ", ".join(names),
        "mode": target.mode,
        "started": started,
        "exit_status": target.exit_status,
        "load": _load_facts(profile.load),
        "threads": analysis.thread_role_counts(),
        "cards": header_cards(analysis),
        "notes": list(analysis.notes),
        "traffic": analysis.traffic.warning,
        "traffic_level": analysis.traffic.level,
    }


def _sections(analysis: Analysis, payload: Payload) -> dict[str, Any]:
    """The sections' rows; a section without data is None (left out of the page)."""
    middleware = middleware_rows(analysis)
    dependencies = dependency_rows(analysis)
    threadpool = threadpool_facts(analysis)
    resources = payload["resources"]["processes"]
    present = {
        "middleware": middleware,
        "dependencies": dependencies,
        "threadpool": threadpool,
        "resources": resources,
    }
    return {
        "findings": finding_cards(analysis, {name for name, rows in present.items() if rows}),
        "culprits": culprit_rows(analysis),
        "workers": worker_rows(analysis, payload),
        "fleet": fleet_rows(analysis),
        "middleware": middleware,
        "dependencies": dependencies,
        "threadpool": threadpool,
        "resources": {"warmup_s": analysis.resources.warmup_s} if resources else None,
    }


def _route_rows(analysis: Analysis) -> list[dict[str, Any]]:
    shares = analysis.route_shares()
    views = analysis.drawn_views()
    return [
        {
            **plain(r, rounding=False),
            "share": shares[r.route],
            "view": ROUTE_VIEW_PREFIX + r.route if ROUTE_VIEW_PREFIX + r.route in views else None,
        }
        for r in analysis.routes
    ]


def _page(payload: Payload) -> dict[str, Any]:
    """The payload, and the inlined script and style with the CSP that allows them."""
    script = inline_asset("report.js")
    style = inline_asset("report.css")
    return {
        "payload": payload,
        "payload_id": PAYLOAD_ELEMENT_ID,
        "script": Markup(script.text),
        "style": Markup(style.text),
        "csp": content_security_policy(script, style),
    }


def header_cards(analysis: Analysis) -> list[Card]:
    loop = analysis.loop
    s = analysis.profile.sampling
    threshold = analysis.params.block_threshold_ms
    return [
        Card(
            "Blocked",
            format_pct(loop.blocked_share),
            f"{format_ms(loop.blocked_ms)} of event-loop time",
            "blocked" if loop.episodes else "ok",
        ),
        Card(
            "Loop utilization",
            format_pct(loop.utilization),
            f"busy {format_ms(loop.busy_ms)}, idle {format_ms(loop.idle_ms)}",
            "busy",
        ),
        Card(
            "Blocking episodes",
            format_count(loop.episodes),
            f"\u2265 {threshold:g} ms each; longest {format_ms(loop.longest_block_ms)}",
            "blocked" if loop.episodes else "",
        ),
        Card("Duration", format_ms(s.duration_s * 1000), f"stopped by {s.stopped_by}", ""),
        Card(
            "Samples",
            format_count(s.samples),
            f"at {s.rate_hz} Hz" + (f", {format_count(s.errors)} errors" if s.errors else ""),
            "",
        ),
    ]


def _load_facts(load: LoadInfo | None) -> dict[str, Any] | None:
    """The load run with --load / --load-url, for the header (None without one)."""
    if load is None:
        return None
    return {
        "command": load.command,
        "requests": load.requests,
        "how": "exited 0" if load.stopped_by == "exit" and load.exit_status == 0 else None,
        "stopped_by": load.stopped_by,
        "failure": load.failure,
    }
