"""`asgiprof diff BASE HEAD`: what changed between two profiles, and whether it is noise.

Both output directories are loaded and analysed exactly as `asgiprof report` does (Profile
-> Analysis); nothing here re-reads py-spy files. Every figure is a count of samples
normalised by an exposure: the event-loop thread's sampling instants ("per sample", i.e.
the share of the loop's time) or, where the load tool counted them, requests ("per
request"). Samples, never wall time, are compared: scaling by duration or by a run's busy
total makes unchanged code look changed when the rate or another route changes (CPython
3.15's differential flamegraphs, python/cpython#154032 and #154062). The sample interval
(1000 / rate ms) converts counts to milliseconds for display only.

Significance: under "nothing changed" both runs draw their counts from one rate. py-spy
spaces samples exponentially, so the samples landing in a stretch of time are Poisson, but
the stretches themselves vary (requests arrive unevenly, other work slows the machine), so
a count varies more than Poisson: Var(k) = D * k, with D measured in each run by batch
means over one-second bins (the bins' spread around the run's rate; at least 1, Poisson).
The test statistic is z = (r_head - r_base) / sqrt(D * r_pooled * (1/e_base + 1/e_head)),
r = k / e, D pooled over both runs; with few effective events (k / D < 400) the exact
conditional binomial test replaces the normal approximation. A change is significant when
its two-sided p-value is below 0.05 divided by the number of figures compared
(Bonferroni). Request counts move with throughput, a variance one run cannot measure: a
per-request change counts as significant only when the per-sample change of the same
figure is significant in the same direction.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import NormalDist
from typing import Literal, TypeVar

from asgiprof import store
from asgiprof.analyze import analyze
from asgiprof.analyze.frames import file_kind
from asgiprof.analyze.result import (
    ROUTE_VIEW_PREFIX,
    VIEW_BLOCKING,
    VIEW_LOOP,
    Analysis,
    AnalysisParams,
    Culprit,
    RouteStats,
)
from asgiprof.errors import UsageError
from asgiprof.identity import CulpritKey, culprit_key, portable_file
from asgiprof.model import NO_STACK, Profile
from asgiprof.store.access_log import RouteMatcher
from asgiprof.store.sources import SourceCache

FAMILY_ALPHA = 0.05
Per = Literal["sample", "request"]
What = Literal["blocked", "loop"]
_WHATS: tuple[What, ...] = ("blocked", "loop")
Status = Literal["both", "new", "gone"]
FrameKey = tuple[str, str, int, str]  # function, portable file, line, kind
FLAME_VIEWS = (VIEW_LOOP, VIEW_BLOCKING)


class IncomparableRunsError(UsageError):
    """The two profiles cannot be compared (different rate or mode, nothing in common)."""


def load_analysis(out: Path, params: AnalysisParams) -> Analysis:
    """The Analysis of a saved output directory, as `asgiprof report` builds it."""
    profile = store.load_profile(out)
    return analyze(profile, params, SourceCache.load(out).read_line)


@dataclass(frozen=True, slots=True)
class Figure:
    """`count` samples over `exposure` (loop samples or requests), clustered by `dispersion`."""

    count: float
    exposure: float
    dispersion: float

    @property
    def rate(self) -> float:
        return self.count / self.exposure if self.exposure > 0 else 0.0

    @property
    def sd(self) -> float:
        return math.sqrt(self.dispersion * self.count) / self.exposure if self.exposure else 0.0


@dataclass(frozen=True, slots=True)
class Change:
    """One figure in both runs: rates (samples per sample or per request), the difference
    with its standard deviation, the test's z and p, and the verdict."""

    what: What
    per: Per
    base: Figure
    head: Figure
    z: float
    p: float
    significant: bool

    @property
    def delta(self) -> float:
        return self.head.rate - self.base.rate

    @property
    def delta_sd(self) -> float:
        return math.hypot(self.base.sd, self.head.sd)

    @property
    def verdict(self) -> str:
        return "significant" if self.significant else "within noise"


@dataclass(frozen=True, slots=True)
class RouteDiff:
    route: str
    status: Status
    blocked: Change
    loop: Change
    # Per request of this route, when both runs' load counted them (asgiprof's generator)
    blocked_per_request: Change | None = None
    loop_per_request: Change | None = None

    @property
    def changes(self) -> list[Change]:
        extra = [c for c in (self.blocked_per_request, self.loop_per_request) if c is not None]
        return [self.blocked, self.loop, *extra]


