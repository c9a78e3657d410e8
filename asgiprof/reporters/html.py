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

The flamegraph payload is a call tree shared by every view: the prefix tree of all stacks
with weight in some view, numbered in pre-order (children sorted by function, file, line,
so a parent always precedes its children and siblings keep their order across views), plus
per view the sparse `(node, ms)` pairs where stacks end. The page sums a view's weights up
the tree in one pass, so switching views costs O(nodes) and no stack is sent twice.

Several server processes with an event loop (workers) add a "Workers" section: a table of
their figures and a switch that narrows the culprits table and the event-loop timeline to
one worker. Per worker the payload carries only what that needs (its culprits as indexes
into the merged list with its own figures, its episodes as indexes, its timeline bins); the
flamegraph stays merged. A single process has no such section and an empty `workers`.
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
from asgiprof.analyze.frames import file_kind, short_name
from asgiprof.analyze.result import (
    ROUTE_VIEW_PREFIX,
    VIEW_ALL,
    VIEW_BLOCKING,
    VIEW_LOOP,
    VIEW_THREADPOOL,
    Analysis,
    Culprit,
    Episode,
    MetricGrowth,
    ProcessSummary,
    ResourceSeries,
)
from asgiprof.model import Frame, LoadInfo

PAYLOAD_VERSION: Final = 2
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
    context: str  # "endpoint", "middleware", "dependency" or "other"
    context_name: str | None  # the middleware layer or dependency function
    calls: list[str]  # what the culprit line called, outermost first


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


class ThreadpoolPayload(TypedDict):
    limit: int  # worker threads per process
    start_s: float
    width_s: float
    mean_busy: list[float]  # busy workers per bin, time-averaged (summed over processes)
    max_busy: list[int]  # most busy at once in one process


class ResourceMetricPayload(TypedDict):
    id: str  # "rss_bytes", "fds", "threads", "connections" or "port:<n>"
    label: str
    unit: str  # "MiB" for RSS (values converted), "" for counts
    values: list[float | None]  # one per poll, null where unreadable
    leak: bool
    fit: list[float]  # [t0, v0, t1, v1]: the growth line after the warm-up; [] without one
    slope_per_min: float  # in `unit`
    r2: float


class ResourceProcessPayload(TypedDict):
    pid: int
    t_s: list[float]
    metrics: list[ResourceMetricPayload]


class ResourcesPayload(TypedDict):
    warmup_s: float
    end_s: float  # the charts' common time axis runs from 0 to here
    processes: list[ResourceProcessPayload]


class WorkerCulpritPayload(TypedDict):
    culprit: int  # index into culprits
    blocked_ms: float  # this worker's share of the culprit's figures
    episodes: int
    max_ms: float


class WorkerTimelinePayload(TypedDict):
    # On the bins of `timeline` (same start and width).
    idle_ms: list[float]
    busy_ms: list[float]
    blocked_ms: list[float]


class WorkerPayload(TypedDict):
    pid: int
    label: str  # "PID 1234 (worker 1)"
    busy_ms: float
    blocked_ms: float
    idle_ms: float
    utilization: float
    longest_block_ms: float
    episodes: int
    culprits: list[WorkerCulpritPayload]  # most blocked time in this worker first
    episode_ids: list[int]  # indexes into episodes, ascending
    timeline: WorkerTimelinePayload


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
    threadpool: ThreadpoolPayload
    resources: ResourcesPayload
    workers: list[WorkerPayload]  # empty unless several processes ran an event loop


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
                "context": c.context,
                "context_name": c.context_name,
                "calls": list(c.calls),
            }
        )

    route_names = [r.route for r in analysis.routes]
    route_index = {name: i for i, name in enumerate(route_names)}
    for e in analysis.episodes:
        if e.route is not None and e.route not in route_index:
            route_index[e.route] = len(route_names)
            route_names.append(e.route)
    episodes: EpisodesPayload = {"start_s": [], "ms": [], "culprit": [], "route": []}
    ordered_episodes = sorted(analysis.episodes, key=lambda e: (e.start_s, e.pid, e.tid))
    for e in ordered_episodes:
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
        "threadpool": threadpool_payload(analysis),
        "resources": resources_payload(analysis),
        "workers": workers_payload(analysis, ordered_episodes, culprit_index),
    }


def has_workers(analysis: Analysis) -> bool:
    """More than one server process ran an event loop (cheap: no pass over the samples)."""
    return len({pid for pid, _tid in analysis.loop.threads}) > 1


