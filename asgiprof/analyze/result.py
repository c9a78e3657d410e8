"""The Analysis: the only object reporters read; it maps one to one onto summary.json.

Parameters arrive in `AnalysisParams`; every field of the result is plain data derived from
a `Profile` by the functions in this package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from asgiprof.model import Profile

Kind = Literal["cpu", "io", "unknown"]
# Where a culprit line runs on the request path: in the route's endpoint (or code it calls),
# in a middleware layer, in a FastAPI dependency, or elsewhere (startup, background tasks).
CulpritContext = Literal["endpoint", "middleware", "dependency", "other"]
FindingKind = Literal[
    "possible-leak",
    "threadpool-saturation",
    "middleware-cost",
    "blocking-dependency",
    "gil-contention",
]
Severity = Literal["warning", "info"]
ResourceMetric = Literal["rss_bytes", "fds", "threads", "connections"]
LoopState = Literal["idle", "busy"]
ThreadRole = Literal["event-loop", "threadpool", "other"]
THREAD_ROLES: tuple[ThreadRole, ...] = ("event-loop", "threadpool", "other")

# Names of the flamegraph views every analysis provides (route views are "route:<name>").
VIEW_ALL = "all"
VIEW_LOOP = "loop"
VIEW_BLOCKING = "blocking"
VIEW_THREADPOOL = "threadpool"
ROUTE_VIEW_PREFIX = "route:"


@dataclass(frozen=True, slots=True)
class AnalysisParams:
    """Thresholds with their defaults (see bench/ for how they were chosen)."""

    # A synchronous stretch on the event-loop thread at least this long is a blocking
    # episode. 30 ms planted blocks must be found: at 100 Hz a 30 ms block holds ~3 samples.
    block_threshold_ms: float = 20.0
    # A line blocking the loop only once, and for less than this many thresholds, is not
    # ranked: one short stall is as likely the OS scheduling the loop thread out (a busy
    # machine) as the line itself. Real culprits repeat, request after request.
    one_off_factor: float = 3.0
    # A line blocks when its runs of samples are stickier than chance (`LineEvidence.excess`,
    # analyze/episodes.py): one synchronous call of the threshold's length scores ~0.57, the
    # short steps of a saturated loop that keep landing on one `await` line ~0.1-0.25
    # (measured: bench/busy_accuracy.py). A plain-call line holding at least
    # `dominant_share` of the loop blocks even when that comparison has no power.
    min_stickiness: float = 0.35
    dominant_share: float = 0.5
    # ... and at least this share of the line's runs must hold two samples or more: on a
    # machine short of CPU the OS leaves the loop thread waiting for a core mid-line now and
    # then, which repeats a quick line's stack (measured on the busy test app: such lines
    # had 5-20% long runs, blocking lines 60-100%).
    min_long_share: float = 0.4
    # A stretch in which the loop thread waited in the run queue for at least this share
    # and ran on a CPU for at most `starved_max_run` was the machine's doing, not its
    # line's (analyze/starved.py; the main thread's schedstat, polled every 10 ms, with
    # measured sample times only). Real blocks run or sleep: a sleep does neither.
    starved_min_wait: float = 0.5
    starved_max_run: float = 0.25
    # Culprit kind from measured CPU: cpu when the loop thread ran at least this share of
    # the blocked time, io when at most `io_max_cpu_ratio`, unknown in between.
    cpu_min_ratio: float = 0.7
    io_max_cpu_ratio: float = 0.3
    # An episode's kind is measured only when the loop idled this long before and after
    # it: sample times are estimates good to about 0.1 s (2 s chunks at 100 Hz).
    kind_margin_s: float = 0.1
    # Bins of the event-loop timeline (the report draws one column per bin).
    timeline_bins: int = 600
    # Threadpool: FastAPI/Starlette run `def` routes and dependencies in anyio's worker
    # threads, at most this many at once per process (anyio's default limiter: 40 tokens).
    threadpool_limit: int = 40
    # A saturation finding needs all workers busy for at least this share of the profile.
    threadpool_saturation_share: float = 0.05
    # Leaks: resource polls before the first request and in the `leak_warmup_s` after it are
    # left out (imports, caches, pools and worker threads fill up at startup and as load
    # begins; without requests the window starts at the first poll); the rest must span at
    # least `leak_min_trend_s` and grow steadily, a least-squares line with
    # r^2 >= `leak_min_r2` over >= `leak_min_points` polls, by at least `leak_min_relative`
    # of its start value and by an absolute minimum (`leak_min_rss_mb` MiB of RSS,
    # `leak_min_count` fds, threads or connections), and keep growing: its second half's
    # slope at least `leak_min_late_slope` of the first half's (a warm-up levels off).
    leak_warmup_s: float = 5.0
    leak_min_trend_s: float = 6.0
    leak_min_late_slope: float = 0.5
    leak_min_points: int = 5
    leak_min_r2: float = 0.8
    leak_min_relative: float = 0.1
    leak_min_rss_mb: float = 8.0
    leak_min_count: int = 10
    # Middleware: a finding when one layer's own time is at least this share of request time
    # on the event loop, or all middleware layers together at least `middleware_total_share`.
    middleware_layer_share: float = 0.2
    middleware_total_share: float = 0.4
    # GIL contention: an episode with no culprit line is the loop waiting for the GIL when,
    # within `kind_margin_s` around it, the process's pool workers were busy (stacks beyond
    # their queue wait) for at least `gil_workers_min_busy` of the episode on average and on
    # CPU at least `gil_workers_min_cpu` CPU-seconds per second together, and the loop
    # thread, over all such episodes, ran at most `gil_loop_max_cpu_ratio` of its busy time
    # (one episode's loop CPU is too noisy: sample times are estimates). Measured on a 2-CPU
    # VM with other work on it (examples/gil_contention.py, the same app whose `def` route
    # sleeps instead, framework CPU on the loop beside sleeping or computing workers):
    # computing workers sum 0.99-3.5, mostly 1.3-2 (schedstat counts run-queue waits too),
    # sleeping ones 0.1-0.6, once 0.94; the loop ran 0.19-0.56 of its busy time while
    # starved (0.73 under uvloop, whose GIL waits look idle), 0.98-1.01 computing itself.
    gil_loop_max_cpu_ratio: float = 0.85
    gil_workers_min_cpu: float = 0.8
    gil_workers_min_busy: float = 0.5
    # The finding needs stalls adding up to `one_off_factor` block thresholds (a single short
    # stall is as likely the OS), and is a warning from this share of the loops' time on.
    gil_warning_share: float = 0.05
    # ... and measured GIL holding: pool workers held the GIL in at least this share of the
    # samples of py-spy's --gil windows (only the holder is sampled). A worker in native
    # code that releases the GIL (argon2, bcrypt, hashlib) is not in them at all.
    gil_workers_min_hold: float = 0.3
    # Every finding rests on at least this many samples of what it names (the dependency's,
    # the layer's, the saturated workers', the stalled loop's): below it the time is a
    # guess (1/sqrt(10): +-32% at one sd) and one stray stack, say a security scheme's
    # `__call__` caught 2-3 times, would make a headline. Leak findings rest on
    # `leak_min_points` polls instead.
    finding_min_samples: int = 10
    # Traffic: "little traffic" when less than this much request handling (loop and
    # threadpool time in request code) was sampled, or the loop idled this share of the time;
    # "none" when no request was seen at all. Half a second is ~50 samples at 100 Hz.
    traffic_min_request_ms: float = 500.0
    traffic_idle_share: float = 0.95
    # ... and "none" still when no route was sampled and the request path holds at most this
    # many samples' time: one stray sample (an idle server's lifespan task, a connection
    # opened and closed) is not a request.
    traffic_stray_samples: float = 1.5


@dataclass(frozen=True, slots=True)
class Episode:
    """One blocking episode on an event-loop thread."""

    pid: int
    tid: int
    start_s: float
    duration_ms: float
    samples: int
    stack_id: int  # the stack seen for most of the episode
    culprit: tuple[str, int] | None  # (file, line) of the culprit frame
    route: str | None
    cpu_ratio: float | None  # loop-thread CPU time / wall time over the episode
    # Every line credited with part of the episode: a request whose dependency blocks
    # 30 ms and whose endpoint then blocks 50 ms is one synchronous stretch, two culprits.
    parts: tuple[EpisodePart, ...] = ()
    # `cpu_ratio` from the main thread's schedstat polled every 10 ms inside the episode
    # (False: from 50 ms polls, over an episode the loop idled around)
    cpu_by_sched: bool = False


@dataclass(frozen=True, slots=True)
class EpisodePart:
    file: str
    line: int
    ms: float
    stack_id: int  # the stack seen most while this line held the loop
    # The route on this line's own stacks: a middleware that blocks before routing has
    # none, whatever request the rest of the stretch served.
    route: str | None = None


@dataclass(frozen=True, slots=True)
class Culprit:
    rank: int
    file: str
    line: int
    function: str
    code: str | None
    route: str | None  # the route with the most blocked time at this line
    routes: tuple[str, ...]  # every route this line blocked under
    kind: Kind
    blocked_ms: float
    episodes: int
    max_ms: float
    stack: tuple[str, ...]  # representative stack, root first, "function (file:line)"
    stack_id: int
    advice: str | None
    cpu_ratio: float | None
    # Added for diagnostics; defaults keep older constructors valid.
    context: CulpritContext = "endpoint"
    context_name: str | None = None  # the middleware layer or dependency function
    calls: tuple[str, ...] = ()  # what the culprit line called (library chain), outermost first
    kind_evidence: str = ""  # why `kind` is what it is, in a sentence
    kind_reason: str | None = None  # why the kind is "unknown" (its evidence)
    # Rank of the culprit leading the block this line belongs to (neighbouring lines of one
    # function, see analyze/blocks.py); None for a leader or a line on its own.
    block_of: int | None = None


# What split a shared dependency's time among its routes (see analyze/route_costs.py):
# request counts from the access log, samples of the routes' endpoints, an equal split when
# neither tells, or nothing to split (one route).
SplitEvidence = Literal["requests", "endpoint-samples", "equal", "one-route"]
RoutesEvidence = Literal["access-log", "endpoint-samples"]


@dataclass(frozen=True, slots=True)
class RouteStats:
    """What one route cost: its endpoint's samples plus its share of its dependencies."""

    route: str
    samples: int  # samples whose stack shows the endpoint (dependencies never do)
    loop_ms: float  # endpoint + dependency share, on the event loop
    blocked_ms: float  # part of loop_ms inside blocking episodes
    threadpool_ms: float  # endpoint + dependency share, in worker threads
    # Additive: requests from the access log (None without one), and the part of loop_ms +
    # threadpool_ms that is the route's share of its dependencies.
    requests: int | None = None
    dependency_ms: float = 0.0
    # Its requests' share of the request overhead (server, middleware, FastAPI's own work:
    # loop time no stack attributes to a route), split by requests; 0 without a log. In
    # loop_ms, not in blocked_ms (blocked framework time is the blocking request's).
    overhead_ms: float = 0.0
    # Its share of the ORM work SQLAlchemy's AsyncSession ran in greenlets (no frame of it
    # names a route: analyze/greenlets.py), split among the routes seen using the session
    # like a shared dependency's time. In loop_ms (and its blocked part in blocked_ms).
    session_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class LoopSummary:
    busy_ms: float
    blocked_ms: float
    idle_ms: float
    utilization: float  # busy / (busy + idle), 0..1
    longest_block_ms: float
    episodes: int
    threads: tuple[tuple[int, int], ...]  # (pid, tid) of event-loop threads

    @property
    def blocked_share(self) -> float:
        """Blocked time's share of the loop's sampled time (busy + idle), 0..1."""
        active = self.busy_ms + self.idle_ms
        return self.blocked_ms / active if active > 0 else 0.0


