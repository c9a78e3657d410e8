"""Rank culprits: the user-code lines that blocking episodes were spent in.

Each culprit says where on the request path its line runs (endpoint, middleware layer or
dependency, see `CulpritContexts`), what library calls it made, and the fix from the advice
catalogue (the line, the library frames it called, and its function's lines above it).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Set
from dataclasses import dataclass, replace
from typing import Final

from asgiprof.analyze.advice import (
    GENERIC_DB,
    Advice,
    advice_text,
    find_advice,
    function_awaits,
)
from asgiprof.analyze.dependencies import DependencyFrames
from asgiprof.analyze.frames import SourceReader, short_name
from asgiprof.analyze.middleware import OWNER_ROUTE, OWNER_SERVER, RequestPaths
from asgiprof.analyze.near import Definitions, lines_above
from asgiprof.analyze.result import AnalysisParams, Culprit, CulpritContext, Episode, Kind
from asgiprof.model import Frame, Profile


@dataclass(frozen=True, slots=True)
class CulpritContexts:
    """Where a culprit line runs: in a dependency (and every route whose dependency tree
    holds it, see `DependencyFrames.routes_of`), in a middleware layer, in a route's
    endpoint, or elsewhere."""

    paths: RequestPaths | None = None
    deps: DependencyFrames | None = None

    def of(self, sid: int, index: int) -> tuple[CulpritContext, str | None, tuple[str, ...]]:
        """(context, layer or dependency name, routes using the dependency)."""
        if self.deps is not None:
            j = self.deps.on_loop(sid)
            if j is not None and j <= index:
                profile = self.deps.profile
                frame = profile.frames[profile.stacks[sid][j]]
                return "dependency", frame.function, self.deps.routes_of(frame)
        if self.paths is not None:
            owner = self.paths.owner_at(sid, index)
            if owner == OWNER_ROUTE:
                return "endpoint", None, ()
            if owner is not None and owner != OWNER_SERVER:
                return "middleware", owner, ()
            if owner is None:
                return "other", None, ()
        return "endpoint", None, ()


def is_one_off(episodes: list[Episode], params: AnalysisParams) -> bool:
    """A single short episode: too little evidence to rank its line as a culprit."""
    one_off_ms = params.one_off_factor * params.block_threshold_ms
    return len(episodes) == 1 and episodes[0].duration_ms < one_off_ms


def measured_kind(ratio: float | None, params: AnalysisParams) -> Kind:
    if ratio is None:
        return "unknown"
    if ratio >= params.cpu_min_ratio:
        return "cpu"
    if ratio <= params.io_max_cpu_ratio:
        return "io"
    return "unknown"


_PYTHON_RUNNING: Final = (
    "Python code was running: the innermost frame kept changing while the line held "
    "the loop (or it was a comprehension or generator)"
)
_ISOLATED: Final = "of its episodes with the loop idle around them"
_SCHED: Final = "of its episodes (its scheduler times, read every 10 ms)"
_FITTED: Final = "fitted over the loop thread's CPU time in every 0.5 s window"
_NOT_SPLIT: Final = "the loop thread's CPU time could not be split among the lines that held it"


def decide_kind(
    isolated: float | None,
    fitted: float | None,
    catalogue: Kind | None,
    params: AnalysisParams,
    python_running: bool = False,
    by_sched: bool = False,
    guessed: bool = False,
) -> tuple[Kind, float | None, str]:
    """(kind, CPU share used, why), from the strongest evidence there is:

    1. a direct measurement of its episodes (the loop thread's scheduler times inside them,
       or 50 ms polls around episodes the loop idled around) when it says cpu;
    2. Python code seen running (pure-Python work waiting for the GIL held by other threads
       sleeps, so its measured share can read low, 0.35 on the busy test app, though it
       never waits on I/O);
    3. that direct measurement otherwise;
    4. the catalogue, when it knows the call (`sqlite3`, hashing, `time.sleep`, sorting): what
       a call does outranks the fit below, which a loaded server's mixed windows can pull
       far off (a measured CI run fitted pbkdf2 at 27% on a CPU: "io");
    5. the fit over the loop thread's CPU time (analyze/kind.py), with a catalogue entry
       that only `guessed` (any `.execute(`: which driver?) between io and cpu;
    6. that guess."""
    how_measured = _SCHED if by_sched else _ISOLATED
    if isolated is not None and measured_kind(isolated, params) == "cpu":
        return "cpu", isolated, _kind_of_ratio(isolated, how_measured, catalogue, params)[1]
    if python_running:
        return "cpu", isolated if isolated is not None else fitted, _PYTHON_RUNNING
    if isolated is not None:
        kind, why = _kind_of_ratio(isolated, how_measured, catalogue, params)
        return kind, isolated, why
    if catalogue is not None and not guessed:
        fit = f"; {_NOT_SPLIT}" if fitted is None else f" (the fit said {fitted:.0%} on a CPU)"
        return catalogue, fitted, f"the call is a known {catalogue} call{fit}"
    if fitted is not None:
        kind, why = _kind_of_ratio(fitted, _FITTED, catalogue, params)
        return kind, fitted, why
    if catalogue is not None:
        return catalogue, None, f"{_NOT_SPLIT}; the call is a known {catalogue} call"
    return (
        "unknown",
        None,
        f"{_NOT_SPLIT} (too few or too alike 0.5 s windows) and the call is not in the "
        "advice catalogue",
    )


def _kind_of_ratio(
    ratio: float, how: str, catalogue: Kind | None, params: AnalysisParams
) -> tuple[Kind, str]:
    """The kind a measured CPU share says, the catalogue's between io and cpu."""
    kind = measured_kind(ratio, params)
    if kind != "unknown":
        return kind, f"the loop thread was on the CPU {ratio:.0%} {how}"
    if catalogue is not None:
        return (
            catalogue,
            f"the loop thread was on the CPU {ratio:.0%} {how}, between io and cpu: "
            f"the call is a known {catalogue} call",
        )
    return (
        "unknown",
        f"the loop thread was on the CPU {ratio:.0%} {how}: between io (at most "
        f"{params.io_max_cpu_ratio:.0%}) and cpu (at least {params.cpu_min_ratio:.0%}), "
        "a mix of both or a machine short of CPU",
    )


