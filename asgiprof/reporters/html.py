"""`report.html`: one self-contained, offline page rendered from the Analysis with jinja2.

Contract: `report_payload(analysis)` is the plain data the page's JavaScript reads (one JSON
object, decoded and tested in Python); `report_context(analysis)` adds what the templates
print; `render_html(analysis)` returns the page; `REPORTER.render` writes it. Nothing here
fetches anything at view time: CSS and JS are inlined, allowed by sha256 hashes in a strict
Content-Security-Policy, and every piece of target-derived text reaches the page either
through autoescaped template text or through the `tojson` filter (which escapes `<`, `>`,
`&`, `'`, U+2028 and U+2029), never through string formatting.

The flamegraph payload is a call tree shared by every view: the prefix tree of all stacks
with weight in some view, numbered in pre-order (children sorted by function, file, line,
so a parent always precedes its children and siblings keep their order across views), plus
per view the sparse `(node, ms)` pairs where stacks end. The page sums a view's weights up
the tree in one pass, so switching views costs O(nodes) and no stack is sent twice.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final, TypedDict

import jinja2
import orjson
from markupsafe import Markup, escape

from asgiprof import __version__
from asgiprof.analyze.frames import file_kind
from asgiprof.analyze.result import (
    ROUTE_VIEW_PREFIX,
    VIEW_ALL,
    VIEW_BLOCKING,
    VIEW_LOOP,
    VIEW_THREADPOOL,
    Analysis,
    Culprit,
)
from asgiprof.model import Frame

PAYLOAD_VERSION: Final = 1
PAYLOAD_ELEMENT_ID: Final = "asgiprof-data"

# Frame kinds as the page's JS numbers them (frames are colored by kind).
KIND_CODES: Final = {"user": 0, "library": 1, "stdlib": 2}

# The main flamegraph views, in the order of the view switcher, with their labels.
MAIN_VIEWS: Final = (
    (VIEW_ALL, "All samples"),
    (VIEW_LOOP, "Event-loop thread"),
    (VIEW_BLOCKING, "Blocking episodes"),
    (VIEW_THREADPOOL, "Threadpool threads"),
)

# Culprit rows shown before "Show N more": the top of the ranking is what matters.
CULPRIT_ROWS: Final = 10

_TEMPLATE_PACKAGE: Final = "asgiprof"
_TEMPLATE_DIR: Final = "templates"
_REPO_TEMPLATES: Final = Path(__file__).resolve().parents[2] / "templates"


# ---------------------------------------------------------------------------------------
# Templates: one cached Environment, package resource first, then the repository checkout.


def _loader() -> jinja2.BaseLoader:
    # An installed wheel carries top-level templates/ as asgiprof/templates (force-include
    # in pyproject.toml); a development checkout keeps them at <repo>/templates.
    try:
        return jinja2.PackageLoader(_TEMPLATE_PACKAGE, _TEMPLATE_DIR)
    except ValueError:
        pass
    if _REPO_TEMPLATES.is_dir():
        return jinja2.FileSystemLoader(str(_REPO_TEMPLATES))
    raise FileNotFoundError(
        "asgiprof templates not found: reinstall asgiprof (the wheel ships asgiprof/templates)"
    )


def tojson(value: Any) -> Markup:
    """JSON safe inside HTML text and `<script>` elements: sorted keys, `<>&'` escaped.

    orjson writes those characters (and U+2028/2029, which old JS parsers treat as line
    ends) only inside strings, so replacing them by `\\uXXXX` escapes keeps the JSON equal.
    """
    raw = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode("utf-8")
    for char, escaped in _JSON_HTML_ESCAPES:
        raw = raw.replace(char, escaped)
    return Markup(raw)


_JSON_HTML_ESCAPES: Final = (
    ("&", "\\u0026"),
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("'", "\\u0027"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=_loader(),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["tojson"] = tojson
    env.filters["ms"] = format_ms
    env.filters["pct"] = format_pct
    env.filters["count"] = format_count
    env.filters["code_spans"] = code_spans
    return env


@dataclass(frozen=True, slots=True)
class InlineAsset:
    """CSS or JS inlined into the page, with its CSP source expression."""

    text: str
    csp_hash: str  # "'sha256-...'"


@functools.cache
def inline_asset(name: str) -> InlineAsset:
    """Load `assets/<name>` through the template loader and hash it for the CSP."""
    env = environment()
    assert env.loader is not None
    text, _, _ = env.loader.get_source(env, f"assets/{name}")
    # An asset closing its own element would end it early; ours never do.
    if "</script" in text.lower() or "</style" in text.lower():
        raise ValueError(f"asset {name} contains a closing script/style tag")
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return InlineAsset(text, f"'sha256-{base64.b64encode(digest).decode('ascii')}'")


def content_security_policy(script: InlineAsset, style: InlineAsset) -> str:
    # Nothing may load from anywhere; only our two inline blocks may run or style.
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src {script.csp_hash}",
            f"style-src {style.csp_hash}",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )


# ---------------------------------------------------------------------------------------
# Formatting shared by the templates (pure, so tests pin the exact text).


def format_ms(ms: float) -> str:
    """1.5 -> "1.5 ms", 250 -> "250 ms", 12345 -> "12.3 s", 125000 -> "2 min 05 s"."""
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.{2 if ms < 10_000 else 1}f} s"
    minutes, seconds = divmod(round(ms / 1000), 60)
    return f"{minutes} min {seconds:02d} s"


def format_pct(share: float) -> str:
    """0.1234 -> "12.3%"; tiny non-zero shares stay visible as "<0.1%"."""
    if 0 < share < 0.001:
        return "<0.1%"
    return f"{share * 100:.1f}%"


def format_count(n: int) -> str:
    return f"{n:,}".replace(",", "\u2009")  # thin space: readable, locale-neutral


def code_spans(text: str) -> Markup:
    """Escape `text`, then show its `backticked` parts (as advice writes code) as <code>."""
    pieces = text.split("`")
    if len(pieces) % 2 == 0:  # an unpaired backtick: keep it literal
        return escape(text)
    out = Markup("")
    for i, piece in enumerate(pieces):
        out += Markup("<code>%s</code>") % piece if i % 2 else escape(piece)
    return out


# ---------------------------------------------------------------------------------------
# The call tree shared by all flamegraph views.


@dataclass(frozen=True, slots=True)
class CallTree:
    """Prefix tree of stacks in pre-order: `parent[i] < i`, node 0 is the root."""

    parent: list[int]
    frame: list[int]  # index into `frames`, -1 for the root
    frames: list[int]  # compact frame index -> profile frame id
    stack_node: dict[int, int]  # profile stack id -> node where that stack ends
    _children: list[dict[int, int]]  # pre-order node -> {profile frame id: node}

    def node_of(self, frame_ids: Sequence[int]) -> int | None:
        """Node reached by following `frame_ids` (root first) from the root, if any."""
        node = 0
        for fid in frame_ids:
            nxt = self._children[node].get(fid)
            if nxt is None:
                return None
            node = nxt
        return node


def build_call_tree(
    frames: Sequence[Frame], stacks: Sequence[tuple[int, ...]], stack_ids: Iterable[int]
) -> CallTree:
    """Merge the given stacks into one pre-ordered tree; siblings sorted by name."""
    children: list[dict[int, int]] = [{}]
    node_frame = [-1]
    ends: dict[int, int] = {}
    for sid in sorted(set(stack_ids)):
        node = 0
        for fid in stacks[sid]:
            branch = children[node]
            nxt = branch.get(fid)
            if nxt is None:
                nxt = branch[fid] = len(node_frame)
                children.append({})
                node_frame.append(fid)
            node = nxt
        ends[sid] = node

    used = {fid for fid in node_frame if fid >= 0}
    order_key = {
        fid: rank
        for rank, fid in enumerate(
            sorted(used, key=lambda f: (frames[f].function, frames[f].file, frames[f].line, f))
        )
    }
    # Pre-order walk; push children in reverse so the smallest name comes out first.
    new_id = [0] * len(node_frame)
    old_parent = [-1] * len(node_frame)
    order: list[int] = []
    todo = [0]
    while todo:
        old = todo.pop()
        new_id[old] = len(order)
        order.append(old)
        kids = sorted(children[old].values(), key=lambda c: order_key[node_frame[c]])
        for c in reversed(kids):
            old_parent[c] = old
            todo.append(c)

    compact: dict[int, int] = {}
    parent: list[int] = []
    frame: list[int] = []
    for old in order:
        fid = node_frame[old]
        if fid >= 0 and fid not in compact:
            compact[fid] = len(compact)
        parent.append(-1 if old == 0 else new_id[old_parent[old]])
        frame.append(compact[fid] if fid >= 0 else -1)
    new_children = [{fid: new_id[c] for fid, c in children[old].items()} for old in order]
    return CallTree(
        parent=parent,
        frame=frame,
        frames=list(compact),
        stack_node={sid: new_id[n] for sid, n in ends.items()},
        _children=new_children,
    )


# ---------------------------------------------------------------------------------------
# The payload the page's JavaScript reads.


class FramesPayload(TypedDict):
    fn: list[int]  # index into strings
    file: list[int]  # index into strings
    line: list[int]
    kind: list[int]  # KIND_CODES


class ViewPayload(TypedDict):
    id: str
    label: str
    group: str  # "main" or "route"
    total_ms: float
    nodes: list[int]  # ascending
    ms: list[float]


class CulpritPayload(TypedDict):
    rank: int
    function: str
    file: str
    line: int
    code: str | None
    route: str | None
    routes: list[str]
    kind: str
    blocked_ms: float
    episodes: int
    max_ms: float
    advice: str | None
    stack: list[str]
    node: int  # tree node of the culprit frame on its representative stack, -1 if none
    frames: list[int]  # compact frame indexes at this file:line, highlighted in the graph


class EpisodesPayload(TypedDict):
    start_s: list[float]
    ms: list[float]
    culprit: list[int]  # index into culprits, -1 when the episode has none listed
    route: list[int]  # index into route_names, -1 without a route


class TimelinePayload(TypedDict):
    start_s: float
    width_s: float
    idle_ms: list[float]
    busy_ms: list[float]
    blocked_ms: list[float]


class Payload(TypedDict):
    version: int
    strings: list[str]
    frames: FramesPayload
    nodes: dict[str, list[int]]  # "parent", "frame"
    views: list[ViewPayload]
    default_view: str
    culprits: list[CulpritPayload]
    episodes: EpisodesPayload
    timeline: TimelinePayload
    route_names: list[str]
    rate_hz: int


def _r(x: float, digits: int = 3) -> float:
    # Rounded floats keep the page small and its bytes stable across platforms.
    return round(x, digits) + 0.0  # + 0.0 turns -0.0 into 0.0


def _ordered_views(analysis: Analysis) -> list[tuple[str, str, str]]:
    """(view id, label, group): main views always, then routes in the routes table order."""
    views = [(vid, label, "main") for vid, label in MAIN_VIEWS]
    route_ids = [
        vid for vid in analysis.views if vid.startswith(ROUTE_VIEW_PREFIX) and analysis.views[vid]
    ]
    ranked = {ROUTE_VIEW_PREFIX + r.route: i for i, r in enumerate(analysis.routes)}
    route_ids.sort(key=lambda vid: (ranked.get(vid, len(ranked)), vid))
    views.extend((vid, vid[len(ROUTE_VIEW_PREFIX) :], "route") for vid in route_ids)
    return views


def _culprit_frame_ids(analysis: Analysis, culprit: Culprit) -> list[int]:
    """Stack prefix (profile frame ids) ending at the culprit frame, or the whole stack."""
    profile = analysis.profile
    if not 0 <= culprit.stack_id < len(profile.stacks):
        return []
    stack = profile.stacks[culprit.stack_id]
    for depth in range(len(stack) - 1, -1, -1):
        f = profile.frames[stack[depth]]
        if f.file == culprit.file and f.line == culprit.line:
            return list(stack[: depth + 1])
    return list(stack)


def report_payload(analysis: Analysis) -> Payload:
    """Everything the page's script needs, as plain JSON-ready data (deterministic)."""
    profile = analysis.profile
    views = _ordered_views(analysis)
    stack_ids: set[int] = set()
    for vid, _, _ in views:
        stack_ids.update(sid for sid, ms in analysis.views.get(vid, {}).items() if ms > 0)
    stack_ids.update(c.stack_id for c in analysis.culprits if 0 <= c.stack_id < len(profile.stacks))
    tree = build_call_tree(profile.frames, profile.stacks, stack_ids)

    strings: dict[str, int] = {}

    def intern(s: str) -> int:
        idx = strings.get(s)
        if idx is None:
            idx = strings[s] = len(strings)
        return idx

    frames: FramesPayload = {"fn": [], "file": [], "line": [], "kind": []}
    at_line: dict[tuple[str, int], list[int]] = {}  # file:line -> compact frame indexes
    for compact, fid in enumerate(tree.frames):
        f = profile.frames[fid]
        at_line.setdefault((f.file, f.line), []).append(compact)
        frames["fn"].append(intern(f.function))
        frames["file"].append(intern(f.file))
        frames["line"].append(f.line)
        frames["kind"].append(KIND_CODES[file_kind(f.file)])

    view_payloads: list[ViewPayload] = []
    for vid, label, group in views:
        weights: dict[int, float] = {}
        for sid, ms in analysis.views.get(vid, {}).items():
            if ms > 0:
                node = tree.stack_node[sid]
                weights[node] = weights.get(node, 0.0) + ms
        nodes = sorted(weights)
        view_payloads.append(
            {
                "id": vid,
                "label": label,
                "group": group,
                "total_ms": _r(sum(weights.values())),
                "nodes": nodes,
                "ms": [_r(weights[n]) for n in nodes],
            }
        )

    culprits: list[CulpritPayload] = []
    culprit_index: dict[tuple[str, int], int] = {}
    for i, c in enumerate(analysis.culprits):
        culprit_index.setdefault((c.file, c.line), i)
        culprit_node = tree.node_of(_culprit_frame_ids(analysis, c))
        culprits.append(
            {
                "rank": c.rank,
                "function": c.function,
                "file": c.file,
                "line": c.line,
                "code": c.code,
                "route": c.route,
                "routes": list(c.routes),
                "kind": c.kind,
                "blocked_ms": _r(c.blocked_ms),
                "episodes": c.episodes,
                "max_ms": _r(c.max_ms),
                "advice": c.advice,
                "stack": list(c.stack),
                "node": -1 if culprit_node is None else culprit_node,
                "frames": at_line.get((c.file, c.line), []),
            }
        )

    route_names = [r.route for r in analysis.routes]
    route_index = {name: i for i, name in enumerate(route_names)}
    for e in analysis.episodes:
        if e.route is not None and e.route not in route_index:
            route_index[e.route] = len(route_names)
            route_names.append(e.route)
    episodes: EpisodesPayload = {"start_s": [], "ms": [], "culprit": [], "route": []}
    for e in sorted(analysis.episodes, key=lambda e: (e.start_s, e.pid, e.tid)):
        episodes["start_s"].append(_r(e.start_s, 4))
        episodes["ms"].append(_r(e.duration_ms, 2))
        episodes["culprit"].append(-1 if e.culprit is None else culprit_index.get(e.culprit, -1))
        episodes["route"].append(-1 if e.route is None else route_index[e.route])

    bins = analysis.timeline
    timeline: TimelinePayload = {
        "start_s": _r(bins[0].start_s, 4) if bins else 0.0,
        "width_s": _r(bins[0].width_s, 6) if bins else 0.0,
        "idle_ms": [_r(b.idle_ms, 2) for b in bins],
        "busy_ms": [_r(b.busy_ms, 2) for b in bins],
        "blocked_ms": [_r(b.blocked_ms, 2) for b in bins],
    }

    totals = {v["id"]: v["total_ms"] for v in view_payloads}
    default_view = next(
        (vid for vid in (VIEW_LOOP, VIEW_ALL) if totals.get(vid, 0) > 0),
        next((v["id"] for v in view_payloads if v["total_ms"] > 0), VIEW_ALL),
    )
    return {
        "version": PAYLOAD_VERSION,
        "strings": list(strings),
        "frames": frames,
        "nodes": {"parent": tree.parent, "frame": tree.frame},
        "views": view_payloads,
        "default_view": default_view,
        "culprits": culprits,
        "episodes": episodes,
        "timeline": timeline,
        "route_names": route_names,
        "rate_hz": profile.sampling.rate_hz,
    }


