"""Stretches in which the loop thread waited for a CPU (analyze/starved.py): the machine's
doing, not their line's. The main thread's schedstat, polled every 10 ms, tells them from a
call that computes (runs, and waits too on a loaded machine) or sleeps (does neither)."""

from __future__ import annotations

from array import array
from dataclasses import replace

import pytest

from asgiprof.analyze import analyze
from asgiprof.analyze.starved import sched_shares
from asgiprof.model import Chunk, Frame, Profile, Route
from tests.profile_builder import APP, IDLE, SITE, Builder, busy, source_reader

SELECT = Frame("category_stats", APP, 20)  # `select(func.count(Item.id)).where(...)`
BUILD = Frame("Select.where", f"{SITE}/sqlalchemy/sql/selectable.py", 5300)
HASH = Frame("login", APP, 30)  # `digest = hashlib.pbkdf2_hmac(...)`
ROUTES = (
    Route("GET", "/categories/{name}", "main.category_stats", APP, 18, 22, True),
    Route("POST", "/login", "main.login", APP, 28, 32, True),
)
SOURCE = source_reader(
    {
        (APP, 20): "select(func.count(Item.id)).where(Item.category == name)",
        (APP, 30): 'digest = hashlib.pbkdf2_hmac("sha256", pw, salt, 200_000)',
    }
)
POLL_S = 0.01


def _profile() -> tuple[Profile, list[tuple[float, float]], list[tuple[float, float]]]:
    """Ten 30 ms stretches at the quick select line (the OS left the loop waiting in them)
    and ten 60 ms pbkdf2 calls, with idle between; their (start, end) windows."""
    b = Builder(routes=ROUTES)
    waited: list[tuple[float, float]] = []
    hashing: list[tuple[float, float]] = []
    for _ in range(10):
        b.add(1, IDLE, 10)
        start = b.clock(1)
        b.add(1, busy(SELECT, BUILD), 3)
        waited.append((start, b.clock(1)))
        b.add(1, IDLE, 10)
        start = b.clock(1)
        b.add(1, busy(HASH), 6)
        hashing.append((start, b.clock(1)))
    return _chunked(b.build(), "chrometrace"), waited, hashing


def _chunked(profile: Profile, fmt: str) -> Profile:
    """The profile as recorded in one chunk of py-spy's `fmt` format."""
    end = profile.sampling.duration_s
    chunk = Chunk(f"raw/chunk-0001.{fmt}.json", 0.0, end, profile.sampling.samples, 0)
    profile.sampling = replace(profile.sampling, chunks=(chunk,))
    return profile


def _schedstat(
    profile: Profile, waited: list[tuple[float, float]], hashing: list[tuple[float, float]]
) -> None:
    """The loop thread's polls: in the select stretches 90% waiting for a CPU, 5% on it;
    in the pbkdf2 calls (a loaded machine) 45% on a CPU and 50% waiting; idle otherwise."""
    end = profile.sampling.duration_s
    times, run, wait = array("d"), array("d"), array("d")
    r = w = 0.0
    t = 0.0
    while t <= end + POLL_S:
        times.append(t)
        run.append(r)
        wait.append(w)
        mid = t + POLL_S / 2
        if any(a <= mid < b for a, b in waited):
            r, w = r + 0.05 * POLL_S, w + 0.9 * POLL_S
        elif any(a <= mid < b for a, b in hashing):
            r, w = r + 0.45 * POLL_S, w + 0.5 * POLL_S
        t = round(t + POLL_S, 6)
    profile.resources.sched[(1, 1)] = (times, run, wait)


def test_schedstat_shares_of_a_window() -> None:
    profile, waited, hashing = _profile()
    _schedstat(profile, waited, hashing)
    shares = sched_shares(profile.resources, 1, 1, *waited[0])
    assert shares == pytest.approx((0.05, 0.9), abs=0.02)
    assert sched_shares(profile.resources, 1, 1, -1.0, 0.0) is None  # before the polls
    assert sched_shares(profile.resources, 1, 2, *waited[0]) is None  # another thread


def test_a_quick_line_caught_waiting_for_a_cpu_is_not_a_culprit() -> None:
    # GIVEN the select line held the loop 10 x 30 ms, but the loop thread was waiting for a
    # CPU through those stretches, and the pbkdf2 line computed (and waited) 10 x 60 ms
    profile, waited, hashing = _profile()
    _schedstat(profile, waited, hashing)
    a = analyze(profile, read_line=SOURCE)
    # THEN only the pbkdf2 line is a culprit, with all its time; the waits are busy time,
    # and a note says the machine was short of CPU
    assert [(c.line, c.episodes) for c in a.culprits] == [(30, 10)]
    assert a.culprits[0].blocked_ms == pytest.approx(600.0)
    assert a.loop.blocked_ms == pytest.approx(600.0)
    assert a.loop.busy_ms == pytest.approx(900.0)
    (note,) = [n for n in a.notes if "short of CPU" in n]
    assert "10 stretch(es), 300 ms" in note


def test_without_schedstat_polls_nothing_tells_the_wait_from_a_block() -> None:
    # GIVEN the same samples without the polls (an old profile, a system without schedstat)
    profile, _, _ = _profile()
    a = analyze(profile, read_line=SOURCE)
    # THEN the select line reads as blocking, as before
    assert {c.line for c in a.culprits} == {20, 30}
    assert not [n for n in a.notes if "short of CPU" in n]


def test_speedscope_sample_times_are_too_coarse_to_line_the_polls_up_with() -> None:
    # GIVEN the polls, but samples from speedscope chunks (placed evenly over each chunk's
    # span, good to ~0.1 s, not to the 10 ms of a poll)
    profile, waited, hashing = _profile()
    _schedstat(profile, waited, hashing)
    a = analyze(_chunked(profile, "speedscope"), read_line=SOURCE)
    # THEN the polls are not used: no stretch is set aside, no kind measured from them
    assert {c.line for c in a.culprits} == {20, 30}
    assert not [n for n in a.notes if "short of CPU" in n]
    assert not any("scheduler times" in c.kind_evidence for c in a.culprits)


def test_the_kind_of_a_culprit_from_its_scheduler_times() -> None:
    # GIVEN measured sample times and polls: the pbkdf2 calls on a CPU or waiting for one
    # 95% of their time
    profile, waited, hashing = _profile()
    _schedstat(profile, waited, hashing)
    a = analyze(profile, read_line=SOURCE)
    # THEN it is cpu, measured inside its episodes (no idle margins needed)
    (c,) = a.culprits
    assert c.kind == "cpu"
    assert c.cpu_ratio == pytest.approx(0.95, abs=0.03)
    assert "scheduler times" in c.kind_evidence