@dataclass(frozen=True, slots=True)
class TimelineBin:
    """Event-loop state over one slice of time, summed over event-loop threads."""

    start_s: float
    width_s: float
    idle_ms: float
    busy_ms: float  # busy but not in a blocking episode
    blocked_ms: float


@dataclass(frozen=True, slots=True)
class MiddlewareLayer:
    """One layer on the request path (pure ASGI or BaseHTTPMiddleware), outermost first.

    `self_ms` is event-loop time whose deepest request-path layer was this one: its own code,
    not the layers inside it, the router or the endpoint. py-spy sees running code only, so
    time a request spends awaiting is in no layer: shares are of request time on the loop.
    """

    order: int  # 0 = outermost
    name: str  # class (or dispatch function) name
    function: str  # the frame that identifies it, e.g. "AuditMiddleware.dispatch"
    file: str
    line: int
    origin: Literal["user", "library"]
    role: Literal["middleware", "app"]  # "app": the FastAPI/Starlette application object
    samples: int
    self_ms: float
    blocked_ms: float  # part of self_ms inside blocking episodes
    share: float  # self_ms / MiddlewareSummary.request_ms


@dataclass(frozen=True, slots=True)
class MiddlewareSummary:
    request_ms: float  # loop time of all request-path samples
    layers_ms: float  # sum of the middleware layers' self time (role "middleware")
    server_ms: float  # the server's own protocol code (uvicorn, ...)
    route_ms: float  # router, dependencies and endpoints
    layers: tuple[MiddlewareLayer, ...] = ()

    @property
    def middleware_layers(self) -> tuple[MiddlewareLayer, ...]:
        """The layers that are middleware (not the application object), outermost first."""
        return tuple(x for x in self.layers if x.role == "middleware")

    @property
    def other_ms(self) -> float:
        """Request time in none of server, layers and route (0 when they add up)."""
        parts = [self.server_ms, *(x.self_ms for x in sorted(self.layers, key=lambda x: x.order))]
        return self.request_ms - sum([*parts, self.route_ms])


