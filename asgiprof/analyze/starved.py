"""Stretches in which the event loop waited for a CPU instead of running a line.

On a machine short of CPU the OS leaves the loop thread in the run queue now and then for
20-30 ms (longer beside CPU hogs), in the middle of whatever it was doing. Every sample of
that wait shows the same stack, so a quick line (an SQLAlchemy `select(...)` being built,
a pydantic model) holds the loop for "25 ms" in py-spy's eyes, and when it happens a few
times at one line the line looks like it blocks: measured in the busy test app beside two
CPU hogs, 6 such stretches at one `select(...)` line, 131 ms, each with under 2 ms of CPU
in it by the app's own clock. The loop really was blocked, by the machine; the line was
not the cause, and changing it would change nothing.

With measured sample times (chrometrace chunks: `ASGIPROF_PYSPY_FORMAT=chrometrace`), the
resource monitor polls the main thread's schedstat every 10 ms (record/resources.py),
apart: time on a CPU and time in the run queue. (speedscope chunks, the default, place
samples to ~0.1 s: too coarse for this, so it is not done.) A stretch is *starved* when the
loop thread waited for a CPU for most of it and ran for little of it: neither a call
computing (which runs, and on a loaded machine waits too) nor a call sleeping in I/O
(which does neither).
Starved stretches are busy loop time, never a line's blocked time, and are not evidence
that their line blocks.
"""

from __future__ import annotations

import bisect
from array import array

from asgiprof.model import Profile, Resources

# Polls further apart than this around a stretch's end say nothing about it.
MAX_GAP_S = 0.05
# How often the resource monitor reads the main thread's schedstat (its default).
SCHED_POLL_S = 0.01


def times_measured(profile: Profile) -> bool:
    """Are sample times measured (py-spy's chrometrace chunks)? speedscope chunks carry
    order only: their samples are spread evenly over each chunk's span, good to ~0.1 s,
    far too coarse to line a 20 ms stretch up with 10 ms polls."""
    chunks = profile.sampling.chunks
    return bool(chunks) and all(".chrometrace." in c.file for c in chunks)


def sched_shares(
    resources: Resources, pid: int, tid: int, start_s: float, end_s: float
) -> tuple[float, float] | None:
    """(share of [start_s, end_s] on a CPU, share waiting for one), interpolated between
    polls; None without polls close around both ends."""
    series = resources.sched.get((pid, tid))
    if series is None or end_s <= start_s:
        return None
    times, run, wait = series
    a = _at(times, start_s)
    b = _at(times, end_s)
    if a is None or b is None:
        return None
    span = end_s - start_s
    run_s = _value(times, run, *a) - _value(times, run, *b)
    wait_s = _value(times, wait, *a) - _value(times, wait, *b)
    return min(1.0, max(0.0, -run_s / span)), min(1.0, max(0.0, -wait_s / span))


def _at(times: array[float], t: float) -> tuple[int, float] | None:
    """Index of the poll at or after `t` and `t`, when the polls around it are close."""
    i = bisect.bisect_left(times, t)
    if i == 0 or i >= len(times):
        return None
    if times[i] - times[i - 1] > MAX_GAP_S:
        return None
    return i, t


def _value(times: array[float], values: array[float], i: int, t: float) -> float:
    t0, t1 = times[i - 1], times[i]
    v0, v1 = values[i - 1], values[i]
    return v0 if t1 <= t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