def is_main_process(analysis: Analysis, pid: int) -> bool:
    # The process asgiprof launched or attached to is listed first; with workers it
    # usually runs no loop (uvicorn's supervisor, gunicorn's arbiter) and is not shown.
    # A merged profile has one such process per run.
    sources = analysis.profile.sources
    if sources:
        return any(s.pids[:1] and s.pids[0][0] == pid for s in sources)
    return analysis.profile.target.pids[:1] == (pid,)


def _worker_name(analysis: Analysis, pid: int) -> str:
    """`PID 123`; in a merged profile, `run-a:123` (pids are renumbered when they collide)."""
    if analysis.profile.sources and pid in analysis.sample_labels.workers:
        return analysis.sample_labels.workers[pid]
    return f"PID {pid}"


def workers_payload(
    analysis: Analysis,
    ordered_episodes: Sequence[Episode],
    culprit_index: dict[tuple[str, int], int],
) -> list[WorkerPayload]:
    """Per server process with an event loop, when there are several: figures, culprits,
    episodes and timeline bins; [] for a single process (the page then has no switch)."""
    if not has_workers(analysis):
        return []
    episode_ids: dict[int, list[int]] = {}
    for i, e in enumerate(ordered_episodes):
        episode_ids.setdefault(e.pid, []).append(i)
    workers: list[WorkerPayload] = []
    number = 0  # workers numbered in pid order, the main process aside
    for s in analysis.processes:
        main = is_main_process(analysis, s.pid)
        number += not main
        bins = s.timeline
        workers.append(
            {
                "pid": s.pid,
                "label": f"{_worker_name(analysis, s.pid)} "
                f"({'main process' if main else f'worker {number}'})",
                "busy_ms": _r(s.busy_ms),
                "blocked_ms": _r(s.blocked_ms),
                "idle_ms": _r(s.idle_ms),
                "utilization": _r(s.utilization, 4),
                "longest_block_ms": _r(s.longest_block_ms),
                "episodes": s.episodes,
                "culprits": _worker_culprits(s, culprit_index),
                "episode_ids": episode_ids.get(s.pid, []),
                "timeline": {
                    "idle_ms": [_r(b.idle_ms, 2) for b in bins],
                    "busy_ms": [_r(b.busy_ms, 2) for b in bins],
                    "blocked_ms": [_r(b.blocked_ms, 2) for b in bins],
                },
            }
        )
    return workers


def _worker_culprits(
    summary: ProcessSummary, culprit_index: dict[tuple[str, int], int]
) -> list[WorkerCulpritPayload]:
    return [
        {
            "culprit": culprit_index[(c.file, c.line)],
            "blocked_ms": _r(c.blocked_ms),
            "episodes": c.episodes,
            "max_ms": _r(c.max_ms),
        }
        for c in summary.culprits
        if (c.file, c.line) in culprit_index
    ]


def threadpool_payload(analysis: Analysis) -> ThreadpoolPayload:
    """Busy workers per bin of the event-loop timeline; no bins without worker threads (the
    page then has no threadpool section)."""
    t = analysis.threadpool
    bins = t.timeline if t.workers_seen else ()
    return {
        "limit": t.limit,
        "start_s": _r(bins[0].start_s, 4) if bins else 0.0,
        "width_s": _r(bins[0].width_s, 6) if bins else 0.0,
        # A bin's average cannot exceed its peak: clamp, so that one overfilled bin (a
        # float edge when busy time is spread over bins) cannot flatten the whole chart.
        "mean_busy": [_r(min(b.mean_busy, float(b.max_busy)), 2) for b in bins],
        "max_busy": [b.max_busy for b in bins],
    }


MIB: Final = 1024 * 1024

# Resource metrics in chart order: (id in the series, label, unit).
RESOURCE_METRICS: Final = (
    ("rss_bytes", "RSS", "MiB"),
    ("fds", "open files", ""),
    ("threads", "threads", ""),
    ("connections", "connections", ""),
)


def _fit(
    times: Sequence[float], values: Sequence[float | None], warmup_s: float, g: MetricGrowth
) -> list[float]:
    """The growth line's ends: from the first readable poll after the warm-up, over
    `g.duration_s` (how the analysis fitted it)."""
    if g.points < 2 or g.duration_s <= 0 or not times:
        return []
    after = times[0] + warmup_s if g.from_s is None else g.from_s
    t0 = next((t for t, v in zip(times, values, strict=True) if t >= after and v is not None), None)
    if t0 is None:
        return []
    return [_r(t0), g.start_value, _r(t0 + g.duration_s), g.end_value]