@dataclass(frozen=True, slots=True)
class DependencyStats:
    """Time spent in one FastAPI dependency function (and what it calls)."""

    name: str  # function qualname as py-spy shows it
    file: str
    line: int  # the line sampled most
    runs_on: Literal["loop", "threadpool", "both"]  # async deps: loop; `def` deps: threadpool
    loop_ms: float
    blocked_ms: float  # loop time inside blocking episodes
    threadpool_ms: float
    samples: int
    # Routes whose dependency tree holds it, most used first (by `split_by` evidence);
    # with an access log, only routes that served requests.
    routes: tuple[str, ...]
    shares: tuple[float, ...] = ()  # each route's share of its time, as `routes`
    split_by: SplitEvidence = "one-route"


@dataclass(frozen=True, slots=True)
class DependencySummary:
    solving_ms: float  # FastAPI's own work solving dependencies and parameters, on the loop
    dependencies: tuple[DependencyStats, ...] = ()


@dataclass(frozen=True, slots=True)
class ThreadpoolBin:
    start_s: float
    width_s: float
    mean_busy: float  # busy worker threads, time-averaged over the bin
    max_busy: int


@dataclass(frozen=True, slots=True)
class ThreadpoolHolder:
    """What the busy workers ran: a route, a dependency, or other sync work."""

    name: str  # route name, "dependency <function>", or "other: <function>"
    kind: Literal["route", "dependency", "other"]
    busy_ms: float  # worker-thread time
    share: float  # of all busy worker time
    at_limit_ms: float  # worker time while every worker was busy


