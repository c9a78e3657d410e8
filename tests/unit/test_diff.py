"""`asgiprof diff`: the two-rate test, comparisons of hand-built analyses, diff.html."""

from __future__ import annotations

import math
import random
import re
from dataclasses import replace
from typing import Any

import orjson
import pytest

from asgiprof.analyze import analyze
from asgiprof.analyze.result import Analysis
from asgiprof.diff import (
    Figure,
    IncomparableRunsError,
    batch_dispersion,
    compare,
    route_requests,
    two_rate_test,
)
from asgiprof.model import Frame, LoadInfo, Route
from asgiprof.reporters.diff_html import PAYLOAD_ELEMENT_ID, diff_payload, render_diff_html
from asgiprof.reporters.diff_text import diff_json, diff_lines
from tests.html_pages import PageParts, csp_hash
from tests.profile_builder import APP, IDLE, ONE_EPISODE_IS_ENOUGH, Builder, busy, source_reader

USERS = Frame("get_user", APP, 12)
REPORT = Frame("report", APP, 40)
ROUTES = (
    Route("GET", "/users/{user_id}", "main.get_user", APP, 10, 14, True),
    Route("GET", "/report", "main.report", APP, 38, 42, True),
)
SOURCE = {(APP, 12): "time.sleep(0.05)", (APP, 40): "sum(i * i for i in range(N))"}


def _analysis(
    cycles: int = 40,
    users: int = 8,
    report: int = 5,
    rate_hz: int = 100,
    users_frame: Frame = USERS,
) -> Analysis:
    """`cycles` times: idle, a `users`-sample block at USERS, idle, a `report`-sample one."""
    b = Builder(rate_hz=rate_hz, routes=ROUTES)
    for _ in range(cycles):
        b.add(1, IDLE, 10)
        if users:
            b.add(1, busy(users_frame), users)
        b.add(1, IDLE, 10)
        if report:
            b.add(1, busy(REPORT), report)
    profile = b.build()
    profile.target = replace(profile.target, cwd="/srv")
    return analyze(profile, ONE_EPISODE_IS_ENOUGH, source_reader(SOURCE))


# --- the test ------------------------------------------------------------------------------


def test_equal_rates_are_not_significant_and_very_different_ones_are() -> None:
    z, p = two_rate_test(Figure(100, 1000, 1.0), Figure(200, 2000, 1.0))
    assert z == pytest.approx(0.0) and p == pytest.approx(1.0, abs=0.06)
    z, p = two_rate_test(Figure(100, 1000, 1.0), Figure(10, 1000, 1.0))
    assert z < -8 and p < 1e-12


def test_clustered_samples_widen_the_test() -> None:
    # Same counts: as 100 independent samples, or as 20 episodes of 5 samples each
    _, independent = two_rate_test(Figure(100, 1000, 1.0), Figure(140, 1000, 1.0))
    _, clustered = two_rate_test(Figure(100, 1000, 5.0), Figure(140, 1000, 5.0))
    assert independent < 0.02 < 0.2 < clustered


def test_batch_dispersion_is_poisson_for_steady_counts_and_grows_with_bursts() -> None:
    exposure = [100.0] * 10
    assert batch_dispersion([10.0] * 10, exposure) == 1.0  # steadier than Poisson: floor 1
    # all 100 samples in one bin of ten: Var = 10/9 * (90^2 + 9 * 10^2) = 10000 -> D = 100
    assert batch_dispersion([100.0] + [0.0] * 9, exposure) == pytest.approx(100.0)
    assert batch_dispersion([5.0, 5.0], [1.0, 1.0]) == 1.0  # too few bins to tell