def _metric_payload(
    metric_id: str,
    label: str,
    unit: str,
    times: Sequence[float],
    raw: Sequence[int],
    growth: MetricGrowth | None,
    warmup_s: float,
) -> ResourceMetricPayload:
    scale = MIB if unit == "MiB" else 1
    digits = 2 if unit == "MiB" else 3
    values: list[float | None] = [None if v < 0 else _r(v / scale, digits) for v in raw]
    fit: list[float] = []
    slope = r2 = 0.0
    if growth is not None:
        fit = _fit(times, values, warmup_s, growth)
        if fit:
            fit[1], fit[3] = _r(fit[1] / scale, digits), _r(fit[3] / scale, digits)
        slope, r2 = _r(growth.slope_per_min / scale, digits), _r(growth.r2, 3)
    return {
        "id": metric_id,
        "label": label,
        "unit": unit,
        "values": values,
        "leak": bool(growth is not None and growth.leak),
        "fit": fit,
        "slope_per_min": slope,
        "r2": r2,
    }


def _port_series(proc: ResourceSeries, counts: Sequence[int]) -> list[int] | None:
    """A remote port's counts on the process's poll times: one per poll, or one per poll
    whose connections could be read (how the connection log records them)."""
    if len(counts) == len(proc.t_s):
        return list(counts)
    readable = [i for i, n in enumerate(proc.connections) if n >= 0]
    if len(counts) != len(readable):
        return None  # cannot place them on the time axis
    out = [-1] * len(proc.t_s)
    for i, n in zip(readable, counts, strict=True):
        out[i] = n
    return out


def resources_payload(analysis: Analysis) -> ResourcesPayload:
    """Per process with at least two polls: every metric with a readable poll."""
    r = analysis.resources
    processes: list[ResourceProcessPayload] = []
    end_s = analysis.profile.sampling.duration_s
    for proc in r.processes:
        if len(proc.t_s) < 2:
            continue
        times = [_r(t) for t in proc.t_s]
        end_s = max(end_s, times[-1])
        growth = {g.metric: g for g in proc.growth}
        metrics: list[ResourceMetricPayload] = []
        for metric_id, label, unit in RESOURCE_METRICS:
            raw: Sequence[int] = getattr(proc, metric_id)
            if len(raw) == len(times) and any(v >= 0 for v in raw):
                metrics.append(
                    _metric_payload(
                        metric_id, label, unit, times, raw, growth.get(metric_id), r.warmup_s
                    )
                )
        for port, counts in proc.remote_ports:
            series = _port_series(proc, counts)
            if series is not None:
                metric_id = f"port:{port}"
                metrics.append(
                    _metric_payload(
                        metric_id,
                        f"connections to port {port}",
                        "",
                        times,
                        series,
                        growth.get(metric_id),
                        r.warmup_s,
                    )
                )
        processes.append({"pid": proc.pid, "t_s": times, "metrics": metrics})
    return {"warmup_s": r.warmup_s, "end_s": _r(end_s), "processes": processes}


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


def _split_call(call: str) -> Frame:
    """`function (file:line)` back into a Frame (the text `short_name` writes). Split at the
    first " (": qualified names hold no spaces, paths may."""
    head, sep, tail = call.partition(" (")
    if not sep or not tail.endswith(")"):
        return Frame(call, "", 0)
    file, _, line = tail[:-1].rpartition(":")
    return Frame(head, file, int(line) if line.isdigit() else 0)


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
                "where": f"{f.file}:{f.line}" if f.file else "",
                "short": f"{short_path(f.file, 2)}:{f.line}" if f.file else "",
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


def culprit_rows(analysis: Analysis) -> list[dict[str, Any]]:
    return [
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
            "kind_reason": c.kind_reason,
            "block_of": c.block_of,
            "blocked_ms": c.blocked_ms,
            "episodes": c.episodes,
            "max_ms": c.max_ms,
            "advice": c.advice,
            "context": c.context,
            "context_name": c.context_name,
            "used_by": _routes_cell(c.routes) if c.context == "dependency" else None,
            "calls": call_rows(analysis, c),
            "calls_summary": " \u2192 ".join(
                _split_call(call).function for call in c.calls[:CALLS_IN_SUMMARY]
            )
            + (" \u2192 \u2026" if len(c.calls) > CALLS_IN_SUMMARY else ""),
        }
        for i, c in enumerate(analysis.culprits)
    ]