@dataclass(frozen=True, slots=True)
class ThreadpoolProcess:
    pid: int
    workers_seen: int
    max_busy: int
    at_limit_ms: float


@dataclass(frozen=True, slots=True)
class ThreadpoolSummary:
    limit: int
    workers_seen: int  # most anyio worker threads seen in one process
    max_busy: int  # most busy at one moment in one process
    mean_busy: float  # over the profile, summed over processes
    busy_ms: float  # worker-thread time running work
    at_limit_ms: float  # wall time some process had every worker busy
    at_limit_share: float  # at_limit_ms / profile duration
    timeline: tuple[ThreadpoolBin, ...] = ()
    holders: tuple[ThreadpoolHolder, ...] = ()
    processes: tuple[ThreadpoolProcess, ...] = ()


@dataclass(frozen=True, slots=True)
class MetricGrowth:
    """A least-squares line through one resource metric after the warm-up window."""

    metric: str  # ResourceMetric, or "port:<n>" for connections to one remote port
    points: int
    duration_s: float
    start_value: float
    end_value: float
    slope_per_min: float
    relative: float
    r2: float
    leak: bool  # grows steadily enough to report a possible leak
    from_s: float | None = None  # time of the first poll in the fit
    # Why a growing metric is not called a leak ("too short", "levels off"), else None.
    not_leak: str | None = None