@dataclass(frozen=True, slots=True)
class CulpritDiff:
    key: CulpritKey
    status: Status
    base: Culprit | None
    head: Culprit | None
    blocked: Change

    @property
    def culprit(self) -> Culprit:
        c = self.head or self.base
        assert c is not None
        return c


@dataclass(frozen=True, slots=True)
class RunFacts:
    out: str
    rate_hz: int
    nonblocking: bool
    duration_s: float
    loop_samples: int
    requests: int | None
    load_command: str | None
    route_requests: dict[str, int]  # requests per route, where the load tool counted them

    @property
    def interval_ms(self) -> float:
        return 1000.0 / self.rate_hz


@dataclass(frozen=True, slots=True)
class DiffResult:
    base: RunFacts
    head: RunFacts
    alpha: float  # per figure, after Bonferroni
    totals: tuple[Change, ...]  # blocked and loop per sample, then per request if known
    routes: tuple[RouteDiff, ...]
    culprits: tuple[CulpritDiff, ...]
    # view -> frame path -> (base, head) share of the loop's samples
    flame: dict[str, dict[tuple[FrameKey, ...], tuple[float, float]]]

    @property
    def significant(self) -> list[Change]:
        changes = [*self.totals]
        for r in self.routes:
            changes += r.changes
        changes += [c.blocked for c in self.culprits]
        return [c for c in changes if c.significant]


# --- statistics --------------------------------------------------------------------------

_NORMAL = NormalDist()
_EXACT_MAX = 400  # below this many effective events, the exact binomial test


def two_rate_test(base: Figure, head: Figure) -> tuple[float, float]:
    """(z, two-sided p) for "both counts come from one rate" (see the module docstring).

    Dividing counts by the pooled dispersion gives effective independent events; with few,
    the exact conditional test (head's share of events is binomial with p = its share of
    the exposure) replaces the normal approximation.
    """
    total = base.count + head.count
    if total <= 0 or base.exposure <= 0 or head.exposure <= 0:
        return 0.0, 1.0
    d = max(1.0, _pooled_dispersion(base, head))
    pooled = total / (base.exposure + head.exposure)
    var = d * pooled * (1 / base.exposure + 1 / head.exposure)
    z = (head.rate - base.rate) / math.sqrt(var) if var > 0 else 0.0
    n = round(total / d)
    if n < _EXACT_MAX:
        share = head.exposure / (base.exposure + head.exposure)
        return z, _binomial_two_sided(round(head.count / d), n, share)
    return z, 2 * (1 - _NORMAL.cdf(abs(z)))


def _pooled_dispersion(base: Figure, head: Figure) -> float:
    total = base.count + head.count
    return (base.dispersion * base.count + head.dispersion * head.count) / total


def _binomial_two_sided(k: int, n: int, p: float) -> float:
    """Exact two-sided p-value: the probability of outcomes no likelier than k."""
    if n == 0:
        return 1.0
    k = min(max(k, 0), n)
    logs = [
        math.lgamma(n + 1)
        - math.lgamma(i + 1)
        - math.lgamma(n - i + 1)
        + (i * math.log(p) if i else 0.0)
        + ((n - i) * math.log1p(-p) if n - i else 0.0)
        for i in range(n + 1)
    ]
    observed = logs[k]
    return min(1.0, sum(math.exp(v) for v in logs if v <= observed + 1e-9))


BIN_S = 1.0  # width of the time bins a run's own variability is measured over


def batch_dispersion(counts: Sequence[float], exposure: Sequence[float]) -> float:
    """Var(k) / k of a figure measured from its spread over a run's time bins (batch means),
    at least 1 (Poisson): `counts[b]` its samples and `exposure[b]` the loop's in bin b."""
    total_k, total_e = sum(counts), sum(exposure)
    bins = [(k, e) for k, e in zip(counts, exposure, strict=True) if e > 0]
    if total_k <= 0 or total_e <= 0 or len(bins) < 3:
        return 1.0
    rate = total_k / total_e
    squares = sum((k - rate * e) ** 2 for k, e in bins)
    var = len(bins) / (len(bins) - 1) * squares
    return max(1.0, var / total_k)


