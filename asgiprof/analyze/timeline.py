"""Bin event-loop time into idle / busy / blocked columns for the report's timeline."""

from __future__ import annotations

from collections.abc import Iterator

from asgiprof.analyze.episodes import LoopThreadRuns
from asgiprof.analyze.loop import STATE_BLOCKED, STATE_BUSY, STATE_IDLE
from asgiprof.analyze.result import TimelineBin


def overlaps(start: float, end: float, width: float, bins: int) -> Iterator[tuple[int, float]]:
    """(bin, seconds of [start, end) inside it) for bins of `width` from 0; time past the
    last bin goes into it. Steps past a bin edge that `t / width` rounds down to."""
    t = max(start, 0.0)
    b = min(int(t / width), bins - 1)
    while t < end:
        while b < bins - 1 and (b + 1) * width <= t:
            b += 1
        upto = end if b == bins - 1 else min(end, (b + 1) * width)
        yield b, upto - t
        t = upto


def loop_timeline(
    loop_runs: list[LoopThreadRuns], duration_s: float, bins: int
) -> list[TimelineBin]:
    if duration_s <= 0 or bins <= 0:
        return []
    width = duration_s / bins
    acc = [[0.0, 0.0, 0.0] for _ in range(bins)]  # idle, busy, blocked (seconds)
    slot_of = {STATE_IDLE: 0, STATE_BUSY: 1, STATE_BLOCKED: 2}
    for lr in loop_runs:
        tl = lr.timeline
        for (start, dur, _sid, _n), label in zip(tl.runs(), lr.labels, strict=True):
            slot = slot_of.get(label)
            if slot is None or dur <= 0:
                continue
            # Spread the run over the bins it overlaps, in proportion to the overlap.
            for b, seconds in overlaps(start, min(start + dur, duration_s), width, bins):
                acc[b][slot] += seconds
    return [
        TimelineBin(b * width, width, a[0] * 1000.0, a[1] * 1000.0, a[2] * 1000.0)
        for b, a in enumerate(acc)
    ]
