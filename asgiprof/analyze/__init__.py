"""Analysis steps, run in a visible order by `analyze()`; see result.py for the output.

Every step is a plain function of the Profile (and earlier steps' results): no printing,
no files. Source lines come in through `read_line` so the caller decides where they live.
"""

from __future__ import annotations

from collections import defaultdict

from asgiprof.analyze.culprits import SourceReader, rank_culprits
from asgiprof.analyze.episodes import (
    LABEL_BLOCKED,
    LABEL_BUSY,
    LABEL_IDLE,
    UserFrames,
    find_episodes,
)
from asgiprof.analyze.loop import LoopClassifier
from asgiprof.analyze.result import (
    ROUTE_VIEW_PREFIX,
    VIEW_ALL,
    VIEW_BLOCKING,
    VIEW_LOOP,
    VIEW_THREADPOOL,
    Analysis,
    AnalysisParams,
    Culprit,
    Episode,
    LoopSummary,
    RouteStats,
)
from asgiprof.analyze.roles import thread_roles, threads_with_role
from asgiprof.analyze.routes import RouteResolver
from asgiprof.analyze.timeline import loop_timeline
from asgiprof.model import NO_STACK, Profile, ThreadTimeline

__all__ = ["analyze"]


def _no_source(file: str, line: int) -> str | None:
    return None


def analyze(
    profile: Profile,
    params: AnalysisParams | None = None,
    read_line: SourceReader = _no_source,
) -> Analysis:
    params = params or AnalysisParams()
    from asgiprof.collect.resources import cpu_ratio as _cpu_ratio

    def cpu_ratio(pid: int, tid: int, start_s: float, end_s: float) -> float | None:
        return _cpu_ratio(profile.resources, pid, tid, start_s, end_s)

    classifier = LoopClassifier(profile)
    roles = thread_roles(profile, classifier)
    loop_threads = threads_with_role(profile, roles, "event-loop")
    resolver = RouteResolver.for_profile(profile)
    user_frames = UserFrames(profile, classifier)

    episodes, loop_runs = find_episodes(
        profile, loop_threads, classifier, user_frames, resolver.route_of, cpu_ratio, params
    )
    culprits = rank_culprits(profile, episodes, read_line, params)

    # Views and per-route sums in one pass over the runs.
    views: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    route_samples: dict[str, int] = defaultdict(int)
    route_loop: dict[str, float] = defaultdict(float)
    route_blocked: dict[str, float] = defaultdict(float)
    route_pool: dict[str, float] = defaultdict(float)
    busy_ms = blocked_ms = idle_ms = 0.0
    labels_of = {id(lr.timeline): lr.labels for lr in loop_runs}
    for tl in profile.threads:
        role = roles.get((tl.thread.pid, tl.thread.tid), "other")
        labels = labels_of.get(id(tl))
        for i, (_start, dur, sid, n) in enumerate(tl.runs()):
            if sid == NO_STACK:
                continue
            ms = dur * 1000.0
            views[VIEW_ALL][sid] += ms
            route = resolver.route_of(sid)
            if route is not None:
                route_samples[route] += n
                views[ROUTE_VIEW_PREFIX + route][sid] += ms
            if labels is not None:
                views[VIEW_LOOP][sid] += ms
                label = labels[i]
                if label == LABEL_IDLE:
                    idle_ms += ms
                elif label in (LABEL_BUSY, LABEL_BLOCKED):
                    busy_ms += ms
                    if route is not None:
                        route_loop[route] += ms
                    if label == LABEL_BLOCKED:
                        blocked_ms += ms
                        views[VIEW_BLOCKING][sid] += ms
                        if route is not None:
                            route_blocked[route] += ms
            elif role == "threadpool":
                views[VIEW_THREADPOOL][sid] += ms
                if route is not None:
                    route_pool[route] += ms

    routes = sorted(
        (
            RouteStats(r, route_samples[r], route_loop[r], route_blocked[r], route_pool[r])
            for r in route_samples
        ),
        key=lambda rs: (-(rs.loop_ms + rs.threadpool_ms), rs.route),
    )
    active = busy_ms + idle_ms
    loop = LoopSummary(
        busy_ms=busy_ms,
        blocked_ms=blocked_ms,
        idle_ms=idle_ms,
        utilization=busy_ms / active if active > 0 else 0.0,
        longest_block_ms=max((e.duration_ms for e in episodes), default=0.0),
        episodes=len(episodes),
        threads=tuple((t.thread.pid, t.thread.tid) for t in loop_threads),
    )
    duration_s = max(
        profile.sampling.duration_s,
        max((c.end_s for c in profile.sampling.chunks), default=0.0),
    )
    notes = _notes(profile, loop_threads, episodes, culprits)
    return Analysis(
        params=params,
        profile=profile,
        loop=loop,
        episodes=episodes,
        culprits=culprits,
        routes=routes,
        timeline=loop_timeline(loop_runs, duration_s, params.timeline_bins),
        thread_roles=roles,
        views={k: dict(v) for k, v in views.items()},
        notes=notes,
    )


def _notes(
    profile: Profile,
    loop_threads: list[ThreadTimeline],
    episodes: list[Episode],
    culprits: list[Culprit],
) -> list[str]:
    notes: list[str] = []
    if not loop_threads:
        notes.append(
            "no event-loop thread was found in the samples: is this an ASGI server, and was "
            "it serving while sampled?"
        )
    if profile.routes.source == "none":
        why = profile.routes.error or "unknown reason"
        notes.append(f"route table not read ({why}): routes are endpoint function names")
    orphans = [e for e in episodes if e.culprit is None]
    if orphans:
        ms = sum(e.duration_ms for e in orphans)
        notes.append(
            f"{len(orphans)} blocking episode(s), {ms:.0f} ms, had no single line of your "
            "code holding the loop (framework or library code, or many short callbacks): "
            "see the 'blocking' flamegraph"
        )
    notes.extend(f"unreadable chunk skipped: {p}" for p in profile.problems)
    if profile.target.exit_status is not None:
        notes.append(f"the target exited while sampled, with status {profile.target.exit_status}")
    return notes
