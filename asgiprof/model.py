"""The one data model: frames, interned stacks, per-thread sample runs, and the Profile.

Built once from py-spy output (see `store/pyspy.py`); every analysis reads a
`Profile`, nothing re-parses raw files. Samples are stored run-length encoded per thread
(consecutive samples with the same stack form one run) in compact arrays, so an idle
thread costs one run per chunk and memory stays flat as profiles grow.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

# Stack id for "this thread was not sampled here" (gaps between py-spy chunks).
NO_STACK = -1
# ResourcePoint field value when the poll could not read it (access denied).
UNKNOWN = -1
# How the store's sampling-coverage problem starts: analyze drops it when the loop was idle.
COVERAGE_NOTE = "py-spy sampled "


@dataclass(frozen=True, slots=True)
class Frame:
    function: str
    file: str
    line: int  # 0 when py-spy could not tell


@dataclass(frozen=True, slots=True)
class ThreadInfo:
    pid: int
    tid: int  # OS thread id (py-spy's --threads root frame), 0 when unknown
    name: str


@dataclass(slots=True)
class ThreadTimeline:
    """Sample runs of one thread in time order.

    Run i starts at `start_s[i]` (seconds since the profile started, estimated: py-spy
    gives sample order, not timestamps), holds `samples[i]` consecutive samples of stack
    `stack[i]` and lasts `duration_s[i]` seconds of wall time.
    """

    thread: ThreadInfo
    start_s: array[float] = field(default_factory=lambda: array("d"))
    duration_s: array[float] = field(default_factory=lambda: array("d"))
    stack: array[int] = field(default_factory=lambda: array("i"))
    samples: array[int] = field(default_factory=lambda: array("I"))

    def append(self, start_s: float, duration_s: float, stack_id: int, samples: int) -> None:
        self.start_s.append(start_s)
        self.duration_s.append(duration_s)
        self.stack.append(stack_id)
        self.samples.append(samples)

    def __len__(self) -> int:
        return len(self.stack)

    def runs(self) -> Iterator[tuple[float, float, int, int]]:
        """(start_s, duration_s, stack_id, samples) per run."""
        return zip(self.start_s, self.duration_s, self.stack, self.samples, strict=True)

    @property
    def total_samples(self) -> int:
        return sum(self.samples)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One bounded py-spy recording; the raw file stays in the output directory."""

    file: str  # relative to the output directory
    start_s: float  # seconds since the profile started
    end_s: float
    samples: int  # thread stacks py-spy recorded
    errors: int  # samples py-spy failed to read
    intervals: int = 0  # sampling instants (the longest thread's sample count)
    lag_s: float = 0.0  # the furthest py-spy said it fell behind its rate
    rate_hz: int = 0  # the rate this chunk asked py-spy for (0: the profile's rate)
    # Seconds cut from the chunk's start because the chunk before it still sampled then
    # (chunks overlap by a few ms at each handover, so that no instant goes unsampled).
    overlap_s: float = 0.0
    # Seconds py-spy held the target paused in this chunk (its CPU time while it sampled:
    # it reads the stacks with every thread stopped); 0 with --nonblocking; None: not
    # measured (a profile from before asgiprof measured it, or a chunk too short).
    pause_s: float | None = None


@dataclass(frozen=True, slots=True)
class RateChange:
    """The sampler changed its rate from the chunk that started at `at_s` on."""

    at_s: float  # seconds since the profile started
    from_hz: int
    to_hz: int
    reason: str
    # A change of --scout-rate's (full rate while the loop held a line, the scout rate
    # again once it did not): expected, so the report sums them up in one note.
    scout: bool = False


@dataclass(frozen=True, slots=True)
class RouteDependency:
    """One function of a route's FastAPI dependency tree, with its source span."""

    function: str  # qualified name; a class dependency: its `__init__` (or the class)
    file: str
    first_line: int
    last_line: int
    depth: int  # 1: the route's own (signature, router, app); 2: a dependency's; ...


