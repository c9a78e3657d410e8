"""Blocked time from measured sample times (py-spy's chrometrace chunks, asked for with
ASGIPROF_PYSPY_FORMAT=chrometrace for a server that is one process) on a CPU-starved
machine (issue 12).

With speedscope chunks, whose samples carry no times, each chunk's span was spread evenly
over its samples; when the machine is short of CPU, py-spy falls behind while the target
computes, so CPU blocks read low and sleeps high (bench/README.md has the numbers). Here
the busy app with its planted blocks (tests/busy/) runs beside a process spinning on the
CPU, and each planted line's blocked time must match what the app timed itself, within
the sampling error of the samples taken.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from asgiprof.record.sampler import FORMAT_ENV
from tests.busy.harness import LineScore, Scenario, run_scenario

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("needs_ptrace")]

K_SD = 3.0  # as tests/integration/test_busy_apps.py
BLOCKED_ALLOWANCE = 0.05


def _off(s: LineScore) -> str | None:
    if not s.found:
        return f"{s.tag} (line {s.line}, {s.truth_ms:.0f} ms in {s.calls} calls) not found"
    tolerance = K_SD * s.sd_ms + BLOCKED_ALLOWANCE * s.truth_ms
    if abs(s.blocked_ms - s.truth_ms) <= tolerance:
        return None
    return (
        f"{s.tag}: blocked {s.blocked_ms:.0f} ms vs truth {s.truth_ms:.0f} ms "
        f"({s.error:+.1%}, z {s.z:+.1f}; tolerance {tolerance:.0f} ms)"
    )


@pytest.mark.timeout(240)
def test_blocked_time_matches_the_app_beside_a_cpu_hog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN chrometrace chunks asked for, and a process spinning on the CPU (bounded by
    # `timeout`, killed by its PID)
    monkeypatch.setenv(FORMAT_ENV, "chrometrace")
    hog = subprocess.Popen(
        ["timeout", "200", sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL
    )
    try:
        # WHEN the busy app with seven planted blocks is profiled under wrk beside it
        scenario = Scenario("planted", "run", "asyncio", load_s=10.0)
        score = run_scenario(scenario, tmp_path / scenario.name)
    finally:
        hog.terminate()
        hog.wait(10)
    print(score.explain())
    # THEN py-spy wrote chrometrace chunks (measured sample times)
    raw = score.out / "raw"
    assert list(raw.glob("chunk-*.chrometrace.json"))
    assert not list(raw.glob("chunk-*.speedscope.json"))
    # ... and every planted line (CPU work and a sleep) has the time the app measured
    assert score.requests >= 30 and len(score.lines) == 7, score.explain()
    problems = [p for p in map(_off, score.lines) if p]
    assert not problems, "\n".join(problems) + "\n" + score.explain()