@dataclass(frozen=True, slots=True)
class ResourceSeries:
    """One process's polls (all of them, warm-up included) and the growth after warm-up."""

    pid: int
    t_s: tuple[float, ...]
    rss_bytes: tuple[int, ...]
    fds: tuple[int, ...]  # -1 where unreadable
    threads: tuple[int, ...]
    connections: tuple[int, ...]  # -1 where unreadable
    growth: tuple[MetricGrowth, ...] = ()
    remote_ports: tuple[tuple[int, tuple[int, ...]], ...] = ()  # (port, count at each poll)


@dataclass(frozen=True, slots=True)
class ResourceSummary:
    warmup_s: float
    processes: tuple[ResourceSeries, ...] = ()
    # The first request seen (seconds since the profile started): the warm-up counts from
    # there. None when no request was seen (the warm-up counts from the first poll).
    first_request_s: float | None = None

    def after_warmup(self, proc: ResourceSeries) -> list[int]:
        """Indexes of `proc`'s polls after the warm-up (what the growth fits read)."""
        if not proc.t_s:
            return []
        start = proc.t_s[0] if self.first_request_s is None else self.first_request_s
        return [i for i, t in enumerate(proc.t_s) if t >= start + self.warmup_s]


@dataclass(frozen=True, slots=True)
class Finding:
    """A diagnosis beyond single culprit lines, with its evidence and the fix."""

    kind: FindingKind
    severity: Severity
    title: str
    detail: str  # the evidence, in numbers
    advice: str
    pid: int | None = None
    subject: str | None = None  # metric, layer, dependency or route the finding is about


RunState = Literal["idle", "busy", "blocked"]


@dataclass(frozen=True, slots=True)
class LoopRunLabels:
    """Per-run labels of one event-loop thread, aligned with its ThreadTimeline's runs."""

    states: tuple[RunState | None, ...]  # None: not sampled there, or not the loop's state
    kinds: tuple[Kind | None, ...]  # on blocked runs: the kind of their episode
    # The stack whose route each run takes: its own, or for a torn run the full stack that
    # stands in for it (analyze/torn.py)
    route_stacks: tuple[int, ...] = ()


@dataclass(slots=True)
class SampleLabels:
    """What per-sample exporters (pprof) label each run with, decided by the analysis."""

    period_s: float = 0.01  # sampling period actually measured (chunk wall time / instants)
    loop_runs: dict[tuple[int, int], LoopRunLabels] = field(default_factory=dict)
    stack_routes: dict[int, str] = field(default_factory=dict)  # stack id -> route
    workers: dict[int, str] = field(default_factory=dict)  # pid -> worker name


@dataclass(frozen=True, slots=True)
class SourceShare:
    """One merged run's part of a culprit (`asgiprof merge`)."""

    source: str
    blocked_ms: float
    episodes: int
    max_ms: float


