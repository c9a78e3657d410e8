"""`asgiprof diff BASE HEAD`: what changed between two profiles, and whether it is noise.

Both output directories are loaded and analysed exactly as `asgiprof report` does (Profile
-> Analysis); nothing here re-reads py-spy files. Every figure is a count of samples
normalised by an exposure: the event-loop thread's sampling instants ("per sample", i.e.
the share of the loop's time) or, where the load tool counted them, requests ("per
request"). Samples, never wall time, are compared: scaling by duration or by a run's busy
total makes unchanged code look changed when the rate or another route changes (CPython
3.15's differential flamegraphs, python/cpython#154032 and #154062). The sample interval
(1000 / rate ms) converts counts to milliseconds for display only.

Significance: under "nothing changed" both runs draw their counts from one rate. Samples
arrive in clusters (a 50 ms block at 100 Hz is ~5 consecutive samples), so a count is
compound Poisson: Var(k) = D * k with D = sum(s^2) / sum(s) over its clusters (episodes for
blocked time, consecutive runs on the loop for loop time; D = 1 for independent samples).
The test statistic is z = (r_head - r_base) / sqrt(D * r_pooled * (1/e_base + 1/e_head)),
r = k / e, and a change is significant when its two-sided p-value is below 0.05 divided by
the number of figures compared (Bonferroni), so a diff of two runs of the same code marks
nothing significant in 95% of diffs at most, under this model.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import NormalDist
from typing import Literal

from asgiprof import store
from asgiprof.analyze import analyze
from asgiprof.analyze.frames import file_kind
from asgiprof.analyze.loop import STATE_BUSY, LoopClassifier
from asgiprof.analyze.result import (
    ROUTE_VIEW_PREFIX,
    VIEW_BLOCKING,
    VIEW_LOOP,
    Analysis,
    AnalysisParams,
    Culprit,
)
from asgiprof.errors import UsageError
from asgiprof.identity import CulpritKey, culprit_key, portable_file
from asgiprof.model import NO_STACK, Profile
from asgiprof.sources import SourceCache

FAMILY_ALPHA = 0.05
Per = Literal["sample", "request"]
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

    what: Literal["blocked", "loop"]
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


def dispersion(clusters: Iterable[float]) -> float:
    """sum(s^2) / sum(s) over cluster sizes in samples (1 when there are none)."""
    sizes = [s for s in clusters if s > 0]
    total = sum(sizes)
    return sum(s * s for s in sizes) / total if total > 0 else 1.0


# --- what each run measured ---------------------------------------------------------------


@dataclass(slots=True)
class _Run:
    analysis: Analysis
    facts: RunFacts
    ms_per_sample: float  # loop ms per loop sample (the mean period: converts ms to counts)
    route_loop_d: dict[str, float]
    route_blocked_d: dict[str, float]
    culprit_d: dict[tuple[str, int], float]
    blocked_d: float
    busy_d: float

    def samples(self, ms: float) -> float:
        return ms / self.ms_per_sample if self.ms_per_sample > 0 else 0.0


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
    # Consecutive samples of one route on a loop thread form one cluster; so do consecutive
    # busy ones (a saturated loop is one long cluster: its busy share carries no news).
    classifier = LoopClassifier(profile)
    route_clusters: dict[str, list[float]] = defaultdict(list)
    busy_clusters: list[float] = []
    for tl in loop_tls:
        current: str | None = None
        size = busy = 0
        for _start, _dur, sid, k in tl.runs():
            at = route_of.get(sid) if sid != NO_STACK else None
            if at != current:
                if current is not None:
                    route_clusters[current].append(size)
                current, size = at, 0
            size += k
            if sid != NO_STACK and classifier.classify(sid).state == STATE_BUSY:
                busy += k
            elif busy:
                busy_clusters.append(busy)
                busy = 0
        if current is not None:
            route_clusters[current].append(size)
        if busy:
            busy_clusters.append(busy)

    per_sample = ms_per_sample or (1000.0 / profile.sampling.rate_hz)
    route_eps: dict[str, list[float]] = defaultdict(list)
    line_parts: dict[tuple[str, int], list[float]] = defaultdict(list)
    all_eps: list[float] = []
    for e in analysis.episodes:
        all_eps.append(e.samples)
        if e.route is not None:
            route_eps[e.route].append(e.samples)
        for part in e.parts:
            line_parts[(part.file, part.line)].append(part.ms / per_sample)
        if not e.parts and e.culprit is not None:
            line_parts[e.culprit].append(e.samples)

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
    return _Run(
        analysis,
        facts,
        ms_per_sample,
        {r: dispersion(c) for r, c in route_clusters.items()},
        {r: dispersion(c) for r, c in route_eps.items()},
        {k: dispersion(c) for k, c in line_parts.items()},
        dispersion(all_eps),
        dispersion(busy_clusters),
    )


def _route_pattern(path: str) -> re.Pattern[str]:
    """A route's path template as a regex: `{name}` one segment, `{name:path}` the rest."""
    parts = re.split(r"(\{[^}]*\})", path)
    return re.compile(
        "".join(
            (".+" if p.endswith(":path}") else "[^/]+") if p.startswith("{") else re.escape(p)
            for p in parts
        )
        + "$"
    )


