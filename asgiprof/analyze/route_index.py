"""Which route's endpoint holds a frame: the route table (Profile.routes) as an index."""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterable
from dataclasses import dataclass

from asgiprof.model import Route, RouteTable


@dataclass(frozen=True, slots=True)
class _FileSpans:
    """Endpoint line spans of one file, sorted by first line (enclosing spans first)."""

    starts: list[int]
    ends: list[int]
    # index of the nearest earlier span still open when span i starts, or -1
    parents: list[int]
    routes: list[Route]


class RouteIndex:
    """Which route's endpoint holds a given file:line; built once, asked for every frame.

    Spans are grouped by file and searched by bisection; nested spans (a function inside
    an endpoint class) answer with the innermost. When several routes share one endpoint
    function, frames cannot tell them apart: the first declared route answers.
    """

    __slots__ = ("_files",)

    def __init__(self, routes: RouteTable | Iterable[Route]) -> None:
        table = routes.routes if isinstance(routes, RouteTable) else routes
        by_file: dict[str, list[Route]] = {}
        for route in table:
            if route.file and 0 < route.first_line <= route.last_line:
                by_file.setdefault(os.path.normpath(route.file), []).append(route)
        self._files = {file: _spans(file_routes) for file, file_routes in by_file.items()}

    def match(self, file: str, line: int) -> Route | None:
        spans = self._files.get(file)
        if spans is None:
            # py-spy shows co_filename as the target made it: "/app/./main.py" on 3.9.
            spans = self._files.get(os.path.normpath(file))
            if spans is None:
                return None
        i = bisect.bisect_right(spans.starts, line) - 1
        while i >= 0:
            if spans.ends[i] >= line:
                return spans.routes[i]
            i = spans.parents[i]
        return None


def _spans(routes: list[Route]) -> _FileSpans:
    # Stable sort: among identical spans the first declared route stays first and wins.
    ordered = sorted(routes, key=lambda r: (r.first_line, -r.last_line))
    unique: list[Route] = []
    for route in ordered:
        if unique and (unique[-1].first_line, unique[-1].last_line) == (
            route.first_line,
            route.last_line,
        ):
            continue
        unique.append(route)
    parents: list[int] = []
    open_spans: list[int] = []  # indices of spans that may still enclose later ones
    for i, route in enumerate(unique):
        while open_spans and unique[open_spans[-1]].last_line < route.first_line:
            open_spans.pop()
        parents.append(open_spans[-1] if open_spans else -1)
        open_spans.append(i)
    return _FileSpans(
        starts=[r.first_line for r in unique],
        ends=[r.last_line for r in unique],
        parents=parents,
        routes=unique,
    )