@dataclass(frozen=True, slots=True)
class FleetSource:
    """One run of a merged profile, with its own event-loop figures."""

    name: str
    out_dir: str
    pids: tuple[tuple[int, int], ...]  # (pid in the merged profile, pid on its host)
    samples: int
    busy_ms: float
    blocked_ms: float
    idle_ms: float
    episodes: int


@dataclass(slots=True)
class FleetSummary:
    """Per-source breakdown of a merged profile; empty for a single run."""

    sources: tuple[FleetSource, ...] = ()
    # (file, line) of each ranked culprit -> its share in each source, largest first
    culprit_sources: dict[tuple[str, int], tuple[SourceShare, ...]] = field(default_factory=dict)


TrafficLevel = Literal["none", "low", "ok"]


@dataclass(frozen=True, slots=True)
class TrafficSummary:
    """Whether the profile saw enough requests to judge the routes (see analyze/traffic.py)."""

    level: TrafficLevel
    route_samples: int  # samples in a route's own code, any thread
    request_ms: float  # request handling sampled: loop request path, or route loop+pool time
    idle_share: float  # of the event loop's sampled time
    warning: str | None = None


@dataclass(frozen=True, slots=True)
class GilHolder:
    """A line of user code that busy workers ran while the loop waited for the GIL."""

    file: str
    line: int
    function: str
    route: str | None
    samples: int  # worker samples at this line inside the stalls, summed over workers
    ms: float


@dataclass(frozen=True, slots=True)
class GilStall:
    episode: Episode
    loop_cpu_s: float  # loop-thread CPU seconds in the window around the episode
    loop_busy_s: float  # loop busy time (sampled) in that window
    workers_cpu: float  # workers' CPU seconds per second in that window, summed


@dataclass(frozen=True, slots=True)
class GilStalls:
    stalls: tuple[GilStall, ...] = ()
    holders: tuple[GilHolder, ...] = ()  # most samples first
    # Measured GIL holding (py-spy --gil windows) in the stalled processes: samples of any
    # thread holding it, and of their pool workers; None when it was not measured.
    gil_samples: int | None = None
    worker_gil_samples: int = 0

    @property
    def worker_gil_share(self) -> float:
        return self.worker_gil_samples / self.gil_samples if self.gil_samples else 0.0

    @property
    def stalled_ms(self) -> float:
        return sum(s.episode.duration_ms for s in self.stalls)

    @property
    def loop_cpu_ratio(self) -> float:
        """Loop CPU per second of loop busy time, over the stalls' windows."""
        busy = sum(s.loop_busy_s for s in self.stalls)
        return sum(s.loop_cpu_s for s in self.stalls) / busy if busy > 0 else 0.0

    @property
    def workers_cpu(self) -> float:
        """Workers' CPU seconds per second, time-weighted over the stalls."""
        total = self.stalled_ms
        weighted = sum(s.workers_cpu * s.episode.duration_ms for s in self.stalls)
        return weighted / total if total else 0.0


@dataclass(frozen=True, slots=True)
class ProcessCulprit:
    """A merged culprit's share in one process."""

    rank: int  # the culprit's rank in the merged list
    file: str
    line: int
    route: str | None  # the route with the most blocked time at this line in this process
    blocked_ms: float
    episodes: int
    max_ms: float


@dataclass(frozen=True, slots=True)
class ProcessSummary:
    """One server process's event loop (workers each run their own): the merged figures
    split back out per process id (see analyze/processes.py)."""

    pid: int
    event_loop_tids: tuple[int, ...]
    busy_ms: float
    blocked_ms: float
    idle_ms: float
    utilization: float  # busy / (busy + idle), 0..1
    longest_block_ms: float
    episodes: int
    culprits: tuple[ProcessCulprit, ...]  # most blocked time first
    # On the bins of `Analysis.timeline` (same width and count), adding up to them.
    timeline: tuple[TimelineBin, ...] = ()