def test_a_per_request_change_needs_its_per_sample_change_to_count() -> None:
    # GIVEN the same code, but HEAD served half the requests (a slower machine)
    by_path = (("/users/1", 50), ("/report", 50))
    base = _with_load(_analysis(), by_path)
    head = _with_load(_analysis(), tuple((p, n // 2) for p, n in by_path))
    result = compare(base, head)
    blocked_per_request = next(c for c in result.totals if c.per == "request")
    # THEN its per-request test alone would flag it, but the per-sample shares are equal
    assert blocked_per_request.p < result.alpha
    assert not blocked_per_request.significant
    assert not result.significant


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method (means here are small)
    limit, k, prod = math.exp(-mean), 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k


@pytest.mark.parametrize("episode_samples", [1, 6])
def test_false_positive_rate_under_no_change_is_at_most_alpha(episode_samples: int) -> None:
    # GIVEN runs of one process: episodes arrive as Poisson counts, each `episode_samples` long,
    # the second run sampled 1.5 times longer
    rng = random.Random(1234 + episode_samples)
    trials, alpha, positives = 3000, 0.01, 0
    for _ in range(trials):
        k1 = _poisson(rng, 20.0) * episode_samples
        k2 = _poisson(rng, 30.0) * episode_samples
        _, p = two_rate_test(Figure(k1, 4000, episode_samples), Figure(k2, 6000, episode_samples))
        positives += p < alpha
    # THEN the test is calibrated: at most alpha plus 3 sd of the binomial count
    assert positives / trials <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)


# --- comparing analyses ---------------------------------------------------------------------


def test_a_fixed_line_is_gone_and_its_route_significantly_down() -> None:
    result = compare(_analysis(), _analysis(users=0))
    gone = [d for d in result.culprits if d.status == "gone"]
    assert [(d.key, d.blocked.significant) for d in gone] == [
        (("app/main.py", "get_user", "time.sleep(0.05)"), True)
    ]
    users = next(r for r in result.routes if r.route == "GET /users/{user_id}")
    assert users.blocked.delta < 0 and users.blocked.significant
    report = next(d for d in result.culprits if d.key[1] == "report")
    assert report.status == "both"
    lines = diff_lines(result)
    assert any(line.startswith("culprit gone: app/main.py:12 get_user") for line in lines)


def test_a_line_that_moved_is_the_same_culprit() -> None:
    moved = Frame("get_user", APP, 13)
    base = _analysis()
    head_profile = _analysis(users_frame=moved).profile
    head = analyze(
        head_profile,
        ONE_EPISODE_IS_ENOUGH,
        source_reader({**SOURCE, (APP, 13): "time.sleep(0.05)"}),
    )
    result = compare(base, head)
    assert {d.status for d in result.culprits} == {"both"}
    assert not result.significant


def test_a_longer_run_of_the_same_code_changes_nothing() -> None:
    # CPython 3.15's differential flamegraph scaled by duration (python/cpython#154062):
    # a run twice as long must compare equal per sample, to the sample.
    result = compare(_analysis(cycles=30), _analysis(cycles=60))
    assert not result.significant
    for change in [*result.totals, *(r.blocked for r in result.routes)]:
        assert change.delta == pytest.approx(0.0, abs=1e-9)
    for view in result.flame.values():
        for base, head in view.values():
            assert head == pytest.approx(base)


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (lambda: _analysis(rate_hz=200), "sampled at 100 Hz and HEAD at 200 Hz"),
        (lambda: _nonblocking(_analysis()), "sampled --blocking and HEAD --nonblocking"),
        (lambda: _other_app(), "no route and no culprit in common"),
    ],
)
def test_incomparable_runs_are_refused_with_the_reason(head: object, reason: str) -> None:
    with pytest.raises(IncomparableRunsError) as info:
        compare(_analysis(), head())  # type: ignore[operator]
    assert info.value.exit_code == 2
    assert reason in info.value.message
    assert "\n" not in info.value.message


def _nonblocking(a: Analysis) -> Analysis:
    a.profile.sampling = replace(a.profile.sampling, nonblocking=True)
    return a


def _other_app() -> Analysis:
    other = Frame("checkout", "/srv/shop/cart.py", 7)
    b = Builder(routes=(Route("POST", "/cart", "cart.checkout", other.file, 5, 9, True),))
    for _ in range(5):
        b.add(1, IDLE, 10)
        b.add(1, busy(other), 6)
    return analyze(b.build(), ONE_EPISODE_IS_ENOUGH)


# --- diff.html ------------------------------------------------------------------------------


def _payload(html: str) -> dict[str, Any]:
    m = re.search(
        rf'<script type="application/json" id="{PAYLOAD_ELEMENT_ID}">(.*?)</script>', html, re.S
    )
    assert m is not None
    data = orjson.loads(m[1])
    assert isinstance(data, dict)
    return data


