"""Time spent in FastAPI dependencies (`Depends`), per dependency function.

On the event loop an `async def` dependency runs right above FastAPI's `solve_dependencies`
(through `_solve_generator` and contextlib for `yield` dependencies); whatever else runs in
`fastapi/dependencies/utils.py` is FastAPI's own solving (parameter parsing, validation).
A `def` dependency runs in an anyio worker thread, whose stack starts at the worker: there it
is recognised by name (one the routes declare, or one seen on the loop) or as the generator a
`contextmanager_in_threadpool` entered. No stack shows the route while its dependencies are
solved, so which routes use a dependency comes from the route table: the routes whose
dependency tree (read from FastAPI's own `route.dependant` by the route probe) holds the
frame's file and line, as endpoints are matched. Routes without a tree (other frameworks, old
output directories) fall back to their endpoints' source: `Depends(name)` / `Security(name)`
in the decorator or signature.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from asgiprof.analyze.advice import function_awaits
from asgiprof.analyze.episodes import LoopThreadRuns
from asgiprof.analyze.frames import SourceReader, bare_function, file_kind
from asgiprof.analyze.loop import STATE_BLOCKED
from asgiprof.analyze.middleware import class_of
from asgiprof.analyze.near import DEF
from asgiprof.analyze.result import (
    AnalysisParams,
    Culprit,
    DependencyStats,
    DependencySummary,
    Finding,
)
from asgiprof.model import Frame, Profile, Route, ThreadTimeline

_UTILS: Final = "fastapi/dependencies/utils.py"
_SOLVE: Final = frozenset({"solve_dependencies", "_solve_generator"})
# Between `solve_dependencies` and the dependency function: context managers of `yield`
# dependencies, the hop to the threadpool, anyio and asyncio plumbing.
_PLUMBING: Final = re.compile(
    r"[/\\](?:contextlib\.py|asyncio[/\\][^/\\]+\.py|anyio[/\\].*"
    r"|starlette[/\\]concurrency\.py|fastapi[/\\]concurrency\.py|functools\.py)$"
)
_CONTEXTLIB: Final = re.compile(r"[/\\]contextlib\.py$")
_DEPENDS: Final = re.compile(r"\b(?:Depends|Security)\(\s*(?:dependency\s*=\s*)?([A-Za-z_][\w.]*)")
_MAX_SIGNATURE_LINES: Final = 80

SOLVING: Final = "<solving>"


def _norm(file: str) -> str:
    return file.replace("\\", "/")


def dependency_name(function: str) -> str:
    """`get_user` -> `get_user`; `Checker.__call__` -> `Checker` (a class-based dependency)."""
    if bare_function(function) == "__call__":
        return class_of(function) or function
    return bare_function(function)


def declared_dependencies(
    routes: Iterable[Route], read_line: SourceReader
) -> dict[str, tuple[str, ...]]:
    """Dependency name -> routes naming it in `Depends(...)`, read from the decorator and
    signature of each endpoint without a dependency tree (aliases like `CurrentUser =
    Annotated[..., Depends(f)]` and router-level dependencies are not followed there)."""
    users: dict[str, set[str]] = defaultdict(set)
    for route in routes:
        if route.dependencies or not route.file or route.first_line <= 0:
            continue
        seen_def = False
        last = min(route.last_line or route.first_line, route.first_line + _MAX_SIGNATURE_LINES)
        for number in range(route.first_line, last + 1):
            text = read_line(route.file, number)
            if text is None:
                break
            for match in _DEPENDS.finditer(text):
                users[match.group(1).rsplit(".", 1)[-1]].add(route.name)
            if DEF.match(text):
                seen_def = True
            if seen_def and text.split("#", 1)[0].rstrip().endswith(":"):
                break  # the end of the signature
    return {name: tuple(sorted(r)) for name, r in users.items()}


class DependencyTrees:
    """Which routes' dependency trees hold a file:line (the innermost span answers)."""

    __slots__ = ("_files",)

    def __init__(self, routes: Iterable[Route]) -> None:
        users: dict[tuple[str, int, int], set[str]] = defaultdict(set)
        for route in routes:
            for dep in route.dependencies:
                if dep.file and 0 < dep.first_line <= dep.last_line:
                    users[(os.path.normpath(dep.file), dep.first_line, dep.last_line)].add(
                        route.name
                    )
        files: dict[str, list[tuple[int, int, tuple[str, ...]]]] = defaultdict(list)
        for (file, first, last), names in users.items():
            files[file].append((first, last, tuple(sorted(names))))
        for spans in files.values():
            spans.sort(key=lambda span: (span[1] - span[0], span[0]))  # innermost first
        self._files = dict(files)

    def routes_at(self, file: str, line: int) -> tuple[str, ...] | None:
        """The routes using the dependency whose span holds file:line; None outside all."""
        spans = self._files.get(file)
        if spans is None:
            # py-spy shows co_filename as the target made it: "/app/./main.py" on 3.9.
            spans = self._files.get(os.path.normpath(file))
            if spans is None:
                return None
        return next((routes for first, last, routes in spans if first <= line <= last), None)