@dataclass(slots=True)
class Analysis:
    params: AnalysisParams
    profile: Profile
    loop: LoopSummary
    episodes: list[Episode]
    culprits: list[Culprit]
    routes: list[RouteStats]
    timeline: list[TimelineBin]
    thread_roles: dict[tuple[int, int], ThreadRole]
    # Flamegraph inputs: view name -> {stack id: milliseconds}. Views: VIEW_* and
    # ROUTE_VIEW_PREFIX + route name.
    views: dict[str, dict[int, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # caveats shown to the user
    middleware: MiddlewareSummary = field(default_factory=lambda: MiddlewareSummary(0, 0, 0, 0))
    dependencies: DependencySummary = field(default_factory=lambda: DependencySummary(0.0))
    threadpool: ThreadpoolSummary = field(
        default_factory=lambda: ThreadpoolSummary(40, 0, 0, 0.0, 0.0, 0.0, 0.0)
    )
    resources: ResourceSummary = field(default_factory=lambda: ResourceSummary(0.0))
    findings: list[Finding] = field(default_factory=list)
    sample_labels: SampleLabels = field(default_factory=SampleLabels)
    fleet: FleetSummary = field(default_factory=FleetSummary)
    # Which evidence decided which routes served requests and split shared dependencies.
    routes_evidence: RoutesEvidence = "endpoint-samples"
    # Request overhead given to no route (without an access log nothing tells the split).
    request_overhead_ms: float = 0.0
    traffic: TrafficSummary = field(default_factory=lambda: TrafficSummary("ok", 0, 0.0, 0.0))
    # Per server process (pid order): its loop figures, culprit shares and timeline bins.
    processes: tuple[ProcessSummary, ...] = ()
    # Culprit-less episodes explained by pool workers holding the GIL, and what they ran.
    gil: GilStalls = field(default_factory=GilStalls)

    def thread_role_counts(self) -> dict[ThreadRole, int]:
        """Sampled threads per role, every role listed."""
        roles = self.thread_roles.values()
        return {role: sum(1 for r in roles if r == role) for role in THREAD_ROLES}

    def route_shares(self) -> dict[str, float]:
        """Each route's share of all routes' loop + threadpool time (0 when none had any)."""
        total = sum(r.loop_ms + r.threadpool_ms for r in self.routes)
        return {
            r.route: (r.loop_ms + r.threadpool_ms) / total if total > 0 else 0.0
            for r in self.routes
        }

    def route_views(self) -> list[str]:
        """Route view ids in the routes table's order, then any others by name."""
        ranked = {ROUTE_VIEW_PREFIX + r.route: i for i, r in enumerate(self.routes)}
        return sorted(
            (vid for vid in self.views if vid.startswith(ROUTE_VIEW_PREFIX)),
            key=lambda vid: (ranked.get(vid, len(ranked)), vid),
        )

    def view_total(self, vid: str) -> float:
        """A flamegraph view's milliseconds (0 for a view the analysis has not)."""
        return sum(ms for ms in self.views.get(vid, {}).values() if ms > 0)

    def drawn_views(self) -> set[str]:
        """Flamegraph views with any time in them."""
        return {vid for vid, ms in self.views.items() if any(v > 0 for v in ms.values())}

    def culprit_blocks(self) -> list[tuple[Culprit, list[Culprit]]]:
        """Culprits that lead a block or stand alone, in rank order, each with the other
        lines of its block (see analyze/blocks.py): one entry, one fix."""
        members: dict[int, list[Culprit]] = {}
        for c in self.culprits:
            if c.block_of is not None:
                members.setdefault(c.block_of, []).append(c)
        return [(c, members.get(c.rank, [])) for c in self.culprits if c.block_of is None]

    def self_check(self) -> None:
        """Check the invariants that tie the parts of the analysis together; raise
        `AnalysisInvariantError` naming the first one broken (tests call this)."""
        _check_culprits(self)
        _check_timeline(self.timeline, self.loop, "timeline")
        _check_routes(self)
        _check_processes(self)


class AnalysisInvariantError(AssertionError):
    """An Analysis whose parts disagree (see `Analysis.self_check`)."""


def _close(a: float, b: float) -> bool:
    # Sums of the same float durations taken in another order differ in the last bits, and
    # bins clipped at `width * count` or at the duration differ by nanoseconds: 1 us (a
    # ten-thousandth of a sampling period) is the floor.
    return abs(a - b) <= max(1e-6 * max(abs(a), abs(b)), 1e-3)


def _require(ok: bool, invariant: str, detail: str) -> None:
    if not ok:
        raise AnalysisInvariantError(f"{invariant}: {detail}")


def _check_culprits(a: Analysis) -> None:
    parts: dict[tuple[str, int], float] = {}
    for e in a.episodes:
        for p in e.parts:
            parts[(p.file, p.line)] = parts.get((p.file, p.line), 0.0) + p.ms
    for c in a.culprits:
        got = parts.get((c.file, c.line), 0.0)
        _require(
            _close(c.blocked_ms, got),
            "culprit blocked time = sum of its episode parts",
            f"#{c.rank} {c.file}:{c.line} has {c.blocked_ms} ms, its parts {got} ms",
        )


def _check_timeline(bins: Sequence[TimelineBin], loop: LoopSummary, name: str) -> None:
    if not bins:
        return
    sums = {
        "idle": (sum(b.idle_ms for b in bins), loop.idle_ms),
        "busy": (sum(b.busy_ms + b.blocked_ms for b in bins), loop.busy_ms),
        "blocked": (sum(b.blocked_ms for b in bins), loop.blocked_ms),
    }
    for state, (binned, total) in sums.items():
        _require(
            _close(binned, total),
            f"{name} sums = loop totals",
            f"{state} bins add up to {binned} ms, the loop's {state} time is {total} ms",
        )


def _check_routes(a: Analysis) -> None:
    blocked = sum(r.blocked_ms for r in a.routes)
    _require(
        blocked <= a.loop.blocked_ms or _close(blocked, a.loop.blocked_ms),
        "routes' blocked time <= loop blocked time",
        f"routes add up to {blocked} ms, the loop blocked {a.loop.blocked_ms} ms",
    )


def _check_processes(a: Analysis) -> None:
    if not a.processes:
        return
    merged = LoopSummary(
        busy_ms=sum(p.busy_ms for p in a.processes),
        blocked_ms=sum(p.blocked_ms for p in a.processes),
        idle_ms=sum(p.idle_ms for p in a.processes),
        utilization=0.0,
        longest_block_ms=max(p.longest_block_ms for p in a.processes),
        episodes=sum(p.episodes for p in a.processes),
        threads=tuple((p.pid, t) for p in a.processes for t in p.event_loop_tids),
    )
    for what, got, want in (
        ("busy_ms", merged.busy_ms, a.loop.busy_ms),
        ("idle_ms", merged.idle_ms, a.loop.idle_ms),
        ("blocked_ms", merged.blocked_ms, a.loop.blocked_ms),
        ("longest_block_ms", merged.longest_block_ms, a.loop.longest_block_ms),
        ("episodes", merged.episodes, a.loop.episodes),
    ):
        _require(
            _close(got, want),
            "per-process sums = merged figures",
            f"processes add up to {what} {got}, merged {want}",
        )
    _require(
        sorted(merged.threads) == sorted(a.loop.threads),
        "per-process sums = merged figures",
        f"processes' event-loop threads {merged.threads}, merged {a.loop.threads}",
    )
    if all(p.timeline for p in a.processes):
        for b, merged_bin in enumerate(a.timeline):
            for state in ("idle_ms", "busy_ms", "blocked_ms"):
                got = sum(getattr(p.timeline[b], state) for p in a.processes)
                want = getattr(merged_bin, state)
                _require(
                    _close(got, want),
                    "per-process timelines = merged timeline",
                    f"bin {b}: processes {state} {got}, merged {want}",
                )