class _Bins:
    """Per-bin sample counts of every figure of one run (see `batch_dispersion`)."""

    def __init__(self, duration_s: float) -> None:
        self.n = max(1, math.ceil(duration_s / BIN_S))
        self.series: dict[tuple[str, object], list[float]] = {}

    def add(self, key: tuple[str, object], start_s: float, dur_s: float, samples: float) -> None:
        """Spread `samples` over [start_s, start_s + dur_s] by overlap with each bin."""
        row = self.series.get(key)
        if row is None:
            row = self.series[key] = [0.0] * self.n
        end_s = start_s + dur_s
        first = min(self.n - 1, max(0, int(start_s / BIN_S)))
        last = min(self.n - 1, max(first, int(end_s / BIN_S)))
        if dur_s <= 0 or first == last:
            row[first] += samples
            return
        for b in range(first, last + 1):
            overlap = min(end_s, (b + 1) * BIN_S) - max(start_s, b * BIN_S)
            if overlap > 0:
                row[b] += samples * overlap / dur_s

    def dispersion(self, key: tuple[str, object]) -> float:
        row = self.series.get(key)
        exposure = self.series.get(("exposure", None))
        if row is None or exposure is None:
            return 1.0
        return batch_dispersion(row, exposure)


# --- what each run measured ---------------------------------------------------------------


@dataclass(slots=True)
class _Run:
    analysis: Analysis
    facts: RunFacts
    ms_per_sample: float  # loop ms per loop sample (the mean period: converts ms to counts)
    bins: _Bins
    routes: dict[str, RouteStats]
    culprits: dict[CulpritKey, Culprit]

    def samples(self, ms: float) -> float:
        return ms / self.ms_per_sample if self.ms_per_sample > 0 else 0.0

    def d(self, kind: str, subject: object = None) -> float:
        return self.bins.dispersion((kind, subject))

    def figure(self, ms: float, dispersion: float) -> Figure:
        """`ms` of the loop's time as samples per loop sample."""
        return Figure(self.samples(ms), self.facts.loop_samples, dispersion)

    def total(self, what: What, _: None = None) -> Figure:
        loop = self.analysis.loop
        if what == "blocked":
            return self.figure(loop.blocked_ms, self.d("blocked"))
        return self.figure(loop.busy_ms, self.d("busy"))

    def route(self, what: What, name: str) -> Figure:
        """A route's figure; 0 where the run did not see the route."""
        r = self.routes.get(name)
        ms = 0.0 if r is None else r.blocked_ms if what == "blocked" else r.loop_ms
        return self.figure(ms, self.d(f"route-{what}", name))

    def line(self, what: What, key: CulpritKey) -> Figure:
        """A culprit line's blocked time; 0 (Poisson) where the run did not rank it."""
        assert what == "blocked"
        c = self.culprits.get(key)
        if c is None:
            return self.figure(0.0, 1.0)
        return self.figure(c.blocked_ms, self.d("line", (c.file, c.line)))


def _run(analysis: Analysis, out: str) -> _Run:
    profile = analysis.profile
    loop_ids = set(analysis.loop.threads)
    loop_tls = [t for t in profile.threads if (t.thread.pid, t.thread.tid) in loop_ids]
    n = sum(t.total_samples for t in loop_tls)
    loop_ms = analysis.loop.busy_ms + analysis.loop.idle_ms
    ms_per_sample = loop_ms / n if n else 0.0

    route_of: dict[int, str] = {}
    for view, weights in analysis.views.items():
        if view.startswith(ROUTE_VIEW_PREFIX):
            name = view[len(ROUTE_VIEW_PREFIX) :]
            for sid in weights:
                route_of[sid] = name
    # Every figure's samples per one-second bin: how much it varies within the run (more
    # than Poisson when requests arrive unevenly or the machine's load changes) is the
    # noise a second run of the same code would show.
    bins = _Bins(profile.sampling.duration_s)
    for tl in loop_tls:
        labels = analysis.sample_labels.loop_runs.get((tl.thread.pid, tl.thread.tid))
        states = labels.states if labels is not None else (None,) * len(tl)
        for (start, dur, sid, k), state in zip(tl.runs(), states, strict=True):
            if sid == NO_STACK:
                continue
            bins.add(("exposure", None), start, dur, k)
            route = route_of.get(sid)
            if route is not None:
                bins.add(("route-loop", route), start, dur, k)
            if state in ("busy", "blocked"):
                bins.add(("busy", None), start, dur, k)
    per_sample = ms_per_sample or (1000.0 / profile.sampling.rate_hz)
    for e in analysis.episodes:
        dur_s = e.duration_ms / 1000
        bins.add(("blocked", None), e.start_s, dur_s, e.samples)
        if e.route is not None:
            bins.add(("route-blocked", e.route), e.start_s, dur_s, e.samples)
        for part in e.parts:
            bins.add(("line", (part.file, part.line)), e.start_s, dur_s, part.ms / per_sample)
        if not e.parts and e.culprit is not None:
            bins.add(("line", e.culprit), e.start_s, dur_s, e.samples)

    load = profile.load
    requests = load.requests if load is not None and load.failure is None else None
    facts = RunFacts(
        out=out,
        rate_hz=profile.sampling.rate_hz,
        nonblocking=profile.sampling.nonblocking,
        duration_s=profile.sampling.duration_s,
        loop_samples=n,
        requests=requests if requests else None,
        load_command=load.command if load is not None else None,
        route_requests=route_requests(profile) if requests else {},
    )
    routes = {r.route: r for r in analysis.routes}
    return _Run(analysis, facts, ms_per_sample, bins, routes, _culprits(analysis))


