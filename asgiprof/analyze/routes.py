"""Attribute stacks to routes, and sum time per route over the loop and the threadpool.

A stack belongs to the route whose endpoint function (file + line span from the app's
route table) appears on it. Without a table, the first user-code frame's function name
stands in for the route, and the analysis says so in its notes.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field

from asgiprof.analyze.frames import is_user
from asgiprof.model import Frame, Profile, Route, RouteTable


class RouteIndex:
    """Endpoint spans by file, for `find(file, line)` in O(log n)."""

    def __init__(self, table: RouteTable) -> None:
        spans: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
        for route in table.routes:
            spans[route.file].append((route.first_line, route.last_line, route.name))
        self._starts: dict[str, list[int]] = {}
        self._spans: dict[str, list[tuple[int, int, list[str]]]] = {}
        for file, items in spans.items():
            items.sort()
            merged: list[tuple[int, int, list[str]]] = []
            for first, last, name in items:
                # One endpoint can serve several routes (GET and HEAD, two paths).
                if merged and merged[-1][0] == first and merged[-1][1] == last:
                    merged[-1][2].append(name)
                else:
                    merged.append((first, last, [name]))
            self._spans[file] = merged
            self._starts[file] = [m[0] for m in merged]

    def find(self, file: str, line: int) -> str | None:
        starts = self._starts.get(file)
        if not starts:
            return None
        i = bisect.bisect_right(starts, line) - 1
        spans = self._spans[file]
        # Endpoints rarely nest; a few steps back covers a closure defined inside one.
        for j in range(i, max(i - 8, -1), -1):
            first, last, names = spans[j]
            if first <= line <= last:
                return " | ".join(sorted(set(names)))
        return None


@dataclass(slots=True)
class RouteResolver:
    """Route name per stack id, cached."""

    profile: Profile
    index: RouteIndex
    fallback: bool  # no route table: use endpoint function names
    _cache: dict[int, str | None] = field(default_factory=dict)
    _frame_cache: dict[int, str | None] = field(default_factory=dict)

    @classmethod
    def for_profile(cls, profile: Profile) -> RouteResolver:
        table = profile.routes
        return cls(profile, RouteIndex(table), fallback=not table.routes)

    def route_of(self, stack_id: int) -> str | None:
        if stack_id < 0:
            return None
        if stack_id in self._cache:
            return self._cache[stack_id]
        found: str | None = None
        for fid in self.profile.stacks[stack_id]:
            found = self._frame_route(fid)
            if found is not None:
                break
        self._cache[stack_id] = found
        return found

    def _frame_route(self, fid: int) -> str | None:
        if fid in self._frame_cache:
            return self._frame_cache[fid]
        frame: Frame = self.profile.frames[fid]
        name = self.index.find(frame.file, frame.line)
        if name is None and self.fallback and is_user(frame) and frame.function != "<module>":
            name = frame.function
        self._frame_cache[fid] = name
        return name


def route_names(routes: tuple[Route, ...]) -> list[str]:
    return sorted({r.name for r in routes})