# ---------------------------------------------------------------------------------------
# What the templates print.


@dataclass(frozen=True, slots=True)
class Card:
    label: str
    value: str
    detail: str
    tone: str  # "", "busy", "blocked", "ok": CSS modifier


def short_path(path: str, parts: int = 3) -> str:
    """The last `parts` components of a path, "…/" first when some were dropped."""
    pieces = [p for p in path.replace("\\", "/").split("/") if p]
    return path if len(pieces) <= parts else "\u2026/" + "/".join(pieces[-parts:])


def header_cards(analysis: Analysis) -> list[Card]:
    loop = analysis.loop
    s = analysis.profile.sampling
    active = loop.busy_ms + loop.idle_ms
    blocked_share = loop.blocked_ms / active if active > 0 else 0.0
    threshold = analysis.params.block_threshold_ms
    return [
        Card(
            "Blocked",
            format_pct(blocked_share),
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


def report_context(analysis: Analysis) -> dict[str, Any]:
    """Template variables: header facts, table rows, payload, inlined assets and CSP."""
    profile = analysis.profile
    target = profile.target
    script = inline_asset("report.js")
    style = inline_asset("report.css")
    roles = analysis.thread_roles
    role_counts = {
        role: sum(1 for r in roles.values() if r == role)
        for role in ("event-loop", "threadpool", "other")
    }
    started = (
        datetime.fromtimestamp(profile.sampling.started_at, tz=timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%S UTC"
        )
        if profile.sampling.started_at > 0
        else None
    )
    route_total = sum(r.loop_ms + r.threadpool_ms for r in analysis.routes)
    view_ids = {vid for vid, ms in analysis.views.items() if any(v > 0 for v in ms.values())}
    return {
        "version": __version__,
        "title": f"asgiprof report: {target.server}",
        "command": shlex.join(target.command),
        "server": target.server,
        "pids": ", ".join(str(p) for p in target.pids),
        "mode": target.mode,
        "started": started,
        "exit_status": target.exit_status,
        "threads": role_counts,
        "cards": header_cards(analysis),
        "notes": list(analysis.notes),
        "culprits": [
            {
                "index": i,
                "rank": c.rank,
                "route": c.route,
                "more_routes": max(0, len(c.routes) - 1),
                "file": c.file,
                "short_file": short_path(c.file),
                "line": c.line,
                "function": c.function,
                "code": c.code,
                "kind": c.kind,
                "blocked_ms": c.blocked_ms,
                "episodes": c.episodes,
                "max_ms": c.max_ms,
                "advice": c.advice,
            }
            for i, c in enumerate(analysis.culprits)
        ],
        "routes": [
            {
                "route": r.route,
                "samples": r.samples,
                "loop_ms": r.loop_ms,
                "blocked_ms": r.blocked_ms,
                "threadpool_ms": r.threadpool_ms,
                "share": (r.loop_ms + r.threadpool_ms) / route_total if route_total > 0 else 0.0,
                "view": ROUTE_VIEW_PREFIX + r.route
                if ROUTE_VIEW_PREFIX + r.route in view_ids
                else None,
            }
            for r in analysis.routes
        ],
        "block_threshold_ms": analysis.params.block_threshold_ms,
        "culprit_rows": CULPRIT_ROWS,
        "payload": report_payload(analysis),
        "payload_id": PAYLOAD_ELEMENT_ID,
        "script": Markup(script.text),
        "style": Markup(style.text),
        "csp": content_security_policy(script, style),
    }


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
