"""The payload the page's JavaScript reads: `report_payload(analysis)`, plain JSON-ready
data, deterministic, decoded and tested in Python (shape: payload_types.py).

The flamegraph part is a call tree shared by every view (calltree.py) plus per view the
sparse `(node, ms)` pairs where stacks end. The page sums a view's weights up the tree in
one pass, so switching views costs O(nodes) and no stack is sent twice. Culprits and
worker figures come from the result dataclasses through `document.plain`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, cast

from asgiprof.analyze.frames import file_kind
from asgiprof.analyze.result import (
    ROUTE_VIEW_PREFIX,
    VIEW_ALL,
    VIEW_BLOCKING,
    VIEW_LOOP,
    VIEW_THREADPOOL,
    Analysis,
    Culprit,
    Episode,
)
from asgiprof.model import Profile
from asgiprof.reporters.document import plain
from asgiprof.reporters.document import rounded as _r
from asgiprof.reporters.html.calltree import CallTree, build_call_tree
from asgiprof.reporters.html.charts import resources_payload, threadpool_payload
from asgiprof.reporters.html.payload_types import (
    CulpritPayload,
    EpisodesPayload,
    FramesPayload,
    Payload,
    TimelinePayload,
    ViewPayload,
)
from asgiprof.reporters.html.workers import workers_payload

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

# The culprit's fields the page reads (beside its tree node and highlighted frames).
CULPRIT_FIELDS: Final = (
    *("rank", "function", "file", "line", "code", "route", "routes", "kind"),
    *("blocked_ms", "episodes", "max_ms", "advice", "stack", "context", "context_name"),
    "calls",
)

# Digits of the columns the page draws (episode bars and timeline bins): 0.01 ms is below
# a pixel; times to 0.1 ms.
BIN_DIGITS: Final = 2
TIME_DIGITS: Final = 4
WIDTH_DIGITS: Final = 6


def report_payload(analysis: Analysis) -> Payload:
    """Everything the page's script needs, as plain JSON-ready data (deterministic)."""
    profile = analysis.profile
    views = _ordered_views(analysis)
    tree = build_call_tree(profile.frames, profile.stacks, _stack_ids(analysis, views))
    strings = _Strings()
    frames, at_line = _frames(profile, tree, strings)
    view_payloads = [_view(analysis, tree, view) for view in views]
    culprits = [_culprit(analysis, c, tree, at_line) for c in analysis.culprits]
    culprit_index: dict[tuple[str, int], int] = {}
    for i, c in enumerate(analysis.culprits):
        culprit_index.setdefault((c.file, c.line), i)
    route_names = _route_names(analysis)
    ordered_episodes = sorted(analysis.episodes, key=lambda e: (e.start_s, e.pid, e.tid))
    return {
        "version": PAYLOAD_VERSION,
        "strings": strings.list,
        "frames": frames,
        "nodes": {"parent": tree.parent, "frame": tree.frame},
        "views": view_payloads,
        "default_view": _default_view(view_payloads),
        "culprits": culprits,
        "episodes": _episodes(ordered_episodes, culprit_index, route_names),
        "timeline": _timeline(analysis),
        "route_names": route_names,
        "rate_hz": profile.sampling.rate_hz,
        "threadpool": threadpool_payload(analysis),
        "resources": resources_payload(analysis),
        "workers": workers_payload(analysis, ordered_episodes, culprit_index),
    }


def _ordered_views(analysis: Analysis) -> list[tuple[str, str, str]]:
    """(view id, label, group): main views always, then routes in the routes table order."""
    views = [(vid, label, "main") for vid, label in MAIN_VIEWS]
    route_ids = [vid for vid in analysis.route_views() if analysis.views[vid]]
    views.extend((vid, vid[len(ROUTE_VIEW_PREFIX) :], "route") for vid in route_ids)
    return views


def _stack_ids(analysis: Analysis, views: Sequence[tuple[str, str, str]]) -> set[int]:
    """Stacks the page draws: those with weight in a view, and the culprits' own."""
    stacks = analysis.profile.stacks
    stack_ids: set[int] = set()
    for vid, _, _ in views:
        stack_ids.update(sid for sid, ms in analysis.views.get(vid, {}).items() if ms > 0)
    stack_ids.update(c.stack_id for c in analysis.culprits if 0 <= c.stack_id < len(stacks))
    return stack_ids


