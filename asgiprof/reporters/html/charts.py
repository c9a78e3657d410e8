"""Charts' data: busy threadpool workers per bin, and resource series per process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from asgiprof.analyze.result import Analysis, MetricGrowth, ResourceSeries
from asgiprof.reporters.document import rounded as _r
from asgiprof.reporters.html.payload_types import (
    ResourceMetricPayload,
    ResourceProcessPayload,
    ResourcesPayload,
    ThreadpoolPayload,
)


def threadpool_payload(analysis: Analysis) -> ThreadpoolPayload:
    """Busy workers per bin of the event-loop timeline; no bins without worker threads (the
    page then has no threadpool section)."""
    t = analysis.threadpool
    bins = t.timeline if t.workers_seen else ()
    return {
        "limit": t.limit,
        "start_s": _r(bins[0].start_s, 4) if bins else 0.0,
        "width_s": _r(bins[0].width_s, 6) if bins else 0.0,
        # A bin's average cannot exceed its peak: clamp, so that one overfilled bin (a
        # float edge when busy time is spread over bins) cannot flatten the whole chart.
        "mean_busy": [_r(min(b.mean_busy, float(b.max_busy)), 2) for b in bins],
        "max_busy": [b.max_busy for b in bins],
    }


MIB: Final = 1024 * 1024

# Resource metrics in chart order: (id in the series, label, unit).
RESOURCE_METRICS: Final = (
    ("rss_bytes", "RSS", "MiB"),
    ("fds", "open files", ""),
    ("threads", "threads", ""),
    ("connections", "connections", ""),
)


def _fit(
    times: Sequence[float], values: Sequence[float | None], warmup_s: float, g: MetricGrowth
) -> list[float]:
    """The growth line's ends: from the first readable poll after the warm-up, over
    `g.duration_s` (how the analysis fitted it)."""
    if g.points < 2 or g.duration_s <= 0 or not times:
        return []
    after = times[0] + warmup_s if g.from_s is None else g.from_s
    t0 = next((t for t, v in zip(times, values, strict=True) if t >= after and v is not None), None)
    if t0 is None:
        return []
    return [_r(t0, 3), g.start_value, _r(t0 + g.duration_s, 3), g.end_value]


def _metric_payload(
    metric_id: str,
    label: str,
    unit: str,
    times: Sequence[float],
    raw: Sequence[int],
    growth: MetricGrowth | None,
    warmup_s: float,
) -> ResourceMetricPayload:
    scale = MIB if unit == "MiB" else 1
    digits = 2 if unit == "MiB" else 3
    values: list[float | None] = [None if v < 0 else _r(v / scale, digits) for v in raw]
    fit: list[float] = []
    slope = r2 = 0.0
    if growth is not None:
        fit = _fit(times, values, warmup_s, growth)
        if fit:
            fit[1], fit[3] = _r(fit[1] / scale, digits), _r(fit[3] / scale, digits)
        slope, r2 = _r(growth.slope_per_min / scale, digits), _r(growth.r2, 3)
    return {
        "id": metric_id,
        "label": label,
        "unit": unit,
        "values": values,
        "leak": bool(growth is not None and growth.leak),
        "fit": fit,
        "slope_per_min": slope,
        "r2": r2,
    }


def _port_series(proc: ResourceSeries, counts: Sequence[int]) -> list[int] | None:
    """A remote port's counts on the process's poll times: one per poll, or one per poll
    whose connections could be read (how the connection log records them)."""
    if len(counts) == len(proc.t_s):
        return list(counts)
    readable = [i for i, n in enumerate(proc.connections) if n >= 0]
    if len(counts) != len(readable):
        return None  # cannot place them on the time axis
    out = [-1] * len(proc.t_s)
    for i, n in zip(readable, counts, strict=True):
        out[i] = n
    return out


def resources_payload(analysis: Analysis) -> ResourcesPayload:
    """Per process with at least two polls: every metric with a readable poll."""
    r = analysis.resources
    processes: list[ResourceProcessPayload] = []
    end_s = analysis.profile.sampling.duration_s
    for proc in r.processes:
        if len(proc.t_s) < 2:
            continue
        times = [_r(t, 3) for t in proc.t_s]
        end_s = max(end_s, times[-1])
        growth = {g.metric: g for g in proc.growth}
        metrics: list[ResourceMetricPayload] = []
        for metric_id, label, unit in RESOURCE_METRICS:
            raw: Sequence[int] = getattr(proc, metric_id)
            if len(raw) == len(times) and any(v >= 0 for v in raw):
                metrics.append(
                    _metric_payload(
                        metric_id, label, unit, times, raw, growth.get(metric_id), r.warmup_s
                    )
                )
        for port, counts in proc.remote_ports:
            series = _port_series(proc, counts)
            if series is not None:
                metric_id = f"port:{port}"
                metrics.append(
                    _metric_payload(
                        metric_id,
                        f"connections to port {port}",
                        "",
                        times,
                        series,
                        growth.get(metric_id),
                        r.warmup_s,
                    )
                )
        processes.append({"pid": proc.pid, "t_s": times, "metrics": metrics})
    return {"warmup_s": r.warmup_s, "end_s": _r(end_s, 3), "processes": processes}
