"""Per-source breakdown of a merged fleet profile (`asgiprof merge`): each run's own
event-loop figures, and each ranked culprit's share in each run.

`fleet_summary(...)` reads the profile's `sources` (empty for a single run, which gets an
empty summary) and credits episodes as `rank_culprits` does: each line its own part.
"""

from __future__ import annotations

from collections import defaultdict

from asgiprof.analyze.result import (
    Culprit,
    Episode,
    FleetSource,
    FleetSummary,
    SampleLabels,
    SourceShare,
)
from asgiprof.model import NO_STACK, Profile


def fleet_summary(
    profile: Profile, episodes: list[Episode], culprits: list[Culprit], labels: SampleLabels
) -> FleetSummary:
    if not profile.sources:
        return FleetSummary()
    source_of = {merged: s.name for s in profile.sources for merged, _ in s.pids}
    samples: dict[str, int] = defaultdict(int)
    state_ms: dict[tuple[str, str], float] = defaultdict(float)
    for tl in profile.threads:
        name = source_of.get(tl.thread.pid, "")
        samples[name] += sum(
            n for sid, n in zip(tl.stack, tl.samples, strict=True) if sid != NO_STACK
        )
        runs = labels.loop_runs.get((tl.thread.pid, tl.thread.tid))
        if runs is None:
            continue
        for state, dur, sid in zip(runs.states, tl.duration_s, tl.stack, strict=True):
            if state is not None and sid != NO_STACK:
                state_ms[(name, state)] += dur * 1000.0

    ranked = {(c.file, c.line) for c in culprits}
    count: dict[str, int] = defaultdict(int)
    shares: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(dict)
    for e in episodes:
        name = source_of.get(e.pid, "")
        count[name] += 1
        for part in e.parts:
            if (part.file, part.line) not in ranked:
                continue
            acc = shares[(part.file, part.line)].setdefault(name, [0.0, 0.0, 0.0])
            acc[0] += part.ms
            acc[1] += 1
            acc[2] = max(acc[2], part.ms)

    sources = tuple(
        FleetSource(
            name=s.name,
            out_dir=s.out_dir,
            pids=s.pids,
            samples=samples[s.name],
            busy_ms=state_ms[(s.name, "busy")] + state_ms[(s.name, "blocked")],
            blocked_ms=state_ms[(s.name, "blocked")],
            idle_ms=state_ms[(s.name, "idle")],
            episodes=count[s.name],
        )
        for s in profile.sources
    )
    culprit_sources = {
        key: tuple(
            sorted(
                (SourceShare(name, acc[0], int(acc[1]), acc[2]) for name, acc in per.items()),
                key=lambda sh: (-sh.blocked_ms, sh.source),
            )
        )
        for key, per in shares.items()
    }
    return FleetSummary(sources, culprit_sources)
