"""Issue 12's rules on hand-built profiles: what makes a run of samples a blocking call.

A saturated loop runs many short steps back to back; consecutive samples of different
requests often sit at one line. Only evidence that one synchronous call held the loop
(a plain-call line, one unchanging stack at an `await`, runs stickier than the line's
share predicts) makes a culprit.
"""

from __future__ import annotations

import random

import pytest

from asgiprof.analyze import analyze
from asgiprof.analyze.episodes import LineEvidence, is_await_line, is_blocking
from asgiprof.analyze.frames import app_roots, file_kind
from asgiprof.analyze.result import AnalysisParams
from asgiprof.model import Frame, Route, ThreadCpu
from tests.profile_builder import APP, IDLE, SITE, Builder, busy, source_reader

ENDPOINT_AWAIT = Frame("get_report", APP, 40)  # `up = await client.get(...)`
ENDPOINT_SLEEP = Frame("get_user", APP, 12)  # `time.sleep(0.05)`
ENDPOINT_DUMPS = Frame("export", APP, 60)  # `json.dumps(big, default=_default)`
DEFAULT_HOOK = Frame("_default", APP, 70)  # `return {"v": repr(o)}`
VALIDATE = Frame("list_items", APP, 80)  # `return [Item(**r) for r in rows]`
ROUTES = (
    Route("GET", "/users/{user_id}", "main.get_user", APP, 10, 14, True),
    Route("GET", "/report", "main.get_report", APP, 38, 42, True),
    Route("GET", "/export", "main.export", APP, 58, 62, True),
    Route("GET", "/items", "main.list_items", APP, 78, 82, True),
)
SOURCE = source_reader(
    {
        (APP, 12): "time.sleep(0.05)",
        (APP, 40): "up = (await client.get('/items/3')).json()",
        (APP, 60): "body = json.dumps(big, indent=2, default=_default)",
        (APP, 70): 'return {"v": repr(o)}',
        (APP, 80): "return [Item(**r) for r in rows]",
    }
)
HTTPX = [Frame(f"step{i}", f"{SITE}/httpcore/_async/connection.py", 100 + i) for i in range(12)]
JSON_ENCODER = Frame("_iterencode", "/usr/lib/python3.11/json/encoder.py", 431)


def test_many_short_steps_at_an_await_line_are_busy_not_a_culprit() -> None:
    # GIVEN a saturated loop: requests resume at one `await` line, each step in other
    # library code, with few idle samples between them
    rng = random.Random(5)
    b = Builder(routes=ROUTES)
    for _ in range(300):
        for _ in range(rng.randint(1, 4)):
            b.add(1, busy(ENDPOINT_AWAIT, rng.choice(HTTPX)), 1)
        b.add(1, IDLE, 1)
    a = analyze(b.build(), read_line=SOURCE)
    # THEN no culprit and nothing blocked: the loop was busy with short steps
    assert a.culprits == []
    assert a.loop.blocked_ms == 0
    assert any("saturated" in n for n in a.notes)


def test_one_unchanging_stack_at_an_await_line_still_blocks() -> None:
    # GIVEN a library coroutine that makes a sync call under the await (one stack, 100 ms):
    # a sync redis client hidden in an "async" helper library
    stuck = Frame("Connection.read_response", f"{SITE}/redis/connection.py", 77)
    b = Builder(routes=ROUTES)
    for _ in range(6):
        b.add(1, IDLE, 20)
        b.add(1, busy(ENDPOINT_AWAIT, stuck), 10)
    a = analyze(b.build(), read_line=SOURCE)
    # THEN the await line is the culprit with the whole time
    assert [(c.line, c.episodes) for c in a.culprits] == [(40, 6)]
    assert a.culprits[0].blocked_ms == pytest.approx(600.0)


