"""What the templates print, section by section: table rows and facts as plain dicts of
unrounded figures (the templates' filters format them). Fields come from the result
dataclasses through `document.plain`; a row adds only its display strings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from asgiprof.analyze.frames import file_kind, short_name
from asgiprof.analyze.result import Analysis, Culprit, MiddlewareLayer, MiddlewareSummary
from asgiprof.model import Frame
from asgiprof.reporters.document import plain
from asgiprof.reporters.html.formatting import short_path
from asgiprof.reporters.html.payload_types import Payload, WorkerPayload
from asgiprof.reporters.html.workers import is_main_process, worker_name

# Sections a finding points to, by finding kind (the link under its card).
FINDING_SECTIONS: Final = {
    "possible-leak": ("resources", "Resources"),
    "threadpool-saturation": ("threadpool", "Threadpool"),
    "middleware-cost": ("middleware", "Middleware"),
    "blocking-dependency": ("dependencies", "Dependencies"),
    "gil-contention": ("threadpool", "Threadpool"),
}

# Calls listed under a culprit before its "calls" summary says "…".
CALLS_IN_SUMMARY: Final = 3
# Routes named in a dependency badge or table cell before "+N more".
ROUTES_SHOWN: Final = 3
# Request-path time below this share of the total is not worth an "other" row.
OTHER_MIN_SHARE: Final = 0.001


def _split_call(call: str) -> Frame:
    """`function (file:line)` back into a Frame (the text `short_name` writes). Split at the
    first " (": qualified names hold no spaces, paths may."""
    head, sep, tail = call.partition(" (")
    if not sep or not tail.endswith(")"):
        return Frame(call, "", 0)
    file, _, line = tail[:-1].rpartition(":")
    return Frame(head, file, int(line) if line.isdigit() else 0)


def _where(file: str, line: int, parts: int = 2) -> dict[str, str]:
    return {"where": f"{file}:{line}", "short": f"{short_path(file, parts)}:{line}"}


def call_rows(analysis: Analysis, culprit: Culprit) -> list[dict[str, Any]]:
    """The culprit's calls with their kind (user, library, stdlib) for the call chain."""
    profile = analysis.profile
    known: dict[str, Frame] = {}
    if 0 <= culprit.stack_id < len(profile.stacks):
        for f in profile.stack_frames(culprit.stack_id):
            known.setdefault(short_name(f), f)
    rows = []
    for call in culprit.calls:
        f = known.get(call) or _split_call(call)
        rows.append(
            {
                "function": f.function,
                **(_where(f.file, f.line) if f.file else {"where": "", "short": ""}),
                "kind": file_kind(f.file) if f.file else "library",
            }
        )
    return rows


def _routes_cell(routes: Sequence[str]) -> dict[str, Any]:
    return {
        "shown": list(routes[:ROUTES_SHOWN]),
        "more": max(0, len(routes) - ROUTES_SHOWN),
        "all": ", ".join(routes),
    }


def _calls_summary(c: Culprit) -> str:
    shown = " \u2192 ".join(_split_call(call).function for call in c.calls[:CALLS_IN_SUMMARY])
    return shown + (" \u2192 \u2026" if len(c.calls) > CALLS_IN_SUMMARY else "")


def culprit_rows(analysis: Analysis) -> list[dict[str, Any]]:
    return [
        {
            **plain(c, rounding=False),
            "index": i,
            "more_routes": max(0, len(c.routes) - 1),
            "short_file": short_path(c.file),
            "used_by": _routes_cell(c.routes) if c.context == "dependency" else None,
            "calls": call_rows(analysis, c),
            "calls_summary": _calls_summary(c),
        }
        for i, c in enumerate(analysis.culprits)
    ]


def finding_cards(analysis: Analysis, sections: set[str]) -> list[dict[str, Any]]:
    """Warnings first, then the analysis's order; each links to its section when shown."""
    order = {"warning": 0, "info": 1}
    cards = []
    for f in sorted(analysis.findings, key=lambda f: order.get(f.severity, 2)):
        section = FINDING_SECTIONS.get(f.kind)
        shown = section if section is not None and section[0] in sections else None
        cards.append({**plain(f, rounding=False), "section": shown})
    return cards


def _path_row(
    m: MiddlewareSummary,
    label: str,
    ms: float,
    role: str,
    layer: MiddlewareLayer | None = None,
    number: int | None = None,
) -> dict[str, Any]:
    """One bar of the request path; bars: your middleware, library middleware, and plain
    for everything else."""
    origin = layer.origin if layer is not None else "library"
    blocked = layer.blocked_ms if layer is not None else 0.0
    where = (
        {
            "where": f"{layer.function} ({layer.file}:{layer.line})",
            "short": f"{short_path(layer.file, 2)}:{layer.line}",
        }
        if layer is not None
        else {"where": "", "short": ""}
    )
    return {
        "label": label,
        "role": role,
        "origin": origin,
        "tone": origin if role == "middleware" else "plain",
        "order": number,
        **where,
        "self_ms": ms,
        "blocked_ms": blocked,
        "share": ms / m.request_ms,
        "blocked_share": blocked / ms if ms > 0 else 0.0,
    }