def rank_culprits(
    profile: Profile,
    episodes: list[Episode],
    read_line: SourceReader,
    params: AnalysisParams,
    contexts: CulpritContexts | None = None,
    fitted: Mapping[tuple[str, int], float] | None = None,
    python_running: Set[tuple[str, int]] = frozenset(),
) -> list[Culprit]:
    ranking = _Ranking(
        profile,
        read_line,
        params,
        contexts,
        fitted or {},
        python_running,
        Definitions(read_line),
    )
    built = [
        ranking.culprit(file, line, eps)
        for (file, line), eps in _by_line(episodes).items()
        if not is_one_off(eps, params)
    ]
    built.sort(key=lambda c: (-c.blocked_ms, c.file, c.line))
    return [replace(c, rank=i + 1) for i, c in enumerate(built)]


def _by_line(episodes: list[Episode]) -> dict[tuple[str, int], list[Episode]]:
    """Each line's episodes, each with only that line's own part (see Episode.parts)."""
    groups: dict[tuple[str, int], list[Episode]] = defaultdict(list)
    for ep in episodes:
        for part in ep.parts:
            groups[(part.file, part.line)].append(
                replace(ep, duration_ms=part.ms, stack_id=part.stack_id, route=part.route)
            )
    return groups


@dataclass(frozen=True, slots=True)
class _Ranking:
    """What every culprit is built from besides its own episodes."""

    profile: Profile
    read_line: SourceReader
    params: AnalysisParams
    contexts: CulpritContexts | None
    fitted: Mapping[tuple[str, int], float]
    python_running: Set[tuple[str, int]]
    definitions: Definitions

    def _advice(self, code: str | None, called: list[Frame], file: str, line: int) -> Advice | None:
        """The catalogue entry from the line, what it called, and its function's lines
        above it; when those name no library (or only say "a database call"), also from
        where the names it uses were made in its file (`get_db()`, a module's client)."""
        near = lines_above(self.read_line, file, line)
        entry = find_advice(code, called, near)
        if entry is not None and entry is not GENERIC_DB:
            return entry
        made = self.definitions.made_lines(file, [code or "", *near], local_to=near)
        return find_advice(code, called, [*near, *made]) if made else entry

    def culprit(self, file: str, line: int, eps: list[Episode]) -> Culprit:
        """One line's culprit (rank 0) from its episodes."""
        longest = max(eps, key=lambda e: e.duration_ms)
        main = _main_stack(eps, longest)
        stack = self.profile.stack_frames(main)
        function = next(
            (f.function for f in reversed(stack) if f.file == file and f.line == line), "?"
        )
        routes = _route_weights(eps)
        code = self.read_line(file, line)
        index = _index(stack, file, line)
        entry = self._advice(code, stack[index:], file, line)
        context: CulpritContext = "endpoint"
        context_name: str | None = None
        users: tuple[str, ...] = ()
        if self.contexts is not None:
            # A dependency's stack never shows its route (the endpoint runs after it): the
            # routes declaring it are the evidence, not whatever else shared the episode.
            context, context_name, users = self.contexts.of(main, index)
        kind, ratio, why = decide_kind(
            _isolated_ratio(eps),
            self.fitted.get((file, line)),
            entry.kind if entry is not None else None,
            self.params,
            python_running=(file, line) in self.python_running or _comprehension_leaf(stack),
            by_sched=any(e.cpu_by_sched for e in eps),
            guessed=entry is GENERIC_DB,
        )
        return Culprit(
            rank=0,
            file=file,
            line=line,
            function=function,
            code=code,
            route=users[0] if users else (routes.most_common(1)[0][0] if routes else None),
            routes=users or tuple(r for r, _ in routes.most_common()),
            kind=kind,
            blocked_ms=sum(e.duration_ms for e in eps),
            episodes=len(eps),
            max_ms=longest.duration_ms,
            stack=tuple(short_name(f) for f in stack),
            stack_id=main,
            advice=advice_text(entry, kind, function_awaits(self.read_line, file, line)),
            cpu_ratio=ratio,
            context=context,
            context_name=context_name,
            calls=tuple(short_name(f) for f in stack[index + 1 :]),
            kind_evidence=why,
        )


