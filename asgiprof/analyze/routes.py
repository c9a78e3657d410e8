"""Attribute stacks to routes, and sum time per route over the loop and the threadpool.

A stack belongs to the route whose endpoint function (file + line span from the app's
route table) appears on it, or, when none does, to the route whose endpoint spawned the
task it runs or added the background task it runs (analyze/spawned.py). Without a table,
the first user-code frame's function name stands in for the route, and the analysis says
so in its notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asgiprof.analyze.frames import SourceReader, is_user
from asgiprof.analyze.loop import LoopClassifier
from asgiprof.analyze.route_index import RouteIndex
from asgiprof.analyze.spawned import SpawnedTasks
from asgiprof.model import Frame, Profile, Route


@dataclass(slots=True)
class RouteResolver:
    """Route name per stack id, cached."""

    profile: Profile
    index: RouteIndex
    fallback: bool  # no route table: use endpoint function names
    spawned: SpawnedTasks | None = None  # tasks endpoints spawn (needs their source) ...
    classifier: LoopClassifier | None = None  # ... and the loop's callback on a stack
    _cache: dict[int, str | None] = field(default_factory=dict)
    _frame_cache: dict[int, str | None] = field(default_factory=dict)

    @classmethod
    def for_profile(
        cls,
        profile: Profile,
        read_line: SourceReader | None = None,
        classifier: LoopClassifier | None = None,
    ) -> RouteResolver:
        """With the source and the loop classifier, tasks endpoints spawn have routes too."""
        table = profile.routes
        spawned = SpawnedTasks(table.routes, read_line) if read_line is not None else None
        return cls(profile, RouteIndex(table), not table.routes, spawned, classifier)

    def route_of(self, stack_id: int) -> str | None:
        if stack_id < 0:
            return None
        if stack_id in self._cache:
            return self._cache[stack_id]
        found: str | None = None
        stack = self.profile.stacks[stack_id]
        for fid in stack:
            found = self._frame_route(fid)
            if found is not None:
                break
        if found is None and self.spawned is not None and self.classifier is not None:
            callback = self.classifier.classify(stack_id).callback
            if callback >= 0:
                found = self.spawned.route_of(self.profile.frames[callback])
        if found is None and self.spawned is not None:
            found = self.spawned.background_route(self.profile.stack_frames(stack_id))
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
