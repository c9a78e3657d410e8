"""GIL contention on hand-built profiles: which culprit-less episodes were the event loop
waiting for the GIL while pool workers computed, and the finding built from them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from asgiprof.analyze import analyze
from asgiprof.analyze.result import Analysis, AnalysisParams, Finding
from asgiprof.model import Frame, GilSamples, Route, ThreadCpu
from asgiprof.reporters.summary_json import summary
from tests.profile_builder import (
    APP,
    HANDLE,
    IDLE,
    LOOP_BASE,
    QUEUE_GET,
    RUN_ASGI,
    RUN_ONCE,
    SITE,
    STDLIB,
    WORKER,
    Builder,
)

BOOTSTRAP = Frame("Thread._bootstrap", f"{STDLIB}/threading.py", 1002)
# uvicorn writing a response: framework code, no line of the user's on the loop's stack.
SEND = Frame("RequestResponseCycle.send", f"{SITE}/uvicorn/protocols/http/h11_impl.py", 490)
FRAMEWORK_BUSY = (*LOOP_BASE, RUN_ONCE, HANDLE, RUN_ASGI, SEND)
CHECKSUM = Frame("checksum", APP, 43)
CHECKSUM_GENEXPR = Frame("checksum.<locals>.<genexpr>", APP, 43)
RESIZE = Frame("resize", APP, 52)
ROUTES = (
    Route("GET", "/reports/checksum", "main.checksum", APP, 40, 45, False),
    Route("GET", "/images/resize", "main.resize", APP, 50, 54, False),
)

LOOP, WORKER_A, WORKER_B = 1, 2, 3
CYCLE_IDLE, CYCLE_BUSY = 20, 5  # samples at 100 Hz: 200 ms idle, then a 50 ms episode
POLL_S = 0.05  # the resource monitor's CPU poll interval


def worker(*frames: Frame) -> tuple[Frame, ...]:
    return (BOOTSTRAP, WORKER, *frames)


def stalls_profile(cycles: int = 6, tail_idle: int = 0) -> Builder:
    """A loop idling 200 ms then running 50 ms of framework code, `cycles` times; worker A
    runs `checksum` throughout (mostly in its generator), worker B is idle."""
    b = Builder(routes=ROUTES)
    for _ in range(cycles):
        b.add(LOOP, IDLE, CYCLE_IDLE)
        b.add(LOOP, FRAMEWORK_BUSY, CYCLE_BUSY)
    b.add(LOOP, IDLE, CYCLE_IDLE + tail_idle)
    total = cycles * (CYCLE_IDLE + CYCLE_BUSY) + CYCLE_IDLE + tail_idle
    for _ in range(total // 10):
        b.add(WORKER_A, worker(CHECKSUM, CHECKSUM_GENEXPR), 8)
        b.add(WORKER_A, worker(CHECKSUM), 2)
    b.add(WORKER_B, worker(QUEUE_GET), total)
    return b


def loop_busy_at(t: float) -> bool:
    """True inside the episodes `stalls_profile` plants."""
    cycle_s = (CYCLE_IDLE + CYCLE_BUSY) / 100
    return (t % cycle_s) >= CYCLE_IDLE / 100 - 1e-9


def add_cpu(b: Builder, tid: int, rate: Callable[[float], float], end_s: float) -> None:
    """Cumulative CPU polls every POLL_S for thread `tid`, running `rate(t)` CPU s/s."""
    cpu = 0.0
    step = 0.001
    t = 0.0
    polls = round(end_s / POLL_S) + 2
    for k in range(polls):
        poll_t = k * POLL_S
        while t < poll_t - 1e-12:
            cpu += rate(t) * step
            t += step
        b.profile.resources.add_cpu(ThreadCpu(poll_t, 1, tid, cpu))


def add_gil(b: Builder, *, native: bool = False) -> None:
    """py-spy --gil windows over the whole profile: at each sample a worker runs Python it
    holds the GIL (never when `native`: in C code that releases it), the loop holds it
    whenever it is not idle, nobody while all wait."""
    profile = b.profile
    held: dict[tuple[int, int], dict[int, int]] = {}
    for tl in profile.threads:
        stacks: dict[int, int] = {}
        for _start, _dur, sid, n in tl.runs():
            frames = profile.stack_frames(sid)
            if tl.thread.tid == LOOP:
                holds = tuple(frames) != IDLE
            else:
                holds = not native and frames[-1] != QUEUE_GET
            if holds:
                stacks[sid] = stacks.get(sid, 0) + n
        held[(tl.thread.pid, tl.thread.tid)] = stacks
    profile.gil = GilSamples(windows=1, seconds=profile.sampling.duration_s, held=held)


def measured(
    b: Builder, loop_rate: float, worker_rate: float, *, gil: bool = True, native: bool = False
) -> Analysis:
    """Analyse `b` with CPU polls: the loop runs `loop_rate` of its busy time, worker A runs
    `worker_rate` CPU s/s throughout, worker B (idle) nothing; with GIL windows (`add_gil`)
    unless not `gil`."""
    profile = b.build()
    end = profile.sampling.duration_s
    add_cpu(b, LOOP, lambda t: loop_rate if loop_busy_at(t) else 0.0, end)
    add_cpu(b, WORKER_A, lambda t: worker_rate, end)
    add_cpu(b, WORKER_B, lambda t: 0.0, end)
    if gil:
        add_gil(b, native=native)
    return analyze(profile)


def gil_finding(a: Analysis) -> Finding | None:
    found = [f for f in a.findings if f.kind == "gil-contention"]
    assert len(found) <= 1
    return found[0] if found else None


def test_loop_waiting_while_workers_compute_is_gil_contention() -> None:
    # GIVEN six 50 ms framework-only episodes during which the loop ran 20% of the time
    # while a worker computed in `checksum` at 1 CPU-second per second
    a = measured(stalls_profile(), loop_rate=0.2, worker_rate=1.0)
    orphans = [e for e in a.episodes if e.culprit is None]
    assert len(orphans) == 6
    # THEN one gil-contention warning explains all six, naming the worker's line and route
    f = gil_finding(a)
    assert f is not None, a.findings
    assert f.severity == "warning"
    assert f.title == "threadpool CPU work starves the event loop of the GIL"
    assert f.subject == "GET /reports/checksum"
    assert f.pid == 1
    assert f.detail.startswith("6 blocking episode(s), 300 ms (18% of the event loop's time)")
    assert "ran only 20% of its busy time" in f.detail
    assert "1.0 CPU-seconds per second" in f.detail
    # ... the generator and its function on one line are one holder, named by the function
    assert f"checksum ({APP}:43) in GET /reports/checksum 100%" in f.detail
    assert "ProcessPoolExecutor" in f.advice and "releases the GIL" in f.advice
    # ... and the note about culprit-less episodes does not count them again
    assert not [n for n in a.notes if "no single line of your code" in n], a.notes
    # ... summary.json carries it like every finding
    (data,) = [x for x in summary(a)["findings"] if x["kind"] == "gil-contention"]
    assert data["subject"] == "GET /reports/checksum" and data["severity"] == "warning"


def test_without_cpu_measurements_there_is_no_finding() -> None:
    a = analyze(stalls_profile().build())
    assert len([e for e in a.episodes if e.culprit is None]) == 6
    assert gil_finding(a) is None
    (note,) = [n for n in a.notes if "no single line of your code" in n]
    assert note.startswith("6 blocking episode(s), 300 ms, had")


def test_a_loop_running_on_cpu_itself_is_not_waiting_for_the_gil() -> None:
    # GIVEN the same stalls, but the loop ran all of its busy time (framework CPU work)
    a = measured(stalls_profile(), loop_rate=1.0, worker_rate=1.0)
    # THEN it is not GIL contention: the episodes stay culprit-less, in the note
    assert gil_finding(a) is None
    assert any(n.startswith("6 blocking episode(s)") for n in a.notes), a.notes


def test_the_loop_ratio_bound_is_the_parameter() -> None:
    # 0.5 of its busy time: GIL at the default bound (0.85), not at a stricter one
    profile_a = measured(stalls_profile(), loop_rate=0.5, worker_rate=1.0)
    assert gil_finding(profile_a) is not None
    b = stalls_profile()
    strict = AnalysisParams(gil_loop_max_cpu_ratio=0.4)
    profile = b.build()
    end = profile.sampling.duration_s
    add_cpu(b, LOOP, lambda t: 0.5 if loop_busy_at(t) else 0.0, end)
    add_cpu(b, WORKER_A, lambda t: 1.0, end)
    add_gil(b)
    assert gil_finding(analyze(profile, strict)) is None


def test_sleeping_workers_do_not_hold_the_gil() -> None:
    # GIVEN a worker busy on its stack (a `def` route in time.sleep) but barely on CPU
    a = measured(stalls_profile(), loop_rate=0.2, worker_rate=0.1)
    assert gil_finding(a) is None


def test_workers_idle_on_their_stacks_are_not_blamed() -> None:
    # GIVEN worker CPU, but every worker waiting in its queue during the episodes
    b = Builder(routes=ROUTES)
    for _ in range(6):
        b.add(LOOP, IDLE, CYCLE_IDLE)
        b.add(LOOP, FRAMEWORK_BUSY, CYCLE_BUSY)
    b.add(LOOP, IDLE, CYCLE_IDLE)
    b.add(WORKER_A, worker(QUEUE_GET), 6 * (CYCLE_IDLE + CYCLE_BUSY) + CYCLE_IDLE)
    b.add(WORKER_B, worker(CHECKSUM), 1)  # a pool thread, so worker A is one too
    a = measured(b, loop_rate=0.2, worker_rate=1.0)
    assert gil_finding(a) is None


def test_one_short_stall_is_no_finding_and_a_small_share_is_info() -> None:
    # One 50 ms stall: below `one_off_factor` block thresholds (60 ms), no finding
    assert gil_finding(measured(stalls_profile(cycles=1), 0.2, 1.0)) is None
    # Two stalls (100 ms) in a 10 s profile: 1% of the loop's time, below 5%: info
    f = gil_finding(measured(stalls_profile(cycles=2, tail_idle=950), 0.2, 1.0))
    assert f is not None and f.severity == "info"
    assert f.detail.startswith("2 blocking episode(s), 100 ms (1% of the event loop's time)")


def test_worker_lines_are_ranked_by_samples_with_their_routes() -> None:
    # GIVEN two workers computing through the stalls: A in `checksum`, B in `resize`,
    # B only during the first three of six stalls
    b = Builder(routes=ROUTES)
    for _ in range(6):
        b.add(LOOP, IDLE, CYCLE_IDLE)
        b.add(LOOP, FRAMEWORK_BUSY, CYCLE_BUSY)
    b.add(LOOP, IDLE, CYCLE_IDLE)
    total = 6 * (CYCLE_IDLE + CYCLE_BUSY) + CYCLE_IDLE
    b.add(WORKER_A, worker(CHECKSUM), total)
    half = 3 * (CYCLE_IDLE + CYCLE_BUSY)
    b.add(WORKER_B, worker(RESIZE), half)
    b.add(WORKER_B, worker(QUEUE_GET), total - half)
    a = measured(b, loop_rate=0.2, worker_rate=1.0)
    f = gil_finding(a)
    assert f is not None
    # ... by their GIL samples: A held it 170 samples, B 75
    assert f"checksum ({APP}:43) in GET /reports/checksum 69%" in f.detail
    assert f"resize ({APP}:52) in GET /images/resize 31%" in f.detail
    assert f.detail.index("checksum (") < f.detail.index("resize (")


def test_episodes_with_a_culprit_line_are_not_gil_stalls() -> None:
    # GIVEN a user line on the loop in every episode (a culprit), workers computing
    b = Builder(routes=ROUTES)
    user_line = Frame("get_item", APP, 30)
    for _ in range(6):
        b.add(LOOP, IDLE, CYCLE_IDLE)
        b.add(LOOP, (*FRAMEWORK_BUSY[:-1], user_line), CYCLE_BUSY)
    b.add(LOOP, IDLE, CYCLE_IDLE)
    b.add(WORKER_A, worker(CHECKSUM), 6 * (CYCLE_IDLE + CYCLE_BUSY) + CYCLE_IDLE)
    a = measured(b, loop_rate=0.2, worker_rate=1.0)
    assert [c.line for c in a.culprits] == [30]
    assert gil_finding(a) is None


@pytest.mark.parametrize("worker_rate", [0.79, 0.81])
def test_the_worker_cpu_bound_is_the_parameter(worker_rate: float) -> None:
    a = measured(stalls_profile(), loop_rate=0.2, worker_rate=worker_rate)
    assert (gil_finding(a) is not None) == (worker_rate >= 0.8)


def test_the_loop_is_judged_over_all_stalls_not_one_by_one() -> None:
    # GIVEN stalls where the loop's measured CPU alternates, 100% and 20% of its busy time
    # (one episode's ratio is noise: sample times are estimates)
    b = stalls_profile()
    profile = b.build()
    end = profile.sampling.duration_s
    cycle_s = (CYCLE_IDLE + CYCLE_BUSY) / 100

    def loop_rate(t: float) -> float:
        return (1.0 if int(t / cycle_s) % 2 else 0.2) if loop_busy_at(t) else 0.0

    add_cpu(b, LOOP, loop_rate, end)
    add_cpu(b, WORKER_A, lambda t: 1.0, end)
    add_gil(b)
    f = gil_finding(analyze(profile))
    # THEN all six are GIL stalls: over them the loop ran 60% of its busy time
    assert f is not None
    assert f.detail.startswith("6 blocking episode(s), 300 ms")
    assert "ran only 60% of its busy time" in f.detail


def test_asyncio_executor_workers_hold_the_gil_too() -> None:
    # GIVEN the CPU work in the asyncio executor's worker (`asyncio.to_thread`), not anyio's
    executor = Frame("_worker", f"{STDLIB}/concurrent/futures/thread.py", 83)
    b = Builder(routes=ROUTES)
    for _ in range(6):
        b.add(LOOP, IDLE, CYCLE_IDLE)
        b.add(LOOP, FRAMEWORK_BUSY, CYCLE_BUSY)
    b.add(LOOP, IDLE, CYCLE_IDLE)
    b.add(WORKER_A, (BOOTSTRAP, executor, RESIZE), 6 * (CYCLE_IDLE + CYCLE_BUSY) + CYCLE_IDLE)
    f = gil_finding(measured(b, loop_rate=0.2, worker_rate=1.0))
    assert f is not None
    assert f"resize ({APP}:52) in GET /images/resize 100%" in f.detail


def test_without_gil_windows_there_is_no_finding() -> None:
    # GIVEN every CPU sign of GIL contention, but GIL holding never measured
    a = measured(stalls_profile(), loop_rate=0.2, worker_rate=1.0, gil=False)
    assert len([e for e in a.episodes if e.culprit is None]) == 6
    # THEN no finding: the episodes stay in the culprit-less note
    assert gil_finding(a) is None
    assert any(n.startswith("6 blocking episode(s)") for n in a.notes), a.notes


def test_workers_in_native_code_that_releases_the_gil_are_not_named() -> None:
    # GIVEN workers on CPU (argon2, bcrypt, pbkdf2: native code), the loop starved of CPU,
    # and the GIL windows showing only the loop holding the GIL
    a = measured(stalls_profile(), loop_rate=0.2, worker_rate=1.0, native=True)
    # THEN no finding names the worker's line
    assert gil_finding(a) is None


def test_the_finding_states_the_measured_gil_share() -> None:
    f = gil_finding(measured(stalls_profile(), loop_rate=0.2, worker_rate=1.0))
    assert f is not None
    # worker A holds the GIL at each of its 170 samples, the loop at its 30 busy ones
    assert "held the GIL in 85% of 200 GIL samples (py-spy --gil)" in f.detail
