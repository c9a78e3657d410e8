"""The shape of the payload the page's JavaScript reads (one JSON object, see payload.py)."""

from __future__ import annotations

from typing import TypedDict


class FramesPayload(TypedDict):
    fn: list[int]  # index into strings
    file: list[int]  # index into strings
    line: list[int]
    kind: list[int]  # KIND_CODES


class ViewPayload(TypedDict):
    id: str
    label: str
    group: str  # "main" or "route"
    total_ms: float
    nodes: list[int]  # ascending
    ms: list[float]


class CulpritPayload(TypedDict):
    rank: int
    function: str
    file: str
    line: int
    code: str | None
    route: str | None
    routes: list[str]
    kind: str
    blocked_ms: float
    episodes: int
    max_ms: float
    advice: str | None
    stack: list[str]
    node: int  # tree node of the culprit frame on its representative stack, -1 if none
    frames: list[int]  # compact frame indexes at this file:line, highlighted in the graph
    context: str  # "endpoint", "middleware", "dependency" or "other"
    context_name: str | None  # the middleware layer or dependency function
    calls: list[str]  # what the culprit line called, outermost first


class EpisodesPayload(TypedDict):
    start_s: list[float]
    ms: list[float]
    culprit: list[int]  # index into culprits, -1 when the episode has none listed
    route: list[int]  # index into route_names, -1 without a route


class TimelinePayload(TypedDict):
    start_s: float
    width_s: float
    idle_ms: list[float]
    busy_ms: list[float]
    blocked_ms: list[float]


class ThreadpoolPayload(TypedDict):
    limit: int  # worker threads per process
    start_s: float
    width_s: float
    mean_busy: list[float]  # busy workers per bin, time-averaged (summed over processes)
    max_busy: list[int]  # most busy at once in one process


class ResourceMetricPayload(TypedDict):
    id: str  # "rss_bytes", "fds", "threads", "connections" or "port:<n>"
    label: str
    unit: str  # "MiB" for RSS (values converted), "" for counts
    values: list[float | None]  # one per poll, null where unreadable
    leak: bool
    fit: list[float]  # [t0, v0, t1, v1]: the growth line after the warm-up; [] without one
    slope_per_min: float  # in `unit`
    r2: float


class ResourceProcessPayload(TypedDict):
    pid: int
    t_s: list[float]
    metrics: list[ResourceMetricPayload]


class ResourcesPayload(TypedDict):
    warmup_s: float
    end_s: float  # the charts' common time axis runs from 0 to here
    processes: list[ResourceProcessPayload]


class WorkerCulpritPayload(TypedDict):
    culprit: int  # index into culprits
    blocked_ms: float  # this worker's share of the culprit's figures
    episodes: int
    max_ms: float


class WorkerTimelinePayload(TypedDict):
    # On the bins of `timeline` (same start and width).
    idle_ms: list[float]
    busy_ms: list[float]
    blocked_ms: list[float]


class WorkerPayload(TypedDict):
    pid: int
    label: str  # "PID 1234 (worker 1)"
    busy_ms: float
    blocked_ms: float
    idle_ms: float
    utilization: float
    longest_block_ms: float
    episodes: int
    culprits: list[WorkerCulpritPayload]  # most blocked time in this worker first
    episode_ids: list[int]  # indexes into episodes, ascending
    timeline: WorkerTimelinePayload


class Payload(TypedDict):
    version: int
    strings: list[str]
    frames: FramesPayload
    nodes: dict[str, list[int]]  # "parent", "frame"
    views: list[ViewPayload]
    default_view: str
    culprits: list[CulpritPayload]
    episodes: EpisodesPayload
    timeline: TimelinePayload
    route_names: list[str]
    rate_hz: int
    threadpool: ThreadpoolPayload
    resources: ResourcesPayload
    workers: list[WorkerPayload]  # empty unless several processes ran an event loop