def _may_be_dependency(frame: Frame) -> bool:
    """Dependencies are the app's functions, or a library's callable classes (FastAPI's
    security schemes: `OAuth2PasswordBearer.__call__`); FastAPI also calls library code
    while solving (`Request.query_params`), which is solving, not a dependency."""
    kind = file_kind(frame.file)
    if kind == "user":
        return True
    return kind == "library" and bare_function(frame.function) == "__call__"


def _never(frame: Frame) -> bool:
    return False


def loop_dependency_index(
    stack: list[Frame],
    known: Mapping[str, object],
    in_tree: Callable[[Frame], bool] = _never,
) -> int | None:
    """Position of the dependency function FastAPI is running on this loop stack; None when
    no dependency runs (also when FastAPI itself is solving: see `is_solving`). `known`
    names and `in_tree` frames (in a route's dependency tree) are dependencies wherever
    their code lives."""
    solve = -1
    for i, frame in enumerate(stack):
        if bare_function(frame.function) in _SOLVE and _norm(frame.file).endswith(_UTILS):
            solve = i
    if solve < 0:
        return None
    for j in range(solve + 1, len(stack)):
        frame = stack[j]
        if _CONTEXTLIB.search(frame.file):
            continue  # entering a `yield` dependency
        if _norm(frame.file).endswith(_UTILS):
            return None
        # FastAPI's own parsing and validation, or the hop to the threadpool (anyio,
        # run_in_threadpool): no dependency runs on this thread.
        if _may_be_dependency(frame) or dependency_name(frame.function) in known:
            return j
        return j if in_tree(frame) else None
    return None


def is_solving(stack: list[Frame]) -> bool:
    return any(
        bare_function(f.function) in _SOLVE and _norm(f.file).endswith(_UTILS) for f in stack
    )


def worker_dependency_index(
    stack: list[Frame],
    entry: int,
    known: Mapping[str, object],
    in_tree: Callable[[Frame], bool] = _never,
) -> int | None:
    """Position of a `def` dependency on a worker-thread stack (the worker entry frame at
    `entry`), or None when the worker runs something else."""
    via_contextlib = False
    for j in range(entry + 1, len(stack)):
        frame = stack[j]
        if _PLUMBING.search(frame.file):
            via_contextlib = via_contextlib or bool(_CONTEXTLIB.search(frame.file))
            continue
        if (via_contextlib or dependency_name(frame.function) in known or in_tree(frame)) and (
            file_kind(frame.file) != "stdlib"
        ):
            return j
        return None
    return None


@dataclass(slots=True)
class _Acc:
    file: str
    lines: Counter[int] = field(default_factory=Counter)
    routes: set[str] = field(default_factory=set)
    loop_ms: float = 0.0
    blocked_ms: float = 0.0
    threadpool_ms: float = 0.0
    samples: int = 0


