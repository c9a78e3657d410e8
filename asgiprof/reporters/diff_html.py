"""`diff.html`: the diff's tables and a differential flamegraph, one self-contained page.

Same rules as report.html (reporters/html/): one jinja2 environment with autoescape,
CSS and JS inlined and allowed by sha256 hashes in a strict Content-Security-Policy, and
data reaching the script only through `|tojson`. The flamegraph payload is the prefix tree
of both runs' frame paths (pre-order, parents first), each node with its own (self) share
of the base and head runs' event-loop samples; the page sums them up the tree, draws each
frame as wide as its mean share in the two runs and colours it by the change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, TypedDict

from markupsafe import Markup

from asgiprof import __version__
from asgiprof.diff import FLAME_VIEWS, DiffResult, FrameKey
from asgiprof.reporters.diff_text import ROUTE_STATUS, change_text
from asgiprof.reporters.html import KIND_CODES, content_security_policy, environment, inline_asset

DIFF_FILE: Final = "diff.html"
PAYLOAD_ELEMENT_ID: Final = "asgiprof-diff"
VIEW_LABELS: Final = {"loop": "Event-loop thread", "blocking": "Blocking episodes"}


class DiffViewPayload(TypedDict):
    label: str
    # per node: [parent (-1 for a root), frame index, base self share, head self share]
    nodes: list[list[float]]


class DiffPayload(TypedDict):
    version: int
    frames: list[list[str | int]]  # [function, file, line, kind code]
    views: dict[str, DiffViewPayload]


def diff_payload(result: DiffResult) -> DiffPayload:
    frame_ids: dict[FrameKey, int] = {}
    frames: list[list[str | int]] = []
    views: dict[str, DiffViewPayload] = {}
    for view in FLAME_VIEWS:
        nodes: list[list[float]] = []
        index: dict[tuple[FrameKey, ...], int] = {}
        # Sorted paths put every prefix before its extensions: parents precede children.
        for path, (base, head) in sorted(result.flame[view].items()):
            for depth in range(1, len(path) + 1):
                prefix = path[:depth]
                if prefix in index:
                    continue
                key = prefix[-1]
                fid = frame_ids.get(key)
                if fid is None:
                    fid = frame_ids[key] = len(frames)
                    frames.append([key[0], key[1], key[2], KIND_CODES.get(key[3], 0)])
                index[prefix] = len(nodes)
                nodes.append([index[prefix[:-1]] if depth > 1 else -1, fid, 0.0, 0.0])
            node = nodes[index[path]]
            node[2] += round(base, 7)
            node[3] += round(head, 7)
        views[view] = {"label": VIEW_LABELS.get(view, view), "nodes": nodes}
    return {"version": 1, "frames": frames, "views": views}


def diff_context(result: DiffResult) -> dict[str, Any]:
    script = inline_asset("diff.js")
    style = inline_asset("report.css")
    ms = result.base.interval_ms
    return {
        "version": __version__,
        "title": "asgiprof diff",
        "base": result.base,
        "head": result.head,
        "alpha": result.alpha,
        "significant": len(result.significant),
        "totals": [
            {
                "scope": "event loop" if c.per == "sample" else "per request",
                "text": change_text(c, ms),
                "verdict": c.verdict,
            }
            for c in result.totals
        ],
        "routes": [
            {
                "route": r.route,
                "status": ROUTE_STATUS[r.status],
                "rows": [{"text": change_text(c, ms), "verdict": c.verdict} for c in r.changes],
            }
            for r in result.routes
        ],
        "culprits": [
            {
                "where": f"{d.key[0]}:{d.culprit.line}",
                "function": d.culprit.function,
                "code": d.culprit.code,
                "route": d.culprit.route,
                "status": d.status,
                "text": change_text(d.blocked, ms),
                "verdict": d.blocked.verdict,
            }
            for d in result.culprits
        ],
        "payload": diff_payload(result),
        "payload_id": PAYLOAD_ELEMENT_ID,
        "script": Markup(script.text),
        "style": Markup(style.text),
        "csp": content_security_policy(script, style),
    }


def render_diff_html(result: DiffResult) -> str:
    return environment().get_template("diff.html").render(diff_context(result))


def write_diff_html(result: DiffResult, out_dir: Path) -> Path:
    path = out_dir / DIFF_FILE
    path.write_bytes(render_diff_html(result).encode("utf-8"))
    return path