def test_diff_html_embeds_the_tree_it_was_given_behind_a_strict_csp() -> None:
    result = compare(_analysis(), _analysis(users=0))
    html = render_diff_html(result)
    parts = PageParts()
    parts.feed(html)
    parts.close()
    csp = [v for tag, name, v in parts.attrs if tag == "meta" and name == "content" and v][0]
    policy = dict(item.strip().split(" ", 1) for item in csp.split(";"))
    assert policy["default-src"] == "'none'"
    code = [body for attrs, body in parts.scripts if "type" not in attrs]
    assert len(code) == 1 and len(parts.styles) == 1
    assert policy["script-src"] == csp_hash(code[0])
    assert policy["style-src"] == csp_hash(parts.styles[0])
    assert not any(name == "src" or name.startswith("on") for _, name, _ in parts.attrs)
    data = _payload(html)
    assert data == orjson.loads(orjson.dumps(diff_payload(result)))
    # blocking view: the roots' base shares sum to the base run's blocked share
    nodes = data["views"]["blocking"]["nodes"]
    base_total = sum(n[2] for n in nodes)
    head_total = sum(n[3] for n in nodes)
    blocked = result.totals[0]
    assert base_total == pytest.approx(blocked.base.rate, rel=1e-4)
    assert head_total == pytest.approx(blocked.head.rate, rel=1e-4)
    assert all(n[0] < i for i, n in enumerate(nodes))  # parents come first


def test_hostile_names_are_escaped_in_diff_html_and_text() -> None:
    hostile = Frame("</script><img src=x onerror=alert(1)>{{ x }}", APP, 12)
    result = compare(_analysis(), _analysis(users_frame=hostile))
    html = render_diff_html(result)
    assert "<img src=x" not in html and "</script><img" not in html
    frames = _payload(html)["frames"]
    assert any(f[0] == hostile.function for f in frames)
    assert diff_json(result)["culprits"]


def _with_load(a: Analysis, by_path: tuple[tuple[str, int], ...]) -> Analysis:
    a.profile.load = LoadInfo(
        "asgiprof-load", "http://127.0.0.1:1", 0.0, 1.0, "exit", 0, (),
        sum(n for _, n in by_path), 0, by_path,
    )  # fmt: skip
    return a


def test_requests_per_route_come_from_the_generators_per_path_counts() -> None:
    by_path = (("/users/1", 40), ("/users/2?q=1", 10), ("/report", 50), ("/nowhere", 5))
    base = _with_load(_analysis(), by_path)
    assert route_requests(base.profile) == {"GET /users/{user_id}": 50, "GET /report": 50}
    head = _with_load(_analysis(users=4), tuple((p, 2 * n) for p, n in by_path))
    result = compare(base, head)
    users = next(r for r in result.routes if r.route == "GET /users/{user_id}")
    assert users.blocked_per_request is not None and users.loop_per_request is not None
    # 8 samples a request in BASE, 4 x (40 cycles / 100 requests) in HEAD: 1.6 a request
    assert users.blocked_per_request.base.rate == pytest.approx(320 / 50)
    assert users.blocked_per_request.head.rate == pytest.approx(160 / 100)
    assert users.blocked_per_request.significant
    assert any("ms/request" in line and "GET /users" in line for line in diff_lines(result))
    assert diff_json(result)["routes"][0]["blocked_per_request"] is not None
    without = compare(_analysis(), _analysis())
    assert all(r.blocked_per_request is None for r in without.routes)


def test_a_run_with_an_empty_stack_renders_its_diff() -> None:
    # GIVEN a head run in which py-spy once saw no frame at all (a chrometrace run with
    # every frame closed), on the loop thread
    base = _analysis()
    b = Builder(routes=ROUTES)
    for _ in range(40):
        b.add(1, IDLE, 10)
        b.add(1, busy(USERS), 8)
        b.add(1, (), 1)
        b.add(1, IDLE, 10)
        b.add(1, busy(REPORT), 5)
    profile = b.build()
    profile.target = replace(profile.target, cwd="/srv")
    head = analyze(profile, ONE_EPISODE_IS_ENOUGH, source_reader(SOURCE))
    # THEN the diff page is drawn, with no node for the empty stack
    data = _payload(render_diff_html(compare(base, head)))
    assert all(n[1] >= 0 for view in data["views"].values() for n in view["nodes"])
    assert not compare(base, head).significant