@dataclass(frozen=True, slots=True)
class Route:
    """One route as the framework declares it, with its endpoint's source span."""

    # "GET", "POST", ..., "WS", "*" (a mount: the path and all below it) or "ANY" (any
    # method, this path: a Django function view)
    method: str
    path: str  # "/users/{user_id}"
    endpoint: str  # qualified function name
    file: str
    first_line: int
    last_line: int
    is_async: bool
    # Depth first, as the framework resolves them (FastAPI); () when it has none or the
    # tree was not read (other frameworks, output directories from before trees were read).
    dependencies: tuple[RouteDependency, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True, slots=True)
class RouteTable:
    routes: tuple[Route, ...]
    source: Literal["app", "none"]  # "none": table could not be read
    error: str | None = None  # why the table could not be read
    dependency_error: str | None = None  # why some routes' dependency trees were not read


@dataclass(frozen=True, slots=True)
class RequestCounts:
    """Requests per route read from the server's access log (`run` only), over the whole
    time the server ran: shares of traffic, not counts of the sampled window."""

    source: Literal["access-log"]
    by_route: tuple[tuple[str, int], ...]  # (route name, requests), most first
    total: int  # request lines read
    unmatched: int  # lines whose path no route matches (404s, static files)

    def of(self, route: str) -> int:
        return dict(self.by_route).get(route, 0)

    @staticmethod
    def combined(counts: Sequence[RequestCounts | None]) -> RequestCounts | None:
        """The counts of several runs (`asgiprof merge`) added up; None unless every run
        had an access log (a partial count would split dependencies by the wrong share)."""
        if not counts or any(c is None for c in counts):
            return None
        by_route: dict[str, int] = {}
        for c in counts:
            assert c is not None
            for route, n in c.by_route:
                by_route[route] = by_route.get(route, 0) + n
        return RequestCounts(
            source="access-log",
            by_route=tuple(sorted(by_route.items(), key=lambda kv: (-kv[1], kv[0]))),
            total=sum(c.total for c in counts if c is not None),
            unmatched=sum(c.unmatched for c in counts if c is not None),
        )


@dataclass(frozen=True, slots=True)
class TargetInfo:
    pids: tuple[int, ...]
    command: tuple[str, ...]  # already redacted
    server: str  # "uvicorn", "gunicorn", "hypercorn", "granian", "daphne", "unknown"
    cwd: str = ""
    python: str = ""  # interpreter that can import the app
    app_spec: str | None = None  # "module:attr"
    mode: Literal["run", "attach"] = "run"
    exit_status: int | None = None  # set when the target exited while sampled


def behind_pace(tried: float, asked: float) -> bool:
    """Whether py-spy tried fewer instants than its rate asked for by more than its random
    (exponential) spacing explains, which makes a count of N vary by about sqrt(N): short
    by 10% and by three standard deviations of the count."""
    short = asked - tried
    return asked > 0 and short > 0.1 * asked and short > 3 * math.sqrt(asked)


