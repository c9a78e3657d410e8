"""--scout-rate: the signal (analyze/scout.py `held_lines`), the decisions (asgiprof/scout.py
`ScoutPolicy`), the sampler following them within --max-pause, and the report's one note."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asgiprof import store
from asgiprof.analyze.scout import Line, held_lines
from asgiprof.chunk_probe import read_chunk
from asgiprof.model import Chunk, RateChange, RouteTable, SamplingInfo
from asgiprof.record.sampler import Sampler, SamplerConfig, _Run
from asgiprof.scout import QUIET_CHUNKS, ScoutPolicy
from tests.pyspy_chunks import APP, BLOCKED, IDLE, ROUTES, SHORT, loop_chunk, profile_dir

OTHER = [0, 1, 2, 4, 5, 6][:4] + [8]  # a short step on another line (sync_route's frame)
# A healthy loop: short steps on two lines between idle waits, never the same line at
# samples 5 apart (the spacing of 20 Hz at 100 Hz).
HEALTHY = [SHORT, IDLE, OTHER, IDLE] * 50
WORKER = [[7, 9]] * 200


def _held(loop: list[list[int]], rate_hz: float = 100) -> tuple[float, Line | None]:
    """held_lines on a chunk of pid 7 whose loop thread took `loop`."""
    chunk = read_chunk(loop_chunk(loop, WORKER[: len(loop)]), 7, rate_hz, ROUTES)
    runs = [(t.stacks, t.counts) for t in chunk.threads]
    held = held_lines(chunk.profile, runs, rate_hz, 20)
    return held.share, held.line


def test_a_healthy_busy_loop_holds_no_line() -> None:
    assert _held(HEALTHY) == (0.0, None)
    assert _held([IDLE] * 200) == (0.0, None)  # an idle loop holds its select(), not a line


def test_a_stack_with_no_user_code_holds_no_line() -> None:
    # a framework's hot line, held across samples by chance on a tiny saturated app, is not
    # what the scout speeds up for (the user's blocking lines are)
    assert _held([[0, 1, 2, 4]] * 200) == (0.0, None)


def test_a_blocked_stretch_is_counted_at_the_scouts_spacing() -> None:
    # GIVEN 2 s at 100 Hz with one 300 ms block (30 samples of one stack) among healthy steps
    loop = HEALTHY[:100] + [BLOCKED] * 30 + HEALTHY[:70]
    share, line = _held(loop)
    # THEN 25 of the 195 pairs of samples 5 apart (20 Hz's spacing) hold its line
    assert share == pytest.approx(25 / 195)
    assert line == (APP, 30)
    # ... and the same block sampled at 20 Hz (6 samples, 5 consecutive pairs) reads the same
    slow = [HEALTHY[i] for i in range(0, 100, 5)] + [BLOCKED] * 6 + [HEALTHY[0], IDLE] * 7
    share, line = _held(slow, rate_hz=20)
    assert share == pytest.approx(5 / 39) and line == (APP, 30)


def _chunk(out: Path, index: int, loop: list[list[int]], rate_hz: int) -> None:
    path = store.chunk_path(out, index, "speedscope")
    path.write_bytes(loop_chunk(loop, WORKER[: len(loop)]))
    start = 2.0 * (index - 1)
    store.write_chunk_meta(
        out, index, start_s=start, end_s=start + 2.0, samples=len(loop), errors=0, rc=0,
        rate_hz=rate_hz,
    )  # fmt: skip


def _out(tmp_path: Path) -> Path:
    return profile_dir(tmp_path / "out", SamplingInfo(100, 1000.0, 2.0, 0, 0, scout_hz=20))


def test_the_policy_speeds_up_on_a_held_line_and_scouts_again_after_quiet_chunks(
    tmp_path: Path,
) -> None:
    out = _out(tmp_path)
    policy = ScoutPolicy(out, 7, 100, 20)
    # GIVEN a scout chunk (20 Hz, 40 samples) on a healthy loop: no change
    _chunk(out, 1, [SHORT, IDLE, OTHER, IDLE] * 10, 20)
    assert policy(1) is None
    # WHEN a scout chunk shows the loop held on one line for 0.5 s (10 samples)
    _chunk(out, 2, [SHORT, IDLE] * 10 + [BLOCKED] * 10 + [OTHER, IDLE] * 5, 20)
    decision = policy(2)
    # THEN the full rate, naming the line
    assert decision is not None and decision[0] == 100
    assert "app.py:30" in decision[1]
    # ... kept while chunks at the full rate still hold it, and QUIET_CHUNKS quiet ones later
    # the scout rate again
    _chunk(out, 3, HEALTHY[:100] + [BLOCKED] * 40 + HEALTHY[:60], 100)
    assert policy(3) is None
    for index in range(4, 4 + QUIET_CHUNKS):
        _chunk(out, index, HEALTHY, 100)
        decision = policy(index)
    assert decision is not None and decision[0] == 20 and "no line held" in decision[1]
    # An unreadable chunk changes nothing
    store.chunk_path(out, 9, "speedscope").write_bytes(b"{not json")
    store.write_chunk_meta(out, 9, start_s=16.0, end_s=18.0, samples=1, errors=0, rc=0)
    assert policy(9) is None and policy.problems == 1


def test_the_sampler_follows_the_policy_within_the_pause_limit(tmp_path: Path) -> None:
    # GIVEN a sampler asked for 100 Hz, scouting at 20 Hz, with a 3% pause limit
    sampler = Sampler(
        os.getpid(), tmp_path, time.time(), SamplerConfig(max_pause=0.03, scout_hz=20)
    )
    assert sampler.rate_hz == 20
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    # ... whose scout chunk held the target 1% of 2 s (so ~60 Hz fits the limit)
    sampler._adapt_rate(_Run(1, proc, tmp_path / "log", 20, 0.0), 40, 2.0, 0.0, 0.02)
    assert sampler.rate_hz == 20  # a clean chunk never raises past the scout's aim
    # WHEN the policy asks for the full rate, then for the scout rate again
    sampler._aim(100, "held")
    assert sampler.rate_hz == 60
    sampler._aim(20, "quiet")
    # THEN each change is marked as the scout's
    assert sampler.rate_hz == 20
    assert [(c.from_hz, c.to_hz, c.scout) for c in sampler.rate_changes] == [
        (20, 60, True),
        (60, 20, True),
    ]


def test_the_report_sums_the_scouts_changes_up_in_one_note() -> None:
    chunks = tuple(
        # as loaded: each span starts after the 0.1 s it overlapped the chunk before
        Chunk(
            f"raw/{i}",
            2.0 * i,
            2.0 * i + 2,
            10,
            0,
            rate_hz=100 if 2 <= i < 5 else 20,
            overlap_s=0.1,
        )
        for i in range(8)
    )
    changes = (
        RateChange(3.1, 20, 100, "the loop held app.py:30 across samples 50 ms apart", True),
        RateChange(9.2, 100, 20, "no line held for 3 chunks", True),
    )
    sampling = SamplingInfo(100, 0.0, 16.0, 80, 0, chunks, rate_changes=changes, scout_hz=20)
    said = store.sampling_problems(sampling)
    assert not [n for n in said if n.startswith("the sampler")], said  # no note per change
    notes = [n for n in said if "--scout-rate" in n]
    assert len(notes) == 1, said
    assert "--scout-rate 20" in notes[0] and "faster for 6.0 s of 16.0 s" in notes[0]
    assert "first at 3.1 s: the loop held app.py:30" in notes[0]


def test_routes_are_read_once_the_table_is_written(tmp_path: Path) -> None:
    out = _out(tmp_path)
    routes = store.RoutesSoFar(out)
    assert routes.table().routes == ()
    store.write_routes(out, ROUTES)
    assert routes.table() == ROUTES
    assert isinstance(routes.table(), RouteTable)
