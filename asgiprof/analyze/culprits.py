"""Rank culprits: the user-code lines that blocking episodes were spent in."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import replace

from asgiprof.analyze.advice import advice_text, find_advice
from asgiprof.analyze.frames import short_name
from asgiprof.analyze.result import AnalysisParams, Culprit, Episode, Kind
from asgiprof.model import Frame, Profile

SourceReader = Callable[[str, int], "str | None"]


def measured_kind(ratio: float | None, params: AnalysisParams) -> Kind:
    if ratio is None:
        return "unknown"
    if ratio >= params.cpu_min_ratio:
        return "cpu"
    if ratio <= params.io_max_cpu_ratio:
        return "io"
    return "unknown"


def rank_culprits(
    profile: Profile,
    episodes: list[Episode],
    read_line: SourceReader,
    params: AnalysisParams,
) -> list[Culprit]:
    groups: dict[tuple[str, int], list[Episode]] = defaultdict(list)
    for ep in episodes:
        if ep.culprit is not None:
            groups[ep.culprit].append(ep)
    built: list[Culprit] = []
    for (file, line), eps in groups.items():
        blocked_ms = sum(e.duration_ms for e in eps)
        longest = max(eps, key=lambda e: e.duration_ms)
        stack = profile.stack_frames(longest.stack_id)
        function = next(
            (f.function for f in reversed(stack) if f.file == file and f.line == line), "?"
        )
        routes: Counter[str] = Counter()
        for e in eps:
            if e.route is not None:
                routes[e.route] += int(e.duration_ms * 1000)
        weighted = [(e.cpu_ratio, e.duration_ms) for e in eps if e.cpu_ratio is not None]
        ratio = sum(r * d for r, d in weighted) / sum(d for _, d in weighted) if weighted else None
        code = read_line(file, line)
        entry = find_advice(code, _above(stack, file, line))
        kind = measured_kind(ratio, params)
        if kind == "unknown" and ratio is None and entry is not None:
            kind = entry.kind  # no CPU measurements: trust the catalogue
        built.append(
            Culprit(
                rank=0,
                file=file,
                line=line,
                function=function,
                code=code,
                route=routes.most_common(1)[0][0] if routes else None,
                routes=tuple(r for r, _ in routes.most_common()),
                kind=kind,
                blocked_ms=blocked_ms,
                episodes=len(eps),
                max_ms=longest.duration_ms,
                stack=tuple(short_name(f) for f in stack),
                stack_id=longest.stack_id,
                advice=advice_text(entry, kind),
                cpu_ratio=ratio,
            )
        )
    built.sort(key=lambda c: (-c.blocked_ms, c.file, c.line))
    return [replace(c, rank=i + 1) for i, c in enumerate(built)]


def _above(stack: list[Frame], file: str, line: int) -> list[Frame]:
    """The culprit frame and what it called: where a library call shows itself."""
    for i in range(len(stack) - 1, -1, -1):
        if stack[i].file == file and stack[i].line == line:
            return stack[i:]
    return stack