@dataclass(frozen=True, slots=True)
class SamplingInfo:
    rate_hz: int
    started_at: float  # unix time
    duration_s: float
    samples: int
    errors: int
    chunks: tuple[Chunk, ...] = ()
    # "duration", "interrupt", "target-exit", "error", "load" (the load command ended), or
    # "unfinished" (asgiprof was killed)
    stopped_by: str = "duration"
    # py-spy --nonblocking: runs sampled this way are not compared with paused ones (diff).
    nonblocking: bool = False
    rate_changes: tuple[RateChange, ...] = ()
    # What the watchdog did to keep the target running (a hung py-spy killed, a stopped
    # process resumed): empty when py-spy behaved.
    watchdog: tuple[str, ...] = ()
    # The most of the time py-spy was allowed to hold the target paused (--max-pause, a
    # share; 0: no limit, or a profile from before the limit existed).
    max_pause: float = 0.0
    # --scout-rate: the rate while the loop held no line still (0: always `rate_hz`).
    scout_hz: int = 0

    @property
    def intervals(self) -> int:
        """Sampling instants py-spy took."""
        return sum(c.intervals for c in self.chunks)

    def chunk_rate(self, chunk: Chunk) -> int:
        return chunk.rate_hz or self.rate_hz

    @property
    def sampled_s(self) -> float:
        """Seconds sampled at the rate each chunk asked for: instants x their period."""
        return sum(c.intervals / self.chunk_rate(c) for c in self.chunks if self.chunk_rate(c))

    @property
    def spanned_s(self) -> float:
        """Seconds inside the chunks' spans (py-spy sampling, from its start to the signal
        that stopped it; overlaps are cut from the newer chunk when loaded)."""
        return sum(max(0.0, c.end_s - c.start_s) for c in self.chunks)

    @property
    def asked(self) -> float:
        """The instants the chunks' rates asked for inside their spans."""
        return sum(max(0.0, c.end_s - c.start_s) * self.chunk_rate(c) for c in self.chunks)

    @property
    def coverage(self) -> float:
        """Instants taken / instants the rates asked for inside py-spy's spans, 0..1: below
        1 when py-spy fell behind. py-spy spaces instants at random (exponentially), so a
        count of N varies by about 1/sqrt(N) (`fell_behind` allows for it). Time left
        between the spans is `span_coverage`'s."""
        asked = self.asked
        return min(1.0, self.intervals / asked) if asked > 0 else 0.0

    @property
    def fell_behind(self) -> bool:
        """py-spy tried fewer instants (taken or failed) than its rates asked for, by more
        than its random spacing explains: short by 10% and by three standard deviations of
        the count. (Failed reads are `errors`: lowering the rate does not help them.)"""
        return behind_pace(self.intervals + self.errors, self.asked)

    @property
    def span_coverage(self) -> float:
        """Share of the time from the first chunk's start to the last one's end that lay
        inside some py-spy's sampling span, 0..1: below 1 by the gaps between chunks.
        Unlike `coverage` it does not move with py-spy's random (exponential) spacing of
        instants, which makes a count of N instants vary by about 1/sqrt(N)."""
        whole = self.spread_s
        return min(1.0, self.spanned_s / whole) if whole > 0 else 0.0

    @property
    def spread_s(self) -> float:
        """From the first chunk's start to the last one's end (0 without a span)."""
        spans = [c for c in self.chunks if c.end_s > c.start_s]
        if not spans:
            return 0.0
        return max(c.end_s for c in spans) - min(c.start_s for c in spans)

    @property
    def gaps_s(self) -> float:
        """Time between the chunks' spans that no py-spy sampled."""
        return max(0.0, self.spread_s - self.spanned_s)

    @property
    def pause_share(self) -> float | None:
        """The share of the sampled time py-spy held the target paused, over the chunks
        where it was measured (None when none was)."""
        measured = [c for c in self.chunks if c.pause_s is not None and c.end_s > c.start_s]
        span = sum(c.end_s - c.start_s for c in measured)
        if span <= 0:
            return None
        return min(1.0, sum(c.pause_s or 0.0 for c in measured) / span)

    @property
    def behind_s(self) -> float:
        """Wall time inside chunks beyond what their instants take at the rate: how far
        py-spy fell behind (exponential spacing makes this noisy by ~0.1 s per chunk)."""
        return max(0.0, self.spanned_s - self.sampled_s)

    @property
    def max_lag_s(self) -> float:
        return max((c.lag_s for c in self.chunks), default=0.0)


LoadStop = Literal["exit", "duration", "interrupt", "target-exit", "error"]