def route_requests(profile: Profile) -> dict[str, int]:
    """Requests per route name from the load's per-path counts (GET, as the generator sends),
    the first route whose template matches a path taking it, as the framework would."""
    load = profile.load
    if load is None or not load.requests_by_path:
        return {}
    routes = [
        (r.name, _route_pattern(r.path))
        for r in profile.routes.routes
        if r.method in ("GET", "*") and r.path
    ]
    counts: dict[str, int] = defaultdict(int)
    for path, n in load.requests_by_path:
        bare = path.split("?", 1)[0]
        name = next((name for name, pattern in routes if pattern.match(bare)), None)
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
        modes = {True: "--nonblocking", False: "paused (default)"}
        why = (
            f"BASE was sampled {modes[b.nonblocking]} and HEAD {modes[h.nonblocking]}: "
            "profile both in one sampling mode"
        )
    elif b.loop_samples == 0 or h.loop_samples == 0:
        which = "BASE" if b.loop_samples == 0 else "HEAD"
        why = f"{which} has no event-loop samples: nothing to compare"
    else:
        routes = {r.route for r in base.analysis.routes} & {r.route for r in head.analysis.routes}
        lines = set(_culprits(base)) & set(_culprits(head))
        if not routes and not lines:
            why = (
                "the two runs have no route and no culprit in common: they profile different "
                "apps (or the route table was not read in one of them)"
            )
    if why is not None:
        raise IncomparableRunsError(f"incomparable runs: {why}")


def _culprits(run: _Run) -> dict[CulpritKey, Culprit]:
    cwd = run.analysis.profile.target.cwd
    return {culprit_key(c.file, c.line, c.function, c.code, cwd): c for c in run.analysis.culprits}


# --- the comparison -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Pending:
    what: Literal["blocked", "loop"]
    per: Per
    base: Figure
    head: Figure