def finding_cards(analysis: Analysis, sections: set[str]) -> list[dict[str, Any]]:
    """Warnings first, then the analysis's order; each links to its section when shown."""
    order = {"warning": 0, "info": 1}
    cards = []
    for f in sorted(analysis.findings, key=lambda f: order.get(f.severity, 2)):
        section = FINDING_SECTIONS.get(f.kind)
        cards.append(
            {
                "kind": f.kind,
                "severity": f.severity,
                "title": f.title,
                "detail": f.detail,
                "advice": f.advice,
                "pid": f.pid,
                "section": section if section is not None and section[0] in sections else None,
            }
        )
    return cards


def middleware_rows(analysis: Analysis) -> dict[str, Any] | None:
    """Request time on the loop in request order: the server's own code, every layer
    outermost first, then router and endpoints (and what is left, if anything), so the
    shares add up to 100%. None when no middleware layer had time."""
    m = analysis.middleware
    layers = [layer for layer in m.layers if layer.role == "middleware"]
    if m.request_ms <= 0 or not any(layer.self_ms > 0 for layer in layers):
        return None
    total = m.request_ms
    rows: list[dict[str, Any]] = []

    def add(
        label: str,
        ms: float,
        *,
        role: str,
        origin: str = "library",
        blocked: float = 0.0,
        order: int | None = None,
        where: str = "",
        short: str = "",
    ) -> None:
        # Bars: your middleware, library middleware, and plain for everything else.
        tone = origin if role == "middleware" else "plain"
        rows.append(
            {
                "label": label,
                "role": role,
                "origin": origin,
                "tone": tone,
                "order": order,
                "where": where,
                "short": short,
                "self_ms": ms,
                "blocked_ms": blocked,
                "share": ms / total,
                "blocked_share": blocked / ms if ms > 0 else 0.0,
            }
        )

    add(f"server ({analysis.profile.target.server})", m.server_ms, role="server")
    # Numbered 1, 2, ... as listed (the analysis's order counts from 0).
    for number, layer in enumerate(sorted(m.layers, key=lambda x: x.order), start=1):
        add(
            layer.name,
            layer.self_ms,
            role=layer.role,
            origin=layer.origin,
            blocked=layer.blocked_ms,
            order=number,
            where=f"{layer.function} ({layer.file}:{layer.line})",
            short=f"{short_path(layer.file, 2)}:{layer.line}",
        )
    add("router + endpoints", m.route_ms, role="route")
    rest = total - sum(r["self_ms"] for r in rows)
    if rest > total * 0.001:
        add("other request-path code", rest, role="other")
    return {
        "request_ms": total,
        "layers_ms": m.layers_ms,
        "layers_share": m.layers_ms / total,
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
                "name": dep.name,
                "where": f"{dep.file}:{dep.line}",
                "short": f"{short_path(dep.file, 2)}:{dep.line}",
                "runs_on": dep.runs_on,
                "loop_ms": dep.loop_ms,
                "blocked_ms": dep.blocked_ms,
                "threadpool_ms": dep.threadpool_ms,
                "routes": _routes_cell(dep.routes),
                "shares": list(dep.shares) if len(dep.shares) == len(dep.routes) else [],
                "split_by": dep.split_by,
            }
            for dep in d.dependencies
        ],
    }


def threadpool_facts(analysis: Analysis) -> dict[str, Any] | None:
    t = analysis.threadpool
    if not t.workers_seen:
        return None
    return {
        "limit": t.limit,
        "workers_seen": t.workers_seen,
        "max_busy": t.max_busy,
        "mean_busy": t.mean_busy,
        "busy_ms": t.busy_ms,
        "at_limit_ms": t.at_limit_ms,
        "at_limit_share": t.at_limit_share,
        "processes": [
            {
                "pid": p.pid,
                "workers_seen": p.workers_seen,
                "max_busy": p.max_busy,
                "at_limit_ms": p.at_limit_ms,
            }
            for p in t.processes
        ],
        "holders": [
            {
                "name": h.name,
                "kind": h.kind,
                "busy_ms": h.busy_ms,
                "share": h.share,
                "at_limit_ms": h.at_limit_ms,
            }
            for h in t.holders
        ],
    }