@dataclass(frozen=True, slots=True)
class LoadInfo:
    """The load asgiprof drove at the server while sampling (`--load CMD` or `--load-url`)."""

    command: str  # the shell command as run, secrets redacted ("asgiprof-load ..." for ours)
    url: str  # the server's base URL the placeholders were filled with
    started_s: float  # seconds since the profile started
    duration_s: float
    # "exit": the command ended by itself; otherwise asgiprof stopped it (see LoadStop)
    stopped_by: LoadStop
    exit_status: int | None  # None while asgiprof had to stop it; < 0: killed by a signal
    output_tail: tuple[str, ...] = ()  # its last output lines, redacted (all in load.log)
    requests: int | None = None  # requests sent, when the load tool says (wrk, ours)
    failed_requests: int | None = None  # requests that failed, when the tool says
    # (path with query, requests sent) per path, when the tool says (asgiprof's own)
    requests_by_path: tuple[tuple[str, int], ...] = ()

    @property
    def failure(self) -> str | None:
        """Why this load does not count as a good run, or None: a load that exited non-zero,
        or was cut short by the server exiting or an error (stopping it at --duration or
        Ctrl-C is the user's choice, not a failure)."""
        if self.stopped_by == "exit":
            if self.exit_status == 0:
                return None
            if self.exit_status is not None and self.exit_status < 0:
                return f"the load command was killed by signal {-self.exit_status}"
            return f"the load command exited with status {self.exit_status}"
        if self.stopped_by == "target-exit":
            return "the server exited before the load command finished"
        if self.stopped_by == "error":
            return "sampling failed before the load command finished"
        return None


@dataclass(frozen=True, slots=True)
class ThreadCpu:
    """Cumulative CPU seconds (user+system) of one OS thread at one poll."""

    t_s: float
    pid: int
    tid: int
    cpu_s: float


@dataclass(frozen=True, slots=True)
class ResourcePoint:
    """One poll of a target process's resources."""

    t_s: float
    pid: int
    rss_bytes: int
    fds: int
    threads: int
    connections: int


@dataclass(frozen=True, slots=True)
class ConnectionSeries:
    """Connections of one process over time (one entry per `res` poll that could read them)."""

    pid: int
    t_s: tuple[float, ...]
    total: tuple[int, ...]
    by_remote_port: tuple[Mapping[int, int], ...]
    by_listen_port: tuple[Mapping[int, int], ...]

    def remote_ports(self) -> list[int]:
        """Remote ports seen, busiest (highest peak count) first."""
        peak: dict[int, int] = {}
        for counts in self.by_remote_port:
            for port, n in counts.items():
                peak[port] = max(peak.get(port, 0), n)
        return sorted(peak, key=lambda p: (-peak[p], p))

    def remote_port_series(self, port: int) -> tuple[int, ...]:
        """Connections to `port` at each poll (0 where none)."""
        return tuple(counts.get(port, 0) for counts in self.by_remote_port)


@dataclass(slots=True)
class Resources:
    points: list[ResourcePoint] = field(default_factory=list)
    # per (pid, tid): times and cumulative CPU seconds, for cpu/io kind of episodes
    thread_cpu: dict[tuple[int, int], tuple[array[float], array[float]]] = field(
        default_factory=dict
    )
    connections: dict[int, ConnectionSeries] = field(default_factory=dict)  # by pid
    # per (pid, tid) of main threads: times, cumulative seconds on a CPU and waiting for
    # one (run queue), polled often enough to tell a 20 ms stretch's (analyze/starved.py)
    sched: dict[tuple[int, int], tuple[array[float], array[float], array[float]]] = field(
        default_factory=dict
    )

    def add_cpu(self, sample: ThreadCpu) -> None:
        times, cpu = self.thread_cpu.setdefault((sample.pid, sample.tid), (array("d"), array("d")))
        times.append(sample.t_s)
        cpu.append(sample.cpu_s)


@dataclass(frozen=True, slots=True)
class RunSource:
    """One run merged into a fleet profile (`asgiprof merge`): where it came from, and the
    pids it had on its host, renumbered in the merged profile because pids collide."""

    name: str  # unique within the merge: the output directory's name
    out_dir: str
    pids: tuple[tuple[int, int], ...] = ()  # (pid in the merged profile, pid on its host)


