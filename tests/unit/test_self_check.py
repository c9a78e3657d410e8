"""`Analysis.self_check()`: the invariants hold on real analyses and each one, broken,
is named in the error."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from asgiprof.analyze import analyze
from asgiprof.analyze.result import Analysis, AnalysisInvariantError, TimelineBin
from tests.golden_profiles import PARAMS, one_worker, read_line, two_workers
from tests.profile_builder import Builder
from tests.reporter_fixtures import sample_analysis


def _golden(build: Callable[[], Builder]) -> Analysis:
    return analyze(build().build(), PARAMS, read_line)


@pytest.mark.parametrize("build", [one_worker, two_workers])
def test_golden_analyses_pass(build: Callable[[], Builder]) -> None:
    analysis = _golden(build)
    analysis.self_check()
    # The check has something to check: culprits with parts, bins, processes.
    assert analysis.culprits and analysis.timeline and analysis.processes
    assert len(analysis.processes) == len(analysis.profile.target.pids)


def test_the_reporters_fixture_passes() -> None:
    sample_analysis().self_check()


def _broken_culprit(a: Analysis) -> None:
    a.culprits[0] = dataclasses.replace(a.culprits[0], blocked_ms=a.culprits[0].blocked_ms + 5)


def _broken_timeline(a: Analysis) -> None:
    b = a.timeline[0]
    a.timeline[0] = TimelineBin(b.start_s, b.width_s, b.idle_ms + 5, b.busy_ms, b.blocked_ms)


def _broken_routes(a: Analysis) -> None:
    r = a.routes[0]
    a.routes[0] = dataclasses.replace(r, blocked_ms=a.loop.blocked_ms + 1)


def _broken_process(a: Analysis) -> None:
    p = a.processes[0]
    a.processes = (dataclasses.replace(p, busy_ms=p.busy_ms + 5), *a.processes[1:])


def _broken_process_bins(a: Analysis) -> None:
    p = a.processes[-1]
    b = p.timeline[3]
    bins = list(p.timeline)
    # Moved from idle to blocked: the process's totals stay, its bins no longer add up.
    bins[3] = TimelineBin(b.start_s, b.width_s, b.idle_ms, b.busy_ms, b.blocked_ms + 5)
    a.processes = (*a.processes[:-1], dataclasses.replace(p, timeline=tuple(bins)))


@pytest.mark.parametrize(
    "break_it,invariant",
    [
        (_broken_culprit, "culprit blocked time = sum of its episode parts"),
        (_broken_timeline, "timeline sums = loop totals"),
        (_broken_routes, "routes' blocked time <= loop blocked time"),
        (_broken_process, "per-process sums = merged figures"),
        (_broken_process_bins, "per-process timelines = merged timeline"),
    ],
)
def test_each_broken_invariant_is_named(
    break_it: Callable[[Analysis], None], invariant: str
) -> None:
    analysis = _golden(two_workers)
    break_it(analysis)
    with pytest.raises(AnalysisInvariantError, match=f"^{invariant.replace('(', '.')}"):
        analysis.self_check()
