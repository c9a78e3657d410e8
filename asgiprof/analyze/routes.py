"""Attribute stacks to routes, and sum time per route over the loop and the threadpool.

A stack belongs to the route whose endpoint function (file + line span from the app's
route table) appears on it. Without a table, the first user-code frame's function name
stands in for the route, and the analysis says so in its notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asgiprof.analyze.frames import is_user
from asgiprof.analyze.route_index import RouteIndex
from asgiprof.model import Frame, Profile, Route


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
        # The module's own code at an endpoint's decorator line is the app being imported
        # (a worker starting), not a request of that route.
        if frame.function == "<module>":
            self._frame_cache[fid] = None
            return None
        route = self.index.match(frame.file, frame.line)
        name = route.name if route is not None else None
        if name is None and self.fallback and is_user(frame):
            name = frame.function
        self._frame_cache[fid] = name
        return name


def route_names(routes: tuple[Route, ...]) -> list[str]:
    return sorted({r.name for r in routes})