def test_chance_pairs_at_a_plain_line_with_a_small_share_are_not_a_culprit() -> None:
    # GIVEN a line sampled now and then, by chance twice in a row as often as its share
    rng = random.Random(11)
    b = Builder(routes=ROUTES)
    other = [Frame(f"f{i}", f"{SITE}/starlette/routing.py", i) for i in range(20)]
    for _ in range(2000):
        if rng.random() < 0.2:
            b.add(1, busy(VALIDATE), 1)
        elif rng.random() < 0.3:
            b.add(1, IDLE, 1)
        else:
            b.add(1, busy(rng.choice(other)), 1)
    a = analyze(b.build(), read_line=SOURCE)
    assert [c.line for c in a.culprits] == []


def test_a_library_calling_back_into_user_code_keeps_the_outer_line() -> None:
    # GIVEN json.dumps(default=_default): samples flicker between the encoder and the hook
    rng = random.Random(3)
    b = Builder(routes=ROUTES)
    for _ in range(5):
        b.add(1, IDLE, 20)
        for _ in range(30):
            if rng.random() < 0.5:
                b.add(1, busy(ENDPOINT_DUMPS, JSON_ENCODER, DEFAULT_HOOK), 1)
            else:
                b.add(1, busy(ENDPOINT_DUMPS, JSON_ENCODER), 1)
    a = analyze(b.build(), read_line=SOURCE)
    # THEN the dumps line holds all 5 x 300 ms; the hook is not a culprit of its own
    assert [(c.line, c.episodes) for c in a.culprits] == [(60, 5)]
    assert a.culprits[0].blocked_ms == pytest.approx(1500.0)


def test_a_blocking_line_next_to_fast_traffic_gets_only_its_own_samples() -> None:
    # GIVEN a 50 ms sleep with other requests' framework steps right before and after it
    fast = [Frame(f"g{i}", f"{SITE}/starlette/routing.py", i) for i in range(5)]
    b = Builder(routes=ROUTES)
    for i in range(8):
        b.add(1, IDLE, 2)
        for k in range(2):
            b.add(1, busy(fast[(i + k) % 5]), 1)
        b.add(1, busy(ENDPOINT_SLEEP), 5)
        for k in range(3):
            b.add(1, busy(fast[(i + k + 2) % 5]), 1)
    a = analyze(b.build(), read_line=SOURCE)
    assert [(c.line, c.episodes) for c in a.culprits] == [(12, 8)]
    assert a.culprits[0].blocked_ms == pytest.approx(400.0)
    assert a.loop.blocked_ms == pytest.approx(400.0)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("await db.get(User, 1)", True),
        ("async with Session() as s:", True),
        ("async for row in stream:", True),
        ("rows = (await db.execute(q)).all()", True),
        ("time.sleep(0.1)", False),
        ("x = awaited_total + 1", False),
        ("self.await_count += 1", False),
        (None, False),
    ],
)
def test_await_lines_are_recognised(code: str | None, expected: bool) -> None:
    assert is_await_line(code) is expected


def evidence(runs: list[int], share: float) -> LineEvidence:
    ev = LineEvidence()
    for n in runs:
        ev.add(n, share)
    return ev


def test_stickiness_separates_a_block_from_chance() -> None:
    params = AnalysisParams()
    # 10 blocks of 3 samples at a line with a 30% share
    assert is_blocking(evidence([3] * 10, 0.3), True, params)
    # runs of 1-2 samples at the same share: about what chance gives
    assert not is_blocking(evidence([1, 1, 2, 1, 1, 1, 2, 1, 1, 1, 2, 1], 0.3), False, params)
    # a quick line the OS left waiting for a core twice (two long runs out of twelve)
    assert not is_blocking(evidence([1] * 10 + [4, 5], 0.02), True, params)
    # a plain-call line holding most of the loop blocks even without stickiness to show
    dominant = evidence([2] * 50, 0.9)
    assert is_blocking(dominant, False, params)
    assert not is_blocking(dominant, True, params)


def test_a_plain_line_followed_by_other_code_is_held_to_its_share() -> None:
    # GIVEN a plain call of 20-30 ms holding 39% of the loop, always followed by the next
    # blocking call of its request (two Django middlewares), never by itself: its stays
    # are its own, but chance expects 39% of its samples to stay anyway
    ev = evidence([2, 3, 2, 2, 3, 2, 2, 3, 2, 3], 0.39)
    assert 0.21 < ev.excess < AnalysisParams().min_stickiness
    # THEN it blocks: the bar is lowered by the share a plain line holds ...
    assert is_blocking(ev, False, AnalysisParams())
    # ... but not for an `await` line, whose runs are many steps of many requests
    assert not is_blocking(ev, True, AnalysisParams())


