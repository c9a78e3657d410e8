"""Was there traffic to judge? A profile without requests says nothing about the routes.

"No blocking culprits" from a server nobody called is not a clean bill of health. The
evidence of requests is what the samples show: loop time on the request path (middleware,
router, endpoints), samples inside a route's own code, and how much of the time the loop
sat idle. Thresholds live in `AnalysisParams`.
"""

from __future__ import annotations

from asgiprof.analyze.result import (
    AnalysisParams,
    LoopSummary,
    MiddlewareSummary,
    RouteStats,
    TrafficSummary,
)


def traffic_summary(
    loop: LoopSummary,
    routes: list[RouteStats],
    middleware: MiddlewareSummary,
    params: AnalysisParams,
    rate_hz: float = 100.0,
) -> TrafficSummary:
    route_samples = sum(r.samples for r in routes)
    handled_ms = max(middleware.request_ms, sum(r.loop_ms + r.threadpool_ms for r in routes))
    active = loop.busy_ms + loop.idle_ms
    idle_share = loop.idle_ms / active if active > 0 else 1.0
    if route_samples == 0 and handled_ms <= params.traffic_stray_samples * 1000.0 / rate_hz:
        return TrafficSummary(
            level="none",
            route_samples=0,
            request_ms=0.0,
            idle_share=idle_share,
            warning=(
                "no requests were seen while sampling (no sample in request handling, the "
                f"event loop idle {idle_share:.0%} of the time): this report says nothing "
                "about your routes. Send traffic while profiling (e.g. `wrk -d 20s "
                "http://127.0.0.1:8000/your/route`)"
            ),
        )
    if handled_ms < params.traffic_min_request_ms or idle_share >= params.traffic_idle_share:
        return TrafficSummary(
            level="low",
            route_samples=route_samples,
            request_ms=handled_ms,
            idle_share=idle_share,
            warning=(
                f"little traffic: {handled_ms:.0f} ms of request handling was sampled and the "
                f"event loop was idle {idle_share:.0%} of the time, so lines that block only "
                "now and then may be missing: profile longer, under load like production's"
            ),
        )
    return TrafficSummary(
        level="ok", route_samples=route_samples, request_ms=handled_ms, idle_share=idle_share
    )
