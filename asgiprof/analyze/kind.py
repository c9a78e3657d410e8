"""How much of its blocked time each culprit line spent on the CPU, fitted over the loop
thread's measured CPU time.

A single episode's CPU can only be read when the loop idled around it (sample times are
estimates good to ~0.1 s), which a loaded server rarely does. Across many windows,
though, the loop thread's CPU time is a sum of what it did in each: every line's seconds
in that window times that line's CPU share, plus the rest of its busy time and its idle
time, each with their own share. A least-squares fit over all windows gives each line's
share even when no episode stands alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from asgiprof.analyze.episodes import LoopThreadRuns
from asgiprof.analyze.loop import STATE_BLOCKED, STATE_BUSY, STATE_IDLE
from asgiprof.analyze.result import Episode

Line = tuple[str, int]
# The loop thread's CPU share over [start_s, end_s], 0..1, or None where polls do not cover
# it (analyze() passes analyze/resources.py's `cpu_ratio` over the profile's resources).
CpuRatio = Callable[[int, int, float, float], "float | None"]
# Window index -> column -> seconds.
_Windows = dict[int, dict[int, float]]

# Windows much longer than the error of sample times (~0.1 s), short enough for many.
WINDOW_S = 0.5
# A line is fitted only with this much time in at least this many windows: fewer give a
# share that one noisy window decides.
MIN_LINE_S = 0.2
MIN_WINDOWS = 4
# A fitted share is used only when its standard error is at most this: on a saturated loop
# whose windows all mix the same lines the fit cannot separate them, and says so.
MAX_SE = 0.12


def fit_line_cpu(
    loop_runs: Sequence[LoopThreadRuns],
    episodes: Sequence[Episode],
    cpu_ratio: CpuRatio,
    window_s: float = WINDOW_S,
) -> dict[Line, float]:
    """Each culprit line's CPU share of its blocked time, 0..1, where the fit can tell."""
    design = _Design()
    by_thread = _culprit_episodes_by_thread(episodes)
    for runs in loop_runs:
        tl = runs.timeline
        key = (tl.thread.pid, tl.thread.tid)
        windows = _state_windows(runs, window_s)
        design.move_episodes(windows, by_thread.get(key, ()), window_s)
        design.add_rows(windows, key, cpu_ratio, window_s)
    if len(design.columns) <= 2:
        return {}
    fit = _least_squares(design.rows, len(design.columns))
    if fit is None:
        return {}
    return design.trusted_shares(*fit)


@dataclass
class _Design:
    """The least-squares problem: one row per (loop thread, window) whose CPU was polled,
    columns "busy", "idle" and then one per culprit line."""

    rows: list[tuple[dict[int, float], float]] = field(default_factory=list)
    columns: dict[Line | str, int] = field(default_factory=lambda: {"busy": 0, "idle": 1})
    # Per line column: the windows it has real time in, and that time.
    line_windows: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    line_seconds: dict[int, float] = field(default_factory=lambda: defaultdict(float))

    def move_episodes(
        self, windows: _Windows, episodes: Iterable[Episode], window_s: float
    ) -> None:
        """Episodes' time moves from "busy" to their line's own column."""
        for ep in episodes:
            assert ep.culprit is not None
            col = self.columns.setdefault(ep.culprit, len(self.columns))
            dur = ep.duration_ms / 1000.0
            _spread(windows, col, ep.start_s, dur, window_s)
            _spread(windows, 0, ep.start_s, -dur, window_s)

    def add_rows(
        self, windows: _Windows, key: tuple[int, int], cpu_ratio: CpuRatio, window_s: float
    ) -> None:
        for w, cells in windows.items():
            lo, hi = w * window_s, (w + 1) * window_s
            ratio = cpu_ratio(key[0], key[1], lo, hi)
            if ratio is None:
                continue
            self.rows.append((dict(cells), ratio * window_s))
            for col, seconds in cells.items():
                if col >= 2 and seconds > 0.01:
                    self.line_windows[col] += 1
                    self.line_seconds[col] += seconds

    def trusted_shares(self, shares: list[float], errors: list[float]) -> dict[Line, float]:
        """The fitted lines with enough time, in enough windows, and a small enough error."""
        fitted: dict[Line, float] = {}
        for name, col in self.columns.items():
            if not isinstance(name, tuple) or errors[col] > MAX_SE:
                continue
            if self.line_windows[col] >= MIN_WINDOWS and self.line_seconds[col] >= MIN_LINE_S:
                fitted[name] = min(1.0, max(0.0, shares[col]))
        return fitted