def route_requests(profile: Profile) -> dict[str, int]:
    """Requests per route name from the load's per-path counts (GET, as the generator sends),
    the first route whose template matches a path taking it, as the framework would."""
    load = profile.load
    if load is None or not load.requests_by_path:
        return {}
    matcher = RouteMatcher(r for r in profile.routes.routes if r.path)
    counts: dict[str, int] = defaultdict(int)
    for path, n in load.requests_by_path:
        name = matcher.route("GET", path)
        if name is not None:
            counts[name] += n
    return dict(counts)


def _refuse_incomparable(base: _Run, head: _Run) -> None:
    b, h = base.facts, head.facts
    why = None
    if b.rate_hz != h.rate_hz:
        why = (
            f"BASE was sampled at {b.rate_hz} Hz and HEAD at {h.rate_hz} Hz: profile both at "
            "one --rate"
        )
    elif b.nonblocking != h.nonblocking:
        modes = {True: "--nonblocking", False: "--blocking"}
        why = (
            f"BASE was sampled {modes[b.nonblocking]} and HEAD {modes[h.nonblocking]}: "
            "profile both in one sampling mode"
        )
    elif b.loop_samples == 0 or h.loop_samples == 0:
        which = "BASE" if b.loop_samples == 0 else "HEAD"
        why = f"{which} has no event-loop samples: nothing to compare"
    else:
        routes = {r.route for r in base.analysis.routes} & {r.route for r in head.analysis.routes}
        lines = set(base.culprits) & set(head.culprits)
        if not routes and not lines:
            why = (
                "the two runs have no route and no culprit in common: they profile different "
                "apps (or the route table was not read in one of them)"
            )
    if why is not None:
        raise IncomparableRunsError(f"incomparable runs: {why}")


def _culprits(analysis: Analysis) -> dict[CulpritKey, Culprit]:
    cwd = analysis.profile.target.cwd
    return {culprit_key(c.file, c.line, c.function, c.code, cwd): c for c in analysis.culprits}


# --- the comparison -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Pending:
    what: What
    per: Per
    base: Figure
    head: Figure

    def judge(self, alpha: float) -> Change:
        z, pvalue = two_rate_test(self.base, self.head)
        return Change(self.what, self.per, self.base, self.head, z, pvalue, pvalue < alpha)


def compare(
    base_analysis: Analysis, head_analysis: Analysis, names: tuple[str, str] = ("BASE", "HEAD")
) -> DiffResult:
    """Compare two analyses (IncomparableRunsError, exit 2, when they cannot be); `names`
    label the runs (their output directories) in the result."""
    base = _run(base_analysis, names[0])
    head = _run(head_analysis, names[1])
    _refuse_incomparable(base, head)
    totals = _pending_totals(base, head)
    routes = _pending_routes(base, head)
    culprits = _pending_culprits(base, head)
    m = len(totals) + sum(len(f) for _, _, f in routes) + len(culprits)
    alpha = FAMILY_ALPHA / max(1, m)
    return DiffResult(
        base=base.facts,
        head=head.facts,
        alpha=alpha,
        totals=tuple(_confirmed(t) for t in _pairs([p.judge(alpha) for p in totals])),
        routes=tuple(
            _route_diff(name, status, [f.judge(alpha) for f in figures])
            for name, status, figures in routes
        ),
        culprits=tuple(
            CulpritDiff(key, status, bc, hc, p.judge(alpha)) for key, status, bc, hc, p in culprits
        ),
        flame={view: _flame(base, head, view) for view in FLAME_VIEWS},
    )


_S = TypeVar("_S")


def _per_sample(
    what: What, base: _Run, head: _Run, figure: Callable[[_Run, What, _S], Figure], subject: _S
) -> _Pending:
    """One figure, per loop sample, in both runs: `figure` (a `_Run` method) measures it in
    each."""
    return _Pending(what, "sample", figure(base, what, subject), figure(head, what, subject))