class _Strings:
    """Strings sent once, referenced by index in order of first use."""

    def __init__(self) -> None:
        self._index: dict[str, int] = {}

    def __call__(self, s: str) -> int:
        idx = self._index.get(s)
        if idx is None:
            idx = self._index[s] = len(self._index)
        return idx

    @property
    def list(self) -> list[str]:
        return list(self._index)


def _frames(
    profile: Profile, tree: CallTree, intern: _Strings
) -> tuple[FramesPayload, dict[tuple[str, int], list[int]]]:
    """The tree's frames as columns, and file:line -> compact frame indexes."""
    frames: FramesPayload = {"fn": [], "file": [], "line": [], "kind": []}
    at_line: dict[tuple[str, int], list[int]] = {}
    for compact, fid in enumerate(tree.frames):
        f = profile.frames[fid]
        at_line.setdefault((f.file, f.line), []).append(compact)
        frames["fn"].append(intern(f.function))
        frames["file"].append(intern(f.file))
        frames["line"].append(f.line)
        frames["kind"].append(KIND_CODES[file_kind(f.file)])
    return frames, at_line


def _view(analysis: Analysis, tree: CallTree, view: tuple[str, str, str]) -> ViewPayload:
    vid, label, group = view
    weights: dict[int, float] = {}
    for sid, ms in analysis.views.get(vid, {}).items():
        if ms > 0:
            node = tree.stack_node[sid]
            weights[node] = weights.get(node, 0.0) + ms
    nodes = sorted(weights)
    return {
        "id": vid,
        "label": label,
        "group": group,
        "total_ms": _r(analysis.view_total(vid), 3),
        "nodes": nodes,
        "ms": [_r(weights[n], 3) for n in nodes],
    }


def _default_view(views: Sequence[ViewPayload]) -> str:
    totals = {v["id"]: v["total_ms"] for v in views}
    return next(
        (vid for vid in (VIEW_LOOP, VIEW_ALL) if totals.get(vid, 0) > 0),
        next((v["id"] for v in views if v["total_ms"] > 0), VIEW_ALL),
    )


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


def _culprit(
    analysis: Analysis, c: Culprit, tree: CallTree, at_line: dict[tuple[str, int], list[int]]
) -> CulpritPayload:
    node = tree.node_of(_culprit_frame_ids(analysis, c))
    return cast(
        CulpritPayload,
        {
            **plain(c, CULPRIT_FIELDS),
            "node": -1 if node is None else node,
            "frames": at_line.get((c.file, c.line), []),
        },
    )


def _route_names(analysis: Analysis) -> list[str]:
    """Routes in the routes table order, then those only episodes name."""
    route_names = [r.route for r in analysis.routes]
    known = set(route_names)
    for e in analysis.episodes:
        if e.route is not None and e.route not in known:
            known.add(e.route)
            route_names.append(e.route)
    return route_names


def _episodes(
    ordered: Sequence[Episode],
    culprit_index: dict[tuple[str, int], int],
    route_names: Sequence[str],
) -> EpisodesPayload:
    route_index = {name: i for i, name in enumerate(route_names)}
    episodes: EpisodesPayload = {"start_s": [], "ms": [], "culprit": [], "route": []}
    for e in ordered:
        episodes["start_s"].append(_r(e.start_s, TIME_DIGITS))
        episodes["ms"].append(_r(e.duration_ms, BIN_DIGITS))
        episodes["culprit"].append(-1 if e.culprit is None else culprit_index.get(e.culprit, -1))
        episodes["route"].append(-1 if e.route is None else route_index[e.route])
    return episodes


def _timeline(analysis: Analysis) -> TimelinePayload:
    bins = analysis.timeline
    return {
        "start_s": _r(bins[0].start_s, TIME_DIGITS) if bins else 0.0,
        "width_s": _r(bins[0].width_s, WIDTH_DIGITS) if bins else 0.0,
        "idle_ms": [_r(b.idle_ms, BIN_DIGITS) for b in bins],
        "busy_ms": [_r(b.busy_ms, BIN_DIGITS) for b in bins],
        "blocked_ms": [_r(b.blocked_ms, BIN_DIGITS) for b in bins],
    }
