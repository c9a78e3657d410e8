"""Issue 12's "Done when", on a realistic busy app that measures its own truth.

tests/busy/app.py (async SQLAlchemy + aiosqlite, a shared httpx.AsyncClient to a local
upstream, pydantic models, a pure-ASGI middleware and a BaseHTTPMiddleware, an async
dependency shared by three routes) is profiled by `python -m asgiprof run|attach` under
saturating wrk load, on asyncio and uvloop (and once on asyncpg with a real PostgreSQL
instead of aiosqlite); tests/busy/truth.py records inside the app what
really ran on the loop and every planted blocking call (tests/busy/harness.py compares).

- CLEAN app: no culprit at an `await` / `async with` / `async for` line, culprits' total at
  most 3% of the sampled loop time, no "blocks the event loop" finding.
- PLANTED app (seven planted blocks, `# planted:` in the app): each found at its line and
  route; its blocked time within K sampling sd plus an allowance of the time the app
  measured for it inside the sampled chunks; its kind, what the call is (the sleep waits,
  the six others compute; the app's own CPU timing of them is printed beside it); no
  culprit at an await line beside them; with the access log (`run`, or `attach` reading
  the file the server logs to), every route that served requests in the routes table.
  How far the median error and each route's cost are from the oracle is what
  bench/busy_accuracy.py prints (issue 12's 10% median and 15% route targets are measured
  there, not bounded here).

Each test collects every unmet criterion before failing, and prints the full comparison.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.busy.harness import LineScore, Scenario, Score, run_scenario
from tests.postgres import INSTALL_HINT, find_pg_bin

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("needs_ptrace")]

LOAD_S = 10.0
MAX_CULPRIT_SHARE = 0.03
K_SD = 3.0  # sampling sd's a blocked time or route cost may stray
BLOCKED_ALLOWANCE = 0.05  # beyond sampling: timing of block edges between samples
MIN_ORACLE_BUSY = 0.5  # the load must keep the loop at least this busy (the oracle's view)

# Each mode and each loop once (bench/busy_accuracy.py runs every pairing), within CI's
# time budget.
CLEAN = [
    Scenario("clean", "run", "asyncio", load_s=LOAD_S),
    Scenario("clean", "attach", "uvloop", load_s=LOAD_S),
    # the same app on asyncpg and a real PostgreSQL (issue 12, item 2)
    Scenario("clean", "attach", "uvloop", load_s=LOAD_S, db="postgres"),
]
PLANTED = [
    Scenario("planted", "run", "asyncio", load_s=LOAD_S),
    Scenario("planted", "attach", "uvloop", load_s=LOAD_S),
]


def _busy_enough(score: Score) -> list[str]:
    if score.truth_utilization < MIN_ORACLE_BUSY:
        return [f"not saturated: the oracle saw the loop {score.truth_utilization:.0%} busy"]
    return []


@pytest.mark.timeout(240)
@pytest.mark.parametrize("scenario", CLEAN, ids=lambda s: s.name)
def test_clean_busy_app_gets_no_invented_culprits(scenario: Scenario, tmp_path: Path) -> None:
    if scenario.db == "postgres" and find_pg_bin() is None:
        pytest.skip(INSTALL_HINT)
    # GIVEN the clean busy app, WHEN asgiprof profiles it under saturating wrk load
    score = run_scenario(scenario, tmp_path / scenario.name)
    print(score.explain())
    assert score.requests >= 200, score.explain()
    assert not _busy_enough(score), score.explain()

    # THEN no line of the app's code is blamed for the loop's many short steps
    problems = [
        f"culprit at an await line: {c['file']}:{c['line']} {c['blocked_ms']:.0f} ms"
        for c in score.await_culprits
    ]
    if score.culprit_share > MAX_CULPRIT_SHARE:
        problems.append(
            f"culprits hold {score.culprit_share:.1%} of the sampled time "
            f"(<= {MAX_CULPRIT_SHARE:.0%} allowed)"
        )
    problems.extend(f"finding: {f}" for f in score.blocking_findings)
    assert not problems, "\n".join(problems) + "\n" + score.explain()


def _line_problems(s: LineScore) -> list[str]:
    if not s.found:
        return [f"{s.tag} (line {s.line}, {s.truth_ms:.0f} ms in {s.calls} calls) not found"]
    problems = []
    if not s.route_ok:
        problems.append(
            f"{s.tag}: route {s.culprit_route} {list(s.culprit_routes)}, truth {list(s.routes)}"
        )
    tolerance = K_SD * s.sd_ms + BLOCKED_ALLOWANCE * s.truth_ms
    if abs(s.blocked_ms - s.truth_ms) > tolerance:
        problems.append(
            f"{s.tag}: blocked {s.blocked_ms:.0f} ms vs truth {s.truth_ms:.0f} ms "
            f"({s.error:+.1%}, z {s.z:+.1f}; tolerance {tolerance:.0f} ms)"
        )
    if s.kind != s.truth_kind:
        problems.append(
            f"{s.tag}: kind {s.kind}, the call is {s.truth_kind} (the app measured "
            f"{s.cpu_ratio:.2f} of its wall time on a CPU, {s.runnable_ratio:.2f} runnable)"
        )
    return problems


@pytest.mark.timeout(240)
@pytest.mark.parametrize("scenario", PLANTED, ids=lambda s: s.name)
def test_planted_busy_app_every_block_found_with_its_measured_time(
    scenario: Scenario, tmp_path: Path
) -> None:
    # GIVEN the busy app with seven planted blocks, WHEN profiled under wrk
    score = run_scenario(scenario, tmp_path / scenario.name)
    print(score.explain())
    assert score.requests >= 50, score.explain()
    assert len(score.lines) == 7, score.explain()  # every planted line ran while sampled

    # THEN each is found at its line and route, with the time the app measured, and its
    # kind (the median error and each route's cost beside the oracle are measured by
    # bench/busy_accuracy.py: on a machine short of CPU py-spy falls behind while the loop
    # computes, which a test here cannot bound; see README)
    problems = [p for s in score.lines for p in _line_problems(s)]
    # ... no culprit at an await line beside them
    problems.extend(
        f"culprit at an await line: {c['file']}:{c['line']} {c['blocked_ms']:.0f} ms"
        for c in score.await_culprits
    )
    # ... and with the access log (run keeps the server's output; attach reads the file the
    # server logs to), every route that served requests is listed
    problems.extend(
        f"route {r.route} served {r.requests} requests but is not in the routes table"
        for r in score.routes
        if r.loop_ms is None
    )
    assert not problems, "\n".join(problems) + "\n" + score.explain()
