"""Torn samples: stacks py-spy read only in part (innermost frames, no loop below them).

With `--nonblocking` fast-changing Python code tears on about half of its samples
(json.dumps(indent=..., default=...) in the busy test app); greenlet stacks tear in any
mode. A torn sample counts as the code it continues, never as another line's time, and
is loop time even when no code fits it.
"""

from __future__ import annotations

import random

import pytest

from asgiprof.analyze import analyze
from asgiprof.model import Frame, Route
from tests.profile_builder import APP, IDLE, SITE, Builder, busy, source_reader

DUMPS = Frame("export", APP, 60)  # `body = json.dumps(big, indent=2, default=_default)`
HOOK = Frame("_default", APP, 70)  # `return {"v": repr(o)}`
SLEEP = Frame("get_user", APP, 12)  # `time.sleep(0.03)`
LIST = Frame("list_items", APP, 80)  # `rows = session.execute(q).all()`
ENCODE = Frame("JSONEncoder.encode", "/usr/lib/python3.11/json/encoder.py", 202)
ITER = [Frame("_iterencode", "/usr/lib/python3.11/json/encoder.py", 420 + i) for i in range(6)]
EXECUTE = Frame("Session.execute", f"{SITE}/sqlalchemy/orm/session.py", 2300)
ROUTES = (
    Route("GET", "/users/{user_id}", "main.get_user", APP, 10, 14, True),
    Route("GET", "/export", "main.export", APP, 58, 62, True),
    Route("GET", "/items", "main.list_items", APP, 78, 82, True),
)
SOURCE = source_reader(
    {
        (APP, 12): "time.sleep(0.03)",
        (APP, 60): "body = json.dumps(big, indent=2, default=_default)",
        (APP, 70): 'return {"v": repr(o)}',
        (APP, 80): "rows = session.execute(q).all()",
    }
)


def _encoding(rng: random.Random) -> tuple[Frame, ...]:
    """The encoder's frames at some instant: a few levels deep, maybe in the hook."""
    frames = (ENCODE, *rng.sample(ITER, rng.randint(1, 4)))
    return (*frames, HOOK) if rng.random() < 0.3 else frames


def test_torn_samples_of_a_cpu_block_count_as_its_time() -> None:
    # GIVEN five 300 ms json.dumps calls, about half of whose samples py-spy tore: only the
    # innermost frames, from one encoder frame up (a call may even start torn)
    rng = random.Random(7)
    b = Builder(routes=ROUTES)
    torn = 0
    for _ in range(5):
        b.add(1, IDLE, 20)
        for _ in range(30):
            frames = _encoding(rng)
            if rng.random() < 0.5:
                b.add(1, frames[rng.randint(1, len(frames) - 1) :], 1)
                torn += 1
            else:
                b.add(1, busy(DUMPS, *frames), 1)
    a = analyze(b.build(), read_line=SOURCE)
    # THEN the dumps line holds all 5 x 300 ms, torn samples included, as one call each
    assert torn > 50
    assert [(c.line, c.episodes) for c in a.culprits] == [(60, 5)]
    assert a.culprits[0].blocked_ms == pytest.approx(1500.0)
    assert a.loop.busy_ms == pytest.approx(1500.0)
    assert a.culprits[0].route == "GET /export"


def test_a_torn_sample_of_other_code_splits_a_line_instead_of_joining_it() -> None:
    # GIVEN two 30 ms sleeps of different requests, with between them a torn sample of a
    # database call the app makes elsewhere (seen whole on another route)
    b = Builder(routes=ROUTES)
    for _ in range(10):
        b.add(1, IDLE, 5)
        b.add(1, busy(LIST, EXECUTE), 1)
        b.add(1, busy(SLEEP), 3)
        b.add(1, (EXECUTE,), 1)
        b.add(1, busy(SLEEP), 3)
    a = analyze(b.build(), read_line=SOURCE)
    # THEN the sleep line gets its own 6 samples per round, not the database sample, and
    # the torn sample is loop time of the database call's line
    sleep = [c for c in a.culprits if c.line == 12]
    assert [c.episodes for c in sleep] == [20]
    assert sleep[0].blocked_ms == pytest.approx(600.0)
    assert a.loop.busy_ms == pytest.approx(10 * 80.0)