@dataclass(slots=True)
class GilSamples:
    """Who held the GIL, from py-spy `--gil` windows (record/gil_sampler.py): at each
    sampled instant only the holding thread is recorded, none while nobody holds it."""

    windows: int
    seconds: float  # wall time the windows spanned
    # (pid, tid) -> stack id -> samples holding the GIL (stacks interned with the rest)
    held: dict[tuple[int, int], dict[int, int]] = field(default_factory=dict)

    @property
    def samples(self) -> int:
        return sum(n for stacks in self.held.values() for n in stacks.values())

    def add(self, other: GilSamples, pid_map: Mapping[int, int], stack_map: Sequence[int]) -> None:
        """Add another run's windows (`asgiprof merge`), its pids and stack ids mapped to
        the merged profile's."""
        self.windows += other.windows
        self.seconds += other.seconds
        for (pid, tid), stacks in other.held.items():
            held = self.held.setdefault((pid_map.get(pid, pid), tid), {})
            for sid, n in stacks.items():
                held[stack_map[sid]] = held.get(stack_map[sid], 0) + n


@dataclass(slots=True)
class Profile:
    """Everything measured: interned frames and stacks, per-thread runs, metadata."""

    target: TargetInfo
    sampling: SamplingInfo
    frames: list[Frame] = field(default_factory=list)
    stacks: list[tuple[int, ...]] = field(default_factory=list)  # frame ids, root first
    threads: list[ThreadTimeline] = field(default_factory=list)
    routes: RouteTable = field(default_factory=lambda: RouteTable((), "none", "not read"))
    resources: Resources = field(default_factory=Resources)
    problems: list[str] = field(default_factory=list)  # unreadable chunks and the like
    sources: list[RunSource] = field(default_factory=list)  # the runs of a merged profile
    load: LoadInfo | None = None  # the load run with --load / --load-url, if any
    requests: RequestCounts | None = None  # from the access log, when `run` captured one
    gil: GilSamples | None = None  # None: GIL holding was not measured

    def stack_frames(self, stack_id: int) -> list[Frame]:
        return [self.frames[i] for i in self.stacks[stack_id]]

    def self_check(self) -> None:
        """Raise AssertionError when an invariant the analysis relies on is broken."""
        n_frames = len(self.frames)
        for stack in self.stacks:
            assert all(0 <= f < n_frames for f in stack), "frame id out of range"
        n_stacks = len(self.stacks)
        for tl in self.threads:
            lengths = {len(tl.start_s), len(tl.duration_s), len(tl.stack), len(tl.samples)}
            assert len(lengths) == 1, "timeline arrays differ in length"
            prev_end = float("-inf")
            for start, dur, sid, _ in tl.runs():
                assert sid == NO_STACK or 0 <= sid < n_stacks, "stack id out of range"
                assert dur >= 0, "negative run duration"
                assert start >= prev_end - 1e-6, "runs out of time order"
                prev_end = start + dur


class Interner:
    """Gives each distinct frame and stack one id, so repeated stacks cost nothing."""

    def __init__(self, frames: list[Frame], stacks: list[tuple[int, ...]]) -> None:
        self.frames = frames
        self.stacks = stacks
        self._frame_ids = {f: i for i, f in enumerate(frames)}
        self._stack_ids = {s: i for i, s in enumerate(stacks)}

    def frame(self, frame: Frame) -> int:
        fid = self._frame_ids.get(frame)
        if fid is None:
            fid = self._frame_ids[frame] = len(self.frames)
            self.frames.append(frame)
        return fid

    def stack(self, frame_ids: tuple[int, ...]) -> int:
        sid = self._stack_ids.get(frame_ids)
        if sid is None:
            sid = self._stack_ids[frame_ids] = len(self.stacks)
            self.stacks.append(frame_ids)
        return sid