def _culprit_episodes_by_thread(
    episodes: Iterable[Episode],
) -> dict[tuple[int, int], list[Episode]]:
    by_thread: dict[tuple[int, int], list[Episode]] = defaultdict(list)
    for ep in episodes:
        if ep.culprit is not None:
            by_thread[ep.pid, ep.tid].append(ep)
    return by_thread


def _state_windows(runs: LoopThreadRuns, window_s: float) -> _Windows:
    """Seconds per window of one loop thread: column 0 busy or blocked, column 1 idle."""
    tl = runs.timeline
    windows: _Windows = defaultdict(lambda: defaultdict(float))
    for start, dur, label in zip(tl.start_s, tl.duration_s, runs.labels, strict=True):
        if label == STATE_IDLE:
            _spread(windows, 1, start, dur, window_s)
        elif label in (STATE_BUSY, STATE_BLOCKED):
            _spread(windows, 0, start, dur, window_s)
    return windows


def _spread(windows: _Windows, col: int, start: float, dur: float, window_s: float) -> None:
    """Add `dur` seconds starting at `start` to column `col`, split over the windows."""
    sign = 1.0 if dur >= 0 else -1.0
    left, t = abs(dur), start
    while left > 1e-12:
        w = int(t // window_s)
        take = min(left, (w + 1) * window_s - t)
        if take <= 0:  # floating point at a window edge
            take = min(left, window_s)
            w += 1
        windows[w][col] += sign * take
        left -= take
        t += take


def _least_squares(
    rows: list[tuple[dict[int, float], float]], n: int
) -> tuple[list[float], list[float]] | None:
    """(b, standard errors of b) minimising sum (y - x.b)^2, by the normal equations (n is
    a handful of columns), with a tiny ridge so a column that never varies does not make
    the system singular."""
    if len(rows) <= n:
        return None
    ata = [[0.0] * n for _ in range(n)]
    aty = [0.0] * n
    for cells, y in rows:
        items = list(cells.items())
        for i, xi in items:
            aty[i] += xi * y
            for j, xj in items:
                ata[i][j] += xi * xj
    for i in range(n):
        ata[i][i] += 1e-6
    b = _solve(ata, aty)
    if b is None:
        return None
    rss = sum((y - sum(b[i] * x for i, x in cells.items())) ** 2 for cells, y in rows)
    sigma2 = rss / (len(rows) - n)
    errors: list[float] = []
    for i in range(n):
        unit = [0.0] * n
        unit[i] = 1.0
        column = _solve(ata, unit)  # column i of (A'A)^-1
        errors.append((sigma2 * column[i]) ** 0.5 if column and column[i] > 0 else float("inf"))
    return b, errors


def _solve(a: list[list[float]], b: list[float]) -> list[float] | None:
    """Gaussian elimination with partial pivoting; None when singular."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(m[r][c]))
        if abs(m[p][c]) < 1e-12:
            return None
        m[c], m[p] = m[p], m[c]
        for r in range(c + 1, n):
            f = m[r][c] / m[c][c]
            if f:
                for k in range(c, n + 1):
                    m[r][k] -= f * m[c][k]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (m[r][n] - sum(m[r][k] * x[k] for k in range(r + 1, n))) / m[r][r]
    return x