INSTALLED = f"{SITE}/shop/api/users.py"


def test_an_app_installed_in_site_packages_is_user_code() -> None:
    routes = (
        Route("GET", "/users/{user_id}", "shop.api.users.get_user", INSTALLED, 10, 14, True),
        Route(
            "GET",
            "/docs",
            "fastapi.applications.FastAPI.setup.<locals>.docs",
            f"{SITE}/fastapi/applications.py",
            1,
            5,
            True,
        ),
    )
    roots = app_roots(routes)
    assert roots == (f"{SITE}/shop",)
    assert file_kind(f"{SITE}/shop/db.py", roots) == "user"
    assert file_kind(f"{SITE}/fastapi/routing.py", roots) == "library"
    # WHEN its endpoint blocks
    b = Builder(routes=routes)
    for _ in range(3):
        b.add(1, IDLE, 10)
        b.add(1, busy(Frame("get_user", INSTALLED, 12)), 10)
    a = analyze(b.build())
    # THEN the line is found as if run from a checkout
    assert [(c.file, c.line, c.route) for c in a.culprits] == [
        (INSTALLED, 12, "GET /users/{user_id}")
    ]


def test_kind_is_fitted_from_loop_cpu_on_a_loop_that_never_idles() -> None:
    # GIVEN a saturated loop alternating a CPU line and a sleeping line, never idle, with
    # the loop thread's CPU polled every 50 ms as the resource monitor does
    cpu_line = Frame("get_report", APP, 40)
    b = Builder(routes=ROUTES)
    rng = random.Random(7)
    t, cpu, polls = 0.0, 0.0, [(0.0, 0.0)]
    for _ in range(120):
        line, on_cpu = (cpu_line, 1.0) if rng.random() < 0.5 else (ENDPOINT_SLEEP, 0.0)
        n = rng.randint(3, 8)
        b.add(1, busy(line), n)
        for _ in range(n):
            t += 0.01
            cpu += 0.01 * on_cpu
            polls.append((round(t, 6), cpu))
    profile = b.build()
    for t_s, cpu_s in polls[::5]:
        profile.resources.add_cpu(ThreadCpu(t_s=t_s, pid=1, tid=1, cpu_s=cpu_s))
    source = source_reader({(APP, 40): "total = sum(x * x for x in rows)", (APP, 12): "compute()"})
    a = analyze(profile, read_line=source)
    kinds = {c.line: c.kind for c in a.culprits}
    # THEN each line gets its measured kind, though no episode had idle around it
    assert kinds == {40: "cpu", 12: "io"}
    assert all("fitted" in c.kind_evidence for c in a.culprits)


def test_a_culprits_calls_come_from_the_stack_that_held_it_longest_overall() -> None:
    # GIVEN a sync driver call blocking six times in the driver's wait, and once, longest,
    # mostly in the ORM's Python code (descheduled there on a machine short of CPU)
    execute = Frame("do_execute", f"{SITE}/sqlalchemy/engine/default.py", 941)
    compile_ = Frame("SQLCompiler.process", f"{SITE}/sqlalchemy/sql/compiler.py", 950)
    b = Builder(routes=ROUTES)
    for _ in range(6):
        b.add(1, IDLE, 20)
        b.add(1, busy(ENDPOINT_SLEEP, execute), 4)
    b.add(1, IDLE, 20)
    b.add(1, busy(ENDPOINT_SLEEP, compile_), 5)
    b.add(1, busy(ENDPOINT_SLEEP, execute), 1)
    a = analyze(b.build(), read_line=SOURCE)
    # THEN its calls show the driver call, and the longest episode still sets max_ms
    (culprit,) = a.culprits
    assert any("do_execute" in call for call in culprit.calls), culprit.calls
    assert culprit.max_ms == pytest.approx(60.0)