def middleware_rows(analysis: Analysis) -> dict[str, Any] | None:
    """Request time on the loop in request order: the server's own code, every layer
    outermost first, then router and endpoints (and what is left, if anything), so the
    shares add up to 100%. None when no middleware layer had time."""
    m = analysis.middleware
    layers = m.middleware_layers
    if m.request_ms <= 0 or not any(layer.self_ms > 0 for layer in layers):
        return None
    rows = [_path_row(m, f"server ({analysis.profile.target.server})", m.server_ms, "server")]
    # Numbered 1, 2, ... as listed (the analysis's order counts from 0).
    for number, layer in enumerate(sorted(m.layers, key=lambda x: x.order), start=1):
        rows.append(_path_row(m, layer.name, layer.self_ms, layer.role, layer, number))
    rows.append(_path_row(m, "router + endpoints", m.route_ms, "route"))
    if m.other_ms > m.request_ms * OTHER_MIN_SHARE:
        rows.append(_path_row(m, "other request-path code", m.other_ms, "other"))
    return {
        "request_ms": m.request_ms,
        "layers_ms": m.layers_ms,
        "layers_share": m.layers_ms / m.request_ms,
        "layer_count": len(layers),
        "user_count": sum(1 for layer in layers if layer.origin == "user"),
        "rows": rows,
        "sum_share": sum(r["share"] for r in rows),
    }


def dependency_rows(analysis: Analysis) -> dict[str, Any] | None:
    d = analysis.dependencies
    if not d.dependencies:
        return None
    return {
        "solving_ms": d.solving_ms,
        "rows": [
            {
                **plain(dep, rounding=False),
                **_where(dep.file, dep.line),
                "routes": _routes_cell(dep.routes),
                "shares": list(dep.shares) if len(dep.shares) == len(dep.routes) else [],
            }
            for dep in d.dependencies
        ],
    }


def threadpool_facts(analysis: Analysis) -> dict[str, Any] | None:
    t = analysis.threadpool
    if not t.workers_seen:
        return None
    return plain(t, exclude=("timeline",), rounding=False)


def _worker_row(
    analysis: Analysis, payload: Payload, w: WorkerPayload, hot: bool
) -> dict[str, Any]:
    server = analysis.profile.target.server
    main = is_main_process(analysis, w["pid"])
    top = None
    if w["culprits"]:
        first = w["culprits"][0]
        c = payload["culprits"][first["culprit"]]
        where = _where(c["file"], c["line"])
        top = {"index": first["culprit"], "function": c["function"], **where}
        top["blocked_ms"] = first["blocked_ms"]
    return {
        "pid": w["pid"],
        "name": worker_name(analysis, w["pid"]),
        "label": w["label"],
        "role": "main process" if main else f"{server} worker",
        "utilization": w["utilization"],
        "blocked_ms": w["blocked_ms"],
        "episodes": w["episodes"],
        "longest_block_ms": w["longest_block_ms"],
        # A worker that held its loop longest is the one to look at first.
        "hot": hot and w["blocked_ms"] > 0,
        "top": top,
    }


def worker_rows(analysis: Analysis, payload: Payload) -> dict[str, Any] | None:
    """The Workers table and switch; None for a single process (no section, no switch)."""
    workers = payload["workers"]
    if not workers:
        return None
    hottest = max(workers, key=lambda w: (w["blocked_ms"], -w["pid"]))
    figures = ("utilization", "blocked_ms", "episodes", "longest_block_ms")
    return {
        "rows": [_worker_row(analysis, payload, w, w is hottest) for w in workers],
        "all": plain(analysis.loop, figures, rounding=False),
    }


def fleet_rows(analysis: Analysis) -> dict[str, Any] | None:
    """The runs of a merged profile and each culprit's share per run (None for one run)."""
    fleet = analysis.fleet
    if not fleet.sources:
        return None
    return {
        "sources": [
            {
                **plain(s, rounding=False),
                "short_dir": short_path(s.out_dir, 2),
                "pids": ", ".join(str(original) for _, original in s.pids),
            }
            for s in fleet.sources
        ],
        "culprits": [
            {
                **plain(c, ("rank", "function", "blocked_ms"), rounding=False),
                **_where(c.file, c.line, parts=3),
                "sources": fleet.culprit_sources.get((c.file, c.line), ()),
            }
            for c in analysis.culprits
        ],
    }
