"""Issue 16: py-spy dying or hanging never leaves the target stopped.

A real uvicorn server under light load, asgiprof's real sampler running real py-spy; the
test kills py-spy (SIGKILL) at random moments, or freezes it (SIGSTOP) while it holds a
target thread, and checks that the server answers within 1 s every time.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from asgiprof import store
from asgiprof.record.loadgen import start_load_thread
from asgiprof.record.sampler import Sampler, SamplerConfig
from asgiprof.record.watchdog import Watchdog, task_states, tracer_of
from tests.servers import ServerFactory

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("needs_ptrace")]

KILLS = 50
ANSWER_WITHIN_S = 1.0
# A high rate keeps py-spy holding the target's threads a larger share of the time, so
# that more of the random moments fall while it holds them.
RATE_HZ = 1000


def _wait_pyspy(sampler: Sampler, timeout_s: float = 10.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        pids = sampler.pyspy_pids()
        if pids:
            return pids[-1]
        assert time.monotonic() < deadline, "the sampler started no py-spy"
        assert sampler.running, f"the sampler stopped: {sampler.error}"
        time.sleep(0.005)


def _answer_time(url: str) -> float:
    """Seconds until GET /healthy answers (the assertion fails past ANSWER_WITHIN_S)."""
    t = time.monotonic()
    try:
        response = httpx.get(f"{url}/healthy", timeout=ANSWER_WITHIN_S)
    except httpx.TimeoutException:
        raise AssertionError(f"the target did not answer within {ANSWER_WITHIN_S} s") from None
    assert response.status_code == 200
    return time.monotonic() - t


def _held(pid: int, tracer: int) -> list[int]:
    """Threads of `pid` in a tracing stop held by `tracer`."""
    return [
        tid for tid, s in task_states(pid).items() if s == "t" and tracer_of(pid, tid) == tracer
    ]


def _assert_runs(pid: int) -> None:
    deadline = time.monotonic() + ANSWER_WITHIN_S
    while True:
        stopped = {tid: s for tid, s in task_states(pid).items() if s in "tT"}
        if not stopped:
            return
        assert time.monotonic() < deadline, f"threads left stopped: {stopped}"
        time.sleep(0.02)


@pytest.mark.timeout(120)
def test_killing_pyspy_at_random_moments_never_leaves_the_target_stopped(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    # GIVEN a server under light load, sampled by asgiprof's sampler
    server = server_factory("blocking_sleep")
    load = start_load_thread(server.url, ["/healthy", "/users/1"], duration_s=90, concurrency=2)
    out = store.prepare_out_dir(tmp_path / "out")
    sampler = Sampler(
        server.pid,
        out,
        time.time(),
        SamplerConfig(rate_hz=RATE_HZ, chunk_s=2, max_failures=KILLS + 10),
    )
    rng = random.Random(16)
    answers: list[float] = []
    holding = 0
    sampler.start()
    try:
        for _ in range(KILLS):
            # WHEN py-spy is killed at a random moment: attaching, sampling, mid-sample
            pyspy = _wait_pyspy(sampler)
            time.sleep(rng.uniform(0.0, 0.5))
            holding += bool(_held(server.pid, pyspy))
            try:
                os.kill(pyspy, signal.SIGKILL)
            except ProcessLookupError:
                pass
            # THEN the target answers within 1 s, every time
            answers.append(_answer_time(server.url))
    finally:
        sampler.stop()
        assert sampler.join(30), "the sampler did not end"
        load.stop()
        load.join(15)
    _assert_runs(server.pid)
    assert len(answers) == KILLS
    assert sampler.failed_runs >= KILLS // 2  # the kills did land on running py-spys
    print(
        f"\n{KILLS}/{KILLS} answered within {ANSWER_WITHIN_S} s; slowest "
        f"{max(answers) * 1000:.0f} ms; {holding} kills while py-spy held a thread; "
        f"watchdog: {sampler.watchdog.report}"
    )


@pytest.mark.timeout(120)
def test_a_pyspy_that_hangs_holding_a_thread_is_killed_and_the_target_runs_on(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    # GIVEN a server under light load, sampled by asgiprof's sampler at a high rate
    server = server_factory("blocking_sleep")
    load = start_load_thread(server.url, ["/healthy"], duration_s=90, concurrency=2)
    out = store.prepare_out_dir(tmp_path / "out")
    sampler = Sampler(
        server.pid, out, time.time(), SamplerConfig(rate_hz=RATE_HZ, chunk_s=2, max_failures=10)
    )
    hangs = 0
    sampler.start()
    try:
        deadline = time.monotonic() + 60
        while hangs < 3 and time.monotonic() < deadline:
            # WHEN py-spy freezes (SIGSTOP) at the moment it holds a target thread
            pyspy = _wait_pyspy(sampler)
            try:
                if time.time() - psutil.Process(pyspy).create_time() < 0.5:
                    time.sleep(0.05)  # still attaching: freeze it once it samples
                    continue
                os.kill(pyspy, signal.SIGSTOP)
            except (ProcessLookupError, psutil.NoSuchProcess):
                continue
            # A signal lands asynchronously: look at what it holds once all of it stopped.
            frozen_by = time.monotonic() + 0.5
            while time.monotonic() < frozen_by and set(task_states(pyspy).values()) - {"T"}:
                time.sleep(0.001)
            if not _held(server.pid, pyspy):
                try:
                    os.kill(pyspy, signal.SIGCONT)  # it held nothing: try another moment
                except ProcessLookupError:
                    pass  # the sampler ended it meanwhile (it was handing over)
                time.sleep(0.003)
                continue
            hangs += 1
            # THEN the watchdog kills it and the target answers within 1 s
            assert _answer_time(server.url) < ANSWER_WITHIN_S
            _assert_runs(server.pid)
    finally:
        sampler.stop()
        assert sampler.join(30), "the sampler did not end"
        load.stop()
        load.join(15)
    assert hangs == 3, "py-spy was never caught holding a thread"
    # a frozen py-spy cannot obey SIGINT: the watchdog stopped, then killed, each of them
    assert sampler.watchdog.report.holds >= 3, sampler.watchdog.report
    print(f"\n{hangs}/3 frozen py-spys ended by the watchdog: {sampler.watchdog.report}")


def _state_of(pid: int, timeout_s: float, want: str) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        state = task_states(pid).get(pid, "?")
        if state == want or time.monotonic() >= deadline:
            return state
        time.sleep(0.01)


@pytest.mark.timeout(60)
def test_a_stop_left_behind_is_resumed_but_not_one_the_user_made_before() -> None:
    # GIVEN two real processes: one the user stopped before sampling, one running
    before = subprocess.Popen(["sleep", "60"])
    during = subprocess.Popen(["sleep", "60"])
    try:
        os.kill(before.pid, signal.SIGSTOP)
        assert _state_of(before.pid, 5, "T") == "T"
        dogs = [Watchdog(p, lambda: [], lambda pid, kill: None) for p in (before.pid, during.pid)]
        # WHEN the running one is left in a job-control stop while sampling
        os.kill(during.pid, signal.SIGCONT)
        os.kill(during.pid, signal.SIGSTOP)
        assert _state_of(during.pid, 5, "T") == "T"
        for dog in dogs:
            dog.start()
            dog.stop()  # sampling ended: the last look resumes what sampling left stopped
        # THEN it runs again, and the user's own stop is left alone
        assert _state_of(during.pid, 5, "S") == "S"
        assert _state_of(before.pid, 0.5, "S") == "T"
        assert dogs[1].report.resumed == 1 and dogs[0].report.resumed == 0
    finally:
        for proc in (before, during):
            proc.kill()
            proc.wait(10)
