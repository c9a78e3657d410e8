"""Resource series per process (RSS, open fds, threads, connections, connections per remote
port) and 'possible leak' findings when one grows steadily after a warm-up window.

Imports, caches, connection pools and worker threads fill up while a server starts and as
load begins, so the warm-up counts from the first request (the first sample of request
handling), not from the server's start, and polls before its end are left out of the fit.
The rest must span long enough to call a trend and rise along a least-squares line that
does not level off (r^2, relative and absolute minimums, `AnalysisParams`). Polls of a
process that had exited (RSS 0) are not resources.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from asgiprof.analyze.resources import growth
from asgiprof.analyze.result import (
    AnalysisParams,
    Finding,
    MetricGrowth,
    ResourceMetric,
    ResourceSeries,
    ResourceSummary,
)
from asgiprof.model import UNKNOWN, ResourcePoint, Resources

METRICS: Final[tuple[ResourceMetric, ...]] = ("rss_bytes", "fds", "threads", "connections")
_MIB: Final = 1024 * 1024

_WHAT: Final[dict[str, str]] = {
    "rss_bytes": "memory (RSS)",
    "fds": "open file descriptors",
    "threads": "threads",
    "connections": "network connections",
}

_ADVICE: Final[dict[str, str]] = {
    "rss_bytes": (
        "Something keeps objects from every request: an unbounded cache or registry (a dict "
        "or list keyed by request, a scoped_session registry never `.remove()`d), sessions "
        "or responses kept by closures. Compare two tracemalloc or memray snapshots taken "
        "under load to find what holds them."
    ),
    "fds": (
        "Something opens a file or socket per request and never closes it, typically a "
        "database session or connection from a dependency that returns it instead of "
        "`yield`ing it in `try/finally: session.close()` (or `async with`), or HTTP "
        "clients/files opened without a context manager."
    ),
    "connections": (
        "Connections are opened per request and not returned: close sessions in a `yield` "
        "dependency (`try/finally`), share one pooled engine or HTTP client per process "
        "instead of creating one per request, and close responses."
    ),
    "threads": (
        "Threads are started per request and never end: reuse one executor (or the "
        "threadpool via `anyio.to_thread.run_sync`) instead of creating threads or "
        "`ThreadPoolExecutor`s per request, and shut down what you create."
    ),
}


def _after_warmup(
    points: Sequence[ResourcePoint], warmup_s: float, first_request_s: float | None
) -> tuple[list[ResourcePoint], float]:
    """The polls after the warm-up, and when the warm-up started."""
    if not points:
        return [], 0.0
    start = points[0].t_s if first_request_s is None else first_request_s
    return [p for p in points if p.t_s >= start + warmup_s], start


def _min_growth(metric: str, params: AnalysisParams) -> float:
    return params.leak_min_rss_mb * _MIB if metric == "rss_bytes" else float(params.leak_min_count)


def _as_growth(
    metric: str, points: list[ResourcePoint], attr: ResourceMetric, pid: int, params: AnalysisParams
) -> MetricGrowth:
    g = growth(
        Resources(points=points),
        attr,
        pid,
        min_points=params.leak_min_points,
        min_r2=params.leak_min_r2,
        min_relative=params.leak_min_relative,
    )
    leak = g.steady and (g.end_value - g.start_value) >= _min_growth(attr, params)
    not_leak: str | None = None
    if leak and g.duration_s < params.leak_min_trend_s:
        leak, not_leak = False, f"grew over {g.duration_s:.0f} s only: too short to call a trend"
    elif leak:
        half = len(points) // 2
        early = growth(Resources(points=points[: half + 1]), attr, pid, min_points=2)
        late = growth(Resources(points=points[half:]), attr, pid, min_points=2)
        if late.slope_per_min < params.leak_min_late_slope * early.slope_per_min:
            leak = False
            not_leak = (
                "levels off (a warm-up): the second half grew at "
                f"{late.slope_per_min / max(early.slope_per_min, 1e-9):.0%} of the first's rate"
            )
    return MetricGrowth(
        metric=metric,
        points=g.points,
        duration_s=g.duration_s,
        start_value=g.start_value,
        end_value=g.end_value,
        slope_per_min=g.slope_per_min,
        relative=g.relative,
        r2=g.r2,
        leak=leak,
        from_s=points[0].t_s if points else None,
        not_leak=not_leak,
    )


def resource_summary(
    resources: Resources, params: AnalysisParams, first_request_s: float | None = None
) -> ResourceSummary:
    """Series and growth per process, connections per remote port included when the
    resource log had them. The warm-up starts at `first_request_s` when a request was seen."""
    by_pid: dict[int, list[ResourcePoint]] = {}
    for p in resources.points:
        if p.rss_bytes <= 0:
            continue  # polled after the process exited: nothing was measured
        by_pid.setdefault(p.pid, []).append(p)
    processes: list[ResourceSeries] = []
    for pid in sorted(by_pid):
        points = sorted(by_pid[pid], key=lambda p: p.t_s)
        kept, first = _after_warmup(points, params.leak_warmup_s, first_request_s)
        growths = [_as_growth(m, kept, m, pid, params) for m in METRICS]
        ports: list[tuple[int, tuple[int, ...]]] = []
        series = resources.connections.get(pid)
        if series is not None:
            for port in series.remote_ports():
                counts = series.remote_port_series(port)
                ports.append((port, counts))
                fake = [
                    ResourcePoint(t, pid, 0, 0, 0, n)
                    for t, n in zip(series.t_s, counts, strict=True)
                    if t >= first + params.leak_warmup_s
                ]
                growths.append(_as_growth(f"port:{port}", fake, "connections", pid, params))
        processes.append(
            ResourceSeries(
                pid=pid,
                t_s=tuple(p.t_s for p in points),
                rss_bytes=tuple(p.rss_bytes for p in points),
                fds=tuple(p.fds for p in points),
                threads=tuple(p.threads for p in points),
                connections=tuple(p.connections for p in points),
                growth=tuple(growths),
                remote_ports=tuple(ports),
            )
        )
    return ResourceSummary(
        warmup_s=params.leak_warmup_s,
        processes=tuple(processes),
        first_request_s=first_request_s,
    )


def _fmt(metric: str, value: float) -> str:
    if metric == "rss_bytes":
        return f"{value / _MIB:,.1f} MiB"
    return f"{value:,.0f}"


def leak_findings(summary: ResourceSummary) -> list[Finding]:
    findings: list[Finding] = []
    for proc in summary.processes:
        for g in proc.growth:
            if not g.leak:
                continue
            attr = "connections" if g.metric.startswith("port:") else g.metric
            what = _WHAT.get(attr, attr)
            if g.metric.startswith("port:"):
                what = f"connections to remote port {g.metric.removeprefix('port:')}"
            slope = g.slope_per_min
            rate = f"{slope / _MIB:+,.1f} MiB/min" if attr == "rss_bytes" else f"{slope:+,.0f}/min"
            since = (
                f"a {summary.warmup_s:.0f} s warm-up from the first request "
                f"(at {summary.first_request_s:.1f} s)"
                if summary.first_request_s is not None
                else f"a {summary.warmup_s:.0f} s warm-up from the first poll (no request was seen)"
            )
            load = " under load" if summary.first_request_s is not None else ""
            findings.append(
                Finding(
                    kind="possible-leak",
                    severity="warning",
                    title=f"possible leak: {what} of PID {proc.pid} kept growing{load}",
                    detail=(
                        f"{what} grew from {_fmt(attr, g.start_value)} to "
                        f"{_fmt(attr, g.end_value)} ({rate}) in a straight line (r\u00b2="
                        f"{g.r2:.2f}, {g.points} polls over {g.duration_s:.0f} s) after {since}, "
                        "as fast at the end as at the start: a warm-up levels off, this did "
                        "not. Confirm with a longer run"
                    ),
                    advice=_ADVICE[attr],
                    pid=proc.pid,
                    subject=g.metric,
                )
            )
    return findings


__all__ = ["METRICS", "UNKNOWN", "leak_findings", "resource_summary"]