def _per_request(per_sample: list[_Pending], base_n: int, head_n: int) -> list[_Pending]:
    """The same figures per request, where both runs counted `base_n`, `head_n` requests."""
    return [
        _Pending(
            p.what, "request", replace(p.base, exposure=base_n), replace(p.head, exposure=head_n)
        )
        for p in per_sample
    ]


def _pending_totals(base: _Run, head: _Run) -> list[_Pending]:
    totals = [_per_sample(what, base, head, _Run.total, None) for what in _WHATS]
    rb, rh = base.facts.requests, head.facts.requests
    if rb and rh:
        totals += _per_request(totals, rb, rh)
    return totals


def _pending_routes(base: _Run, head: _Run) -> list[tuple[str, Status, list[_Pending]]]:
    pending: list[tuple[str, Status, list[_Pending]]] = []
    for name in sorted(set(base.routes) | set(head.routes)):
        b, h = base.routes.get(name), head.routes.get(name)
        status: Status = "both" if b and h else "new" if h else "gone"
        figures = [_per_sample(what, base, head, _Run.route, name) for what in _WHATS]
        qb, qh = base.facts.route_requests.get(name), head.facts.route_requests.get(name)
        if qb and qh:
            figures += _per_request(figures, qb, qh)
        pending.append((name, status, figures))
    return pending


def _pending_culprits(
    base: _Run, head: _Run
) -> list[tuple[CulpritKey, Status, Culprit | None, Culprit | None, _Pending]]:
    """Every culprit line of either run, HEAD's first, with its blocked time in both."""
    pending: list[tuple[CulpritKey, Status, Culprit | None, Culprit | None, _Pending]] = []
    for key in [*head.culprits, *(k for k in base.culprits if k not in head.culprits)]:
        bc, hc = base.culprits.get(key), head.culprits.get(key)
        status: Status = "both" if bc and hc else "new" if hc else "gone"
        pending.append((key, status, bc, hc, _per_sample("blocked", base, head, _Run.line, key)))
    return pending


def _pairs(changes: list[Change]) -> list[tuple[Change, Change | None]]:
    """Each change with the per-sample change of the same figure (for per-request ones):
    the list holds per-sample figures first, then the per-request ones in the same order."""
    per_sample = [c for c in changes if c.per == "sample"]
    by_what = {c.what: c for c in per_sample}
    return [(c, by_what.get(c.what) if c.per == "request" else None) for c in changes]


def _confirmed(pair: tuple[Change, Change | None]) -> Change:
    """A per-request change counts as significant only when the per-sample change of the same
    figure is significant in the same direction: request counts move with throughput (the
    machine's load), a variance no single run measures, while per-sample shares do not."""
    change, per_sample = pair
    if per_sample is None or not change.significant:
        return change
    agrees = per_sample.significant and (per_sample.delta > 0) == (change.delta > 0)
    return change if agrees else replace(change, significant=False)


def _route_diff(name: str, status: Status, changes: list[Change]) -> RouteDiff:
    changes = [_confirmed(pair) for pair in _pairs(changes)]
    if len(changes) == 4:
        return RouteDiff(name, status, *changes)
    return RouteDiff(name, status, changes[0], changes[1])


def _paths(run: _Run, view: str) -> dict[tuple[FrameKey, ...], float]:
    """Frame paths of one view, as shares of the run's loop samples."""
    analysis = run.analysis
    profile = analysis.profile
    cwd = profile.target.cwd
    n = run.facts.loop_samples
    shares: dict[tuple[FrameKey, ...], float] = defaultdict(float)
    keys: dict[int, FrameKey] = {}
    for sid, ms in analysis.views.get(view, {}).items():
        if not profile.stacks[sid]:
            # No frame to draw (a chrometrace run in which py-spy saw no frame at all).
            continue
        path: list[FrameKey] = []
        for fid in profile.stacks[sid]:
            key = keys.get(fid)
            if key is None:
                f = profile.frames[fid]
                key = keys[fid] = (
                    f.function,
                    portable_file(f.file, cwd),
                    f.line,
                    file_kind(f.file),
                )
            path.append(key)
        shares[tuple(path)] += run.samples(ms) / n if n else 0.0
    return shares


def _flame(base: _Run, head: _Run, view: str) -> dict[tuple[FrameKey, ...], tuple[float, float]]:
    b, h = _paths(base, view), _paths(head, view)
    return {path: (b.get(path, 0.0), h.get(path, 0.0)) for path in sorted(set(b) | set(h))}