def compare(
    base_analysis: Analysis, head_analysis: Analysis, names: tuple[str, str] = ("BASE", "HEAD")
) -> DiffResult:
    """Compare two analyses (IncomparableRunsError, exit 2, when they cannot be); `names`
    label the runs (their output directories) in the result."""
    base = _run(base_analysis, names[0])
    head = _run(head_analysis, names[1])
    _refuse_incomparable(base, head)
    eb, eh = base.facts.loop_samples, head.facts.loop_samples

    def per_sample(
        what: Literal["blocked", "loop"], kb: float, db: float, kh: float, dh: float
    ) -> _Pending:
        return _Pending(what, "sample", Figure(kb, eb, db), Figure(kh, eh, dh))

    pending_totals = [
        per_sample(
            "blocked",
            base.samples(base_analysis.loop.blocked_ms),
            base.blocked_d,
            head.samples(head_analysis.loop.blocked_ms),
            head.blocked_d,
        ),
        per_sample(
            "loop",
            base.samples(base_analysis.loop.busy_ms),
            base.busy_d,
            head.samples(head_analysis.loop.busy_ms),
            head.busy_d,
        ),
    ]
    rb, rh = base.facts.requests, head.facts.requests
    if rb and rh:
        pending_totals += [
            _Pending(
                "blocked",
                "request",
                Figure(t.base.count, rb, t.base.dispersion),
                Figure(t.head.count, rh, t.head.dispersion),
            )
            for t in pending_totals[:1]
        ]
        busy = pending_totals[1]
        pending_totals.append(
            _Pending(
                "loop",
                "request",
                Figure(busy.base.count, rb, busy.base.dispersion),
                Figure(busy.head.count, rh, busy.head.dispersion),
            )
        )

    base_routes = {r.route: r for r in base_analysis.routes}
    head_routes = {r.route: r for r in head_analysis.routes}
    route_names = sorted(set(base_routes) | set(head_routes))
    pending_routes: list[tuple[str, Status, list[_Pending]]] = []
    for name in route_names:
        b, h = base_routes.get(name), head_routes.get(name)
        status: Status = "both" if b and h else "new" if h else "gone"
        figures = [
            per_sample(
                "blocked",
                base.samples(b.blocked_ms) if b else 0.0,
                base.route_blocked_d.get(name, 1.0),
                head.samples(h.blocked_ms) if h else 0.0,
                head.route_blocked_d.get(name, 1.0),
            ),
            per_sample(
                "loop",
                base.samples(b.loop_ms) if b else 0.0,
                base.route_loop_d.get(name, 1.0),
                head.samples(h.loop_ms) if h else 0.0,
                head.route_loop_d.get(name, 1.0),
            ),
        ]
        qb, qh = base.facts.route_requests.get(name), head.facts.route_requests.get(name)
        if qb and qh:
            figures += [
                _Pending(
                    f.what, "request", replace(f.base, exposure=qb), replace(f.head, exposure=qh)
                )
                for f in figures[:2]
            ]
        pending_routes.append((name, status, figures))

    base_culprits, head_culprits = _culprits(base), _culprits(head)
    pending_culprits: list[tuple[CulpritKey, Status, Culprit | None, Culprit | None, _Pending]] = []
    for key in [*head_culprits, *(k for k in base_culprits if k not in head_culprits)]:
        bc, hc = base_culprits.get(key), head_culprits.get(key)
        status = "both" if bc and hc else "new" if hc else "gone"
        pending_culprits.append(
            (
                key,
                status,
                bc,
                hc,
                per_sample(
                    "blocked",
                    base.samples(bc.blocked_ms) if bc else 0.0,
                    base.culprit_d.get((bc.file, bc.line), 1.0) if bc else 1.0,
                    head.samples(hc.blocked_ms) if hc else 0.0,
                    head.culprit_d.get((hc.file, hc.line), 1.0) if hc else 1.0,
                ),
            )
        )

    m = len(pending_totals) + sum(len(f) for _, _, f in pending_routes) + len(pending_culprits)
    alpha = FAMILY_ALPHA / max(1, m)

    def judge(p: _Pending) -> Change:
        z, pvalue = two_rate_test(p.base, p.head)
        return Change(p.what, p.per, p.base, p.head, z, pvalue, pvalue < alpha)

    return DiffResult(
        base=base.facts,
        head=head.facts,
        alpha=alpha,
        totals=tuple(judge(p) for p in pending_totals),
        routes=tuple(
            _route_diff(name, status, [judge(f) for f in figures])
            for name, status, figures in pending_routes
        ),
        culprits=tuple(
            CulpritDiff(key, status, bc, hc, judge(p))
            for key, status, bc, hc, p in pending_culprits
        ),
        flame={view: _flame(base, head, view) for view in FLAME_VIEWS},
    )


def _route_diff(name: str, status: Status, changes: list[Change]) -> RouteDiff:
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