def worker_rows(analysis: Analysis, payload: Payload) -> dict[str, Any] | None:
    """The Workers table and switch; None for a single process (no section, no switch)."""
    workers = payload["workers"]
    if not workers:
        return None
    culprits = payload["culprits"]
    server = analysis.profile.target.server
    hottest = max(workers, key=lambda w: (w["blocked_ms"], -w["pid"]))
    rows = []
    for w in workers:
        top = culprits[w["culprits"][0]["culprit"]] if w["culprits"] else None
        rows.append(
            {
                "pid": w["pid"],
                "name": _worker_name(analysis, w["pid"]),
                "label": w["label"],
                "role": "main process"
                if is_main_process(analysis, w["pid"])
                else f"{server} worker",
                "utilization": w["utilization"],
                "blocked_ms": w["blocked_ms"],
                "episodes": w["episodes"],
                "longest_block_ms": w["longest_block_ms"],
                # A worker that held its loop longest is the one to look at first.
                "hot": w is hottest and w["blocked_ms"] > 0,
                "top": None
                if top is None
                else {
                    "index": w["culprits"][0]["culprit"],
                    "function": top["function"],
                    "where": f"{top['file']}:{top['line']}",
                    "short": f"{short_path(top['file'], 2)}:{top['line']}",
                    "blocked_ms": w["culprits"][0]["blocked_ms"],
                },
            }
        )
    loop = analysis.loop
    return {
        "rows": rows,
        "all": {
            "utilization": loop.utilization,
            "blocked_ms": loop.blocked_ms,
            "episodes": loop.episodes,
            "longest_block_ms": loop.longest_block_ms,
        },
    }


def fleet_rows(analysis: Analysis) -> dict[str, Any] | None:
    """The runs of a merged profile and each culprit's share per run (None for one run)."""
    fleet = analysis.fleet
    if not fleet.sources:
        return None
    return {
        "sources": [
            {
                "name": s.name,
                "out_dir": s.out_dir,
                "short_dir": short_path(s.out_dir, 2),
                "pids": ", ".join(str(original) for _, original in s.pids),
                "samples": s.samples,
                "busy_ms": s.busy_ms,
                "blocked_ms": s.blocked_ms,
                "episodes": s.episodes,
            }
            for s in fleet.sources
        ],
        "culprits": [
            {
                "rank": c.rank,
                "function": c.function,
                "where": f"{c.file}:{c.line}",
                "short": f"{short_path(c.file)}:{c.line}",
                "blocked_ms": c.blocked_ms,
                "sources": fleet.culprit_sources.get((c.file, c.line), ()),
            }
            for c in analysis.culprits
        ],
    }


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
    payload = report_payload(analysis)
    middleware = middleware_rows(analysis)
    dependencies = dependency_rows(analysis)
    threadpool = threadpool_facts(analysis)
    resources = payload["resources"]["processes"]
    shown = {
        name
        for name, present in (
            ("middleware", middleware),
            ("dependencies", dependencies),
            ("threadpool", threadpool),
            ("resources", resources),
        )
        if present
    }
    findings = finding_cards(analysis, shown)
    return {
        "version": __version__,
        "title": f"asgiprof report: {target.server}",
        "command": shlex.join(target.command),
        "server": target.server,
        "pids": ", ".join(
            _worker_name(analysis, p) if profile.sources else str(p) for p in target.pids
        ),
        "mode": target.mode,
        "started": started,
        "exit_status": target.exit_status,
        "load": _load_facts(profile.load),
        "threads": role_counts,
        "cards": header_cards(analysis),
        "notes": list(analysis.notes),
        "traffic": analysis.traffic.warning,
        "traffic_level": analysis.traffic.level,
        "findings": findings,
        "culprits": culprit_rows(analysis),
        "workers": worker_rows(analysis, payload),
        "fleet": fleet_rows(analysis),
        "middleware": middleware,
        "dependencies": dependencies,
        "threadpool": threadpool,
        "resources": {"warmup_s": analysis.resources.warmup_s} if resources else None,
        "routes": [
            {
                "route": r.route,
                "samples": r.samples,
                "loop_ms": r.loop_ms,
                "blocked_ms": r.blocked_ms,
                "threadpool_ms": r.threadpool_ms,
                "requests": r.requests,
                "dependency_ms": r.dependency_ms,
                "overhead_ms": r.overhead_ms,
                "share": (r.loop_ms + r.threadpool_ms) / route_total if route_total > 0 else 0.0,
                "view": ROUTE_VIEW_PREFIX + r.route
                if ROUTE_VIEW_PREFIX + r.route in view_ids
                else None,
            }
            for r in analysis.routes
        ],
        "routes_evidence": analysis.routes_evidence,
        "request_overhead_ms": analysis.request_overhead_ms,
        "finding_min_samples": analysis.params.finding_min_samples,
        "loop_episodes": analysis.loop.episodes,
        "loop_blocked_ms": analysis.loop.blocked_ms,
        "block_threshold_ms": analysis.params.block_threshold_ms,
        "culprit_rows": CULPRIT_ROWS,
        "payload": payload,
        "payload_id": PAYLOAD_ELEMENT_ID,
        "script": Markup(script.text),
        "style": Markup(style.text),
        "csp": content_security_policy(script, style),
    }


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