@dataclass(slots=True)
class DependencyFrames:
    """Dependency classification per stack id, cached; the routes of a dependency frame."""

    profile: Profile
    # dependency names -> routes naming them in their source (routes without a tree)
    known: dict[str, tuple[str, ...]]
    trees: DependencyTrees = field(init=False)
    _loop: dict[int, int | None] = field(default_factory=dict)
    _solving: dict[int, bool] = field(default_factory=dict)
    _worker: dict[int, int | None] = field(default_factory=dict)
    _routes: dict[Frame, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.trees = DependencyTrees(self.profile.routes.routes)

    def in_tree(self, frame: Frame) -> bool:
        return self.trees.routes_at(frame.file, frame.line) is not None

    def routes_of(self, frame: Frame) -> tuple[str, ...]:
        """Routes using the dependency running in `frame`: those whose tree holds its line,
        and those without a tree whose source names its function."""
        routes = self._routes.get(frame)
        if routes is None:
            in_trees = self.trees.routes_at(frame.file, frame.line) or ()
            by_name = self.known.get(dependency_name(frame.function), ())
            routes = self._routes[frame] = tuple(sorted({*in_trees, *by_name}))
        return routes

    def on_loop(self, sid: int) -> int | None:
        if sid not in self._loop:
            stack = self.profile.stack_frames(sid)
            self._loop[sid] = loop_dependency_index(stack, self.known, self.in_tree)
        return self._loop[sid]

    def routes_on_loop(self, sid: int) -> tuple[str, ...]:
        """The routes using the dependency a loop stack runs in (none outside one)."""
        j = self.on_loop(sid)
        return () if j is None else self.routes_of(self.profile.frames[self.profile.stacks[sid][j]])

    def solving(self, sid: int) -> bool:
        if sid not in self._solving:
            self._solving[sid] = is_solving(self.profile.stack_frames(sid))
        return self._solving[sid]

    def in_worker(self, sid: int, entry: int) -> int | None:
        if sid not in self._worker:
            stack = self.profile.stack_frames(sid)
            self._worker[sid] = worker_dependency_index(stack, entry, self.known, self.in_tree)
        return self._worker[sid]

    def learn_loop_names(self, stack_ids: Iterable[int]) -> None:
        """Async dependencies seen on the loop are known by name in worker threads too."""
        for sid in stack_ids:
            j = self.on_loop(sid)
            if j is not None:
                name = dependency_name(self.profile.frames[self.profile.stacks[sid][j]].function)
                self.known.setdefault(name, ())


def dependency_summary(
    deps: DependencyFrames,
    loop_runs: list[LoopThreadRuns],
    workers: list[ThreadTimeline],
    entries: Mapping[int, int],
) -> DependencySummary:
    """Loop and worker time per dependency function. `entries` gives the worker entry
    position of every busy worker stack (idle ones are absent)."""
    tally = _Tally(deps)
    tally.add_loop(loop_runs)
    tally.add_workers(workers, entries)
    return DependencySummary(solving_ms=tally.solving_ms, dependencies=tally.stats())


@dataclass(slots=True)
class _Tally:
    """Time per dependency function (keyed by function and file), and the loop time spent
    solving dependencies outside any of them."""

    deps: DependencyFrames
    acc: dict[tuple[str, str], _Acc] = field(default_factory=dict)
    solving_ms: float = 0.0

    def _add(self, sid: int, j: int, n: int) -> _Acc:
        """`n` samples of the dependency frame at position `j` of stack `sid`."""
        profile = self.deps.profile
        frame = profile.frames[profile.stacks[sid][j]]
        a = self.acc.get((frame.function, frame.file))
        if a is None:
            a = self.acc[(frame.function, frame.file)] = _Acc(frame.file)
        a.lines[frame.line] += n
        a.routes.update(self.deps.routes_of(frame))
        a.samples += n
        return a

    def add_loop(self, loop_runs: list[LoopThreadRuns]) -> None:
        for lr in loop_runs:
            for dur, sid, n, label in lr.busy_runs():
                ms = dur * 1000.0
                j = self.deps.on_loop(sid)
                if j is None:
                    if self.deps.solving(sid):
                        self.solving_ms += ms
                    continue
                a = self._add(sid, j, n)
                a.loop_ms += ms
                if label == STATE_BLOCKED:
                    a.blocked_ms += ms

    def add_workers(self, workers: list[ThreadTimeline], entries: Mapping[int, int]) -> None:
        in_worker = {
            sid: j for sid, e in entries.items() if (j := self.deps.in_worker(sid, e)) is not None
        }
        if not in_worker:
            return
        for tl in workers:
            for sid, dur, n in zip(tl.stack, tl.duration_s, tl.samples, strict=True):
                j = in_worker.get(sid)
                if j is not None:
                    self._add(sid, j, n).threadpool_ms += dur * 1000.0

    def stats(self) -> tuple[DependencyStats, ...]:
        """Every dependency, the most time first."""
        stats = [
            DependencyStats(
                name=function,
                file=a.file,
                line=a.lines.most_common(1)[0][0] if a.lines else 0,
                runs_on="both"
                if a.loop_ms and a.threadpool_ms
                else ("threadpool" if a.threadpool_ms else "loop"),
                loop_ms=a.loop_ms,
                blocked_ms=a.blocked_ms,
                threadpool_ms=a.threadpool_ms,
                samples=a.samples,
                routes=tuple(sorted(a.routes)),
            )
            for (function, _file), a in self.acc.items()
        ]
        stats.sort(key=lambda d: (-(d.loop_ms + d.threadpool_ms), d.name, d.file))
        return tuple(stats)


def dependency_findings(
    summary: DependencySummary,
    culprits: Sequence[Culprit],
    params: AnalysisParams,
    read_line: Callable[[str, int], str | None] | None = None,
) -> list[Finding]:
    """A finding per dependency that blocked the event loop, only with evidence: at least
    a block threshold of blocked time, `finding_min_samples` samples, and a ranked culprit
    line under it (time in a dependency that only awaits is not blocking, whatever
    episodes it shared). With `read_line`, a dependency that awaits is not told to become
    a plain `def`."""
    findings: list[Finding] = []
    lines: dict[str, list[Culprit]] = defaultdict(list)
    for c in culprits:
        if c.context == "dependency" and c.context_name is not None:
            lines[c.context_name].append(c)
    for dep in summary.dependencies:
        under = lines.get(dep.name)
        if (
            not under
            or dep.blocked_ms < params.block_threshold_ms
            or dep.blocked_ms <= 0
            or dep.samples < params.finding_min_samples
        ):
            continue
        used_by = ", ".join(dep.routes) if dep.routes else "the routes that depend on it"
        where = ", ".join(f"{c.file}:{c.line} (culprit #{c.rank})" for c in under[:3])
        findings.append(
            Finding(
                kind="blocking-dependency",
                severity="warning",
                title=f"dependency {dep.name} blocks the event loop",
                detail=(
                    f"the async dependency {dep.name} ({dep.file}:{dep.line}) held the event "
                    f"loop {dep.blocked_ms:.0f} ms in blocking episodes ({dep.loop_ms:.0f} ms on "
                    f"the loop in all, {dep.samples} samples) at {where}, in every request "
                    f"of {used_by}"
                ),
                advice=(
                    "FastAPI awaits `async def` dependencies on the event loop: make its "
                    "blocking call async (an async client or driver), or run it with "
                    "`await anyio.to_thread.run_sync(...)` (the dependency awaits, so it "
                    "cannot become a plain `def`)."
                    if read_line is not None and function_awaits(read_line, dep.file, dep.line)
                    else "FastAPI awaits `async def` dependencies on the event loop: make its "
                    "blocking call async (an async client or driver), or declare the "
                    "dependency with plain `def` so FastAPI runs it in the threadpool."
                ),
                subject=dep.name,
            )
        )
    return findings
