"""CPU share of a thread over a window, and growth of a resource over the profile, from
the Profile's `Resources` (polls the store read from resources.jsonl)."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from dataclasses import dataclass
from typing import Literal

from asgiprof.model import UNKNOWN, Resources

Metric = Literal["rss_bytes", "fds", "threads", "connections"]


def cpu_ratio(
    resources: Resources,
    pid: int,
    tid: int,
    start_s: float,
    end_s: float,
    *,
    max_gap_s: float = 1.0,
) -> float | None:
    """Share of [start_s, end_s] the thread spent on CPU, 0..1, interpolated between polls.

    None when polls do not cover the window, or the polls around one of its ends are more
    than `max_gap_s` apart (a stalled monitor: the interpolation would say nothing).
    O(log n): used once per blocking episode.
    """
    if end_s <= start_s:
        raise ValueError(f"empty window [{start_s}, {end_s}]")
    series = resources.thread_cpu.get((pid, tid))
    if series is None:
        return None
    times, cpu = series
    start_cpu = _cpu_at(times, cpu, start_s, max_gap_s)
    end_cpu = _cpu_at(times, cpu, end_s, max_gap_s)
    if start_cpu is None or end_cpu is None:
        return None
    ratio = (end_cpu - start_cpu) / (end_s - start_s)
    # A thread cannot run longer than wall time, but each thread is read a little after its
    # poll's timestamp: clamp that jitter away.
    return min(1.0, max(0.0, ratio))


def _cpu_at(times: array[float], cpu: array[float], t: float, max_gap_s: float) -> float | None:
    i = bisect_left(times, t)
    if i < len(times) and times[i] == t:
        return cpu[i]
    if i == 0 or i == len(times):
        return None
    t_lo, t_hi = times[i - 1], times[i]
    if t_hi - t_lo > max_gap_s:
        return None
    return cpu[i - 1] + (cpu[i] - cpu[i - 1]) * (t - t_lo) / (t_hi - t_lo)


@dataclass(frozen=True, slots=True)
class Growth:
    """Least-squares line through one metric of one process over the profile."""

    metric: Metric
    pid: int
    points: int
    duration_s: float
    start_value: float  # fitted value at the first poll
    end_value: float  # fitted value at the last poll
    slope_per_min: float
    relative: float  # (end_value - start_value) / max(start_value, 1)
    r2: float  # 1.0 for a constant series (the line explains it exactly)
    steady: bool  # grows steadily: enough points, positive slope, r2 and relative high enough


def growth(
    resources: Resources,
    metric: Metric,
    pid: int,
    *,
    min_points: int = 5,
    min_r2: float = 0.8,
    min_relative: float = 0.1,
) -> Growth:
    """How `metric` of `pid` grew, for leak findings; unreadable polls (-1) are left out.

    `relative` divides by at least 1 so counts growing from zero (connections) stay finite.
    """
    pts = [
        (p.t_s, float(getattr(p, metric)))
        for p in resources.points
        if p.pid == pid and getattr(p, metric) != UNKNOWN
    ]
    n = len(pts)
    if n < 2 or pts[-1][0] == pts[0][0]:
        value = pts[0][1] if pts else 0.0
        return Growth(metric, pid, n, 0.0, value, value, 0.0, 0.0, 0.0, False)
    # Centre both axes: t_s in the thousands and bytes in the billions lose precision otherwise.
    mean_t = sum(t for t, _ in pts) / n
    mean_v = sum(v for _, v in pts) / n
    sxx = sum((t - mean_t) ** 2 for t, _ in pts)
    sxy = sum((t - mean_t) * (v - mean_v) for t, v in pts)
    syy = sum((v - mean_v) ** 2 for _, v in pts)
    slope = sxy / sxx if sxx else 0.0
    t_first = min(t for t, _ in pts)
    t_last = max(t for t, _ in pts)
    start_value = mean_v + slope * (t_first - mean_t)
    end_value = mean_v + slope * (t_last - mean_t)
    residual = sum((v - (mean_v + slope * (t - mean_t))) ** 2 for t, v in pts)
    r2 = 1.0 - residual / syy if syy else 1.0
    relative = (end_value - start_value) / max(start_value, 1.0)
    steady = n >= min_points and slope > 0 and r2 >= min_r2 and relative >= min_relative
    return Growth(
        metric=metric,
        pid=pid,
        points=n,
        duration_s=t_last - t_first,
        start_value=start_value,
        end_value=end_value,
        slope_per_min=slope * 60.0,
        relative=relative,
        r2=r2,
        steady=steady,
    )
