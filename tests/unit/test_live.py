"""The live view's per-chunk reading (asgiprof/live.py) on a small real-format chunk."""

from __future__ import annotations

import pytest

from asgiprof.live import NO_ROUTE, chunk_stats, sparkline
from tests.pyspy_chunks import APP, BLOCKED, IDLE, ROUTES, SHORT
from tests.pyspy_chunks import loop_chunk as chunk


def test_a_chunk_gives_loop_busy_blocked_time_lines_and_routes() -> None:
    # 100 instants at 100 Hz over 1 s: 50 idle, 30 blocked in a row, 1 short busy, 19 idle;
    # a worker thread runs /sync for 40 of them
    loop = [IDLE] * 50 + [BLOCKED] * 30 + [SHORT] + [IDLE] * 19
    worker = [[7, 9]] * 60 + [[7, 8]] * 40
    stats = chunk_stats(chunk(loop, worker), 7, ROUTES, 100, 1.0, threshold_s=0.02)
    assert stats.loop_s == pytest.approx(1.0)
    assert stats.busy_s == pytest.approx(0.31)
    assert stats.blocked_s == pytest.approx(0.30)  # the 10 ms stretch is not a block
    assert stats.lines == {(APP, 30, "sleep_a_bit", "GET /users/{user_id}"): pytest.approx(0.3)}
    assert stats.routes == {"GET /users/{user_id}": pytest.approx(0.31)}
    assert stats.threadpool_s == pytest.approx(0.4)


def test_torn_loop_samples_are_busy_time_as_in_the_analysis() -> None:
    # GIVEN a loop whose busy samples py-spy read only in part for 20 instants (the app's
    # frames without the thread and loop below them: a greenlet, or --nonblocking racing)
    torn = [5, 6]
    loop = [IDLE] * 50 + [torn] * 20 + [SHORT, IDLE] * 10 + [IDLE] * 10
    stats = chunk_stats(chunk(loop, [[7, 9]] * 100), 7, ROUTES, 100, 1.0, threshold_s=0.02)
    # THEN they are busy loop time (as analyze/torn.py counts them), with no route or line
    assert stats.loop_s == pytest.approx(1.0)
    assert stats.busy_s == pytest.approx(0.30)
    assert stats.routes == {
        "GET /users/{user_id}": pytest.approx(0.1),
        NO_ROUTE: pytest.approx(0.2),
    }
    assert stats.lines == {}


def test_sparkline_has_one_bar_per_value_and_keeps_the_latest() -> None:
    assert sparkline([0.0, 0.5, 1.0]) == "▁▅█"
    assert len(sparkline([0.2] * 100)) == 30