def _main_stack(eps: list[Episode], longest: Episode) -> int:
    """The stack that held the line for most of its blocked time (each episode counts its
    dominant stack): what its calls and advice are read from. The longest episode alone
    could be an odd one (a call descheduled mid-way in the driver's Python code, say, on
    a machine short of CPU); its stack wins ties."""
    held: dict[int, float] = defaultdict(float)
    for e in eps:
        held[e.stack_id] += e.duration_ms
    top = max(held, key=held.__getitem__)
    return top if held[top] > held[longest.stack_id] else longest.stack_id


def _route_weights(eps: list[Episode]) -> Counter[str]:
    """Blocked microseconds per route the episodes served."""
    routes: Counter[str] = Counter()
    for e in eps:
        if e.route is not None:
            routes[e.route] += int(e.duration_ms * 1000)
    return routes


def _isolated_ratio(eps: list[Episode]) -> float | None:
    """CPU share over the episodes whose own CPU was measured, weighted by duration."""
    weighted = [(e.cpu_ratio, e.duration_ms) for e in eps if e.cpu_ratio is not None]
    return sum(r * d for r, d in weighted) / sum(d for _, d in weighted) if weighted else None


_COMPREHENSION = re.compile(r"<(?:listcomp|genexpr|dictcomp|setcomp|lambda)>$")


def _comprehension_leaf(stack: list[Frame]) -> bool:
    """A comprehension or generator expression on top executes Python bytecode."""
    return bool(stack) and _COMPREHENSION.search(stack[-1].function) is not None


def _index(stack: list[Frame], file: str, line: int) -> int:
    """Position of the culprit frame (the deepest frame at that line)."""
    for i in range(len(stack) - 1, -1, -1):
        if stack[i].file == file and stack[i].line == line:
            return i
    return 0