def test_a_torn_sample_that_fits_no_code_is_busy_but_no_lines_time() -> None:
    # GIVEN torn samples of frames no whole stack ever showed, between two sleeps
    b = Builder(routes=ROUTES)
    stray = Frame("mystery", f"{SITE}/somelib/core.py", 5)
    for _ in range(10):
        b.add(1, IDLE, 5)
        b.add(1, busy(SLEEP), 3)
        b.add(1, (stray,), 1)
        b.add(1, busy(SLEEP), 3)
    a = analyze(b.build(), read_line=SOURCE)
    # THEN it is loop time (a loop idle in its selector reads whole), the sleeps are two
    # calls each, and the stray sample is in neither
    assert a.loop.busy_ms == pytest.approx(700.0)
    assert a.loop.idle_ms == pytest.approx(500.0)
    assert [(c.line, c.episodes) for c in a.culprits] == [(12, 20)]
    assert a.culprits[0].blocked_ms == pytest.approx(600.0)


def test_a_torn_sample_counts_for_the_route_of_its_stand_in() -> None:
    # GIVEN a route whose samples are mostly torn, each continuing its whole stacks
    rng = random.Random(2)
    b = Builder(routes=ROUTES)
    for _ in range(20):
        b.add(1, IDLE, 3)
        b.add(1, busy(DUMPS, ENCODE, ITER[0]), 1)
        b.add(1, (ENCODE, ITER[0]), rng.randint(1, 2))
    a = analyze(b.build(), read_line=SOURCE)
    # THEN every busy sample is the route's loop time
    assert a.loop.busy_ms > 0
    export = next(r for r in a.routes if r.route == "GET /export")
    assert export.loop_ms == pytest.approx(a.loop.busy_ms)


def test_a_torn_sample_ending_in_unseen_lines_follows_its_outermost_function() -> None:
    # GIVEN a torn sample whose innermost frames no whole stack ends with (another line of
    # the encoder), inside a dumps call
    other_line = Frame("_iterencode", "/usr/lib/python3.11/json/encoder.py", 999)
    b = Builder(routes=ROUTES)
    for _ in range(6):
        b.add(1, IDLE, 10)
        b.add(1, busy(DUMPS, ENCODE, ITER[0]), 2)
        b.add(1, (ITER[1], other_line), 1)
        b.add(1, busy(DUMPS, ENCODE, ITER[1]), 2)
    a = analyze(b.build(), read_line=SOURCE)
    # THEN it belongs to the call: 6 calls of 50 ms
    assert [(c.line, c.episodes) for c in a.culprits] == [(60, 6)]
    assert a.culprits[0].blocked_ms == pytest.approx(300.0)


def test_a_torn_sample_fits_only_its_own_process_code() -> None:
    # GIVEN two workers of one app (same files): worker 1 runs json.dumps whole and torn,
    # worker 2 never runs it but has torn samples that end in the same encoder frames
    b = Builder(routes=ROUTES)
    for _ in range(6):
        b.add(1, IDLE, 10, pid=1)
        b.add(1, busy(DUMPS, ENCODE, ITER[0]), 2, pid=1)
        b.add(1, (ENCODE, ITER[0]), 1, pid=1)
        b.add(1, busy(DUMPS, ENCODE, ITER[0]), 2, pid=1)
        b.add(2, IDLE, 10, pid=2)
        b.add(2, busy(SLEEP), 3, pid=2)
        b.add(2, (ENCODE, ITER[0]), 1, pid=2)
    a = analyze(b.build(), read_line=SOURCE)
    # THEN worker 1's calls are 50 ms each, and worker 2's torn samples are no dumps time
    by_pid = {p.pid: p for p in a.processes}
    assert [(c.line, c.episodes, c.blocked_ms) for c in by_pid[1].culprits] == [(60, 6, 300.0)]
    assert all(c.line != 60 for c in by_pid[2].culprits)
