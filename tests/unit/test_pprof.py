"""profile.pb.gz (reporters/pprof.py) read back by real readers, and `asgiprof merge`'s
profile arithmetic (merge.py) on hand-built profiles."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from asgiprof.analyze import analyze
from asgiprof.analyze.result import ROUTE_VIEW_PREFIX, VIEW_BLOCKING, VIEW_THREADPOOL, Analysis
from asgiprof.errors import UsageError
from asgiprof.merge import check_same_app, merge_profiles, source_names
from asgiprof.model import Frame, Route
from asgiprof.reporters.html import render_html
from asgiprof.reporters.pprof import REPORTER, encode, pprof_profile
from asgiprof.reporters.summary_json import summary
from tests.pprof_reader import Decoded, decode_pprof, go_pprof, go_tags_ms, go_total_ms, needs_go
from tests.profile_builder import APP, IDLE, Builder, request
from tests.reporter_fixtures import IMG, ROUTE_ITEMS, ROUTE_TMPL, SCRIPT, UNICODE, sample_analysis

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@pytest.fixture(scope="module")
def analysis() -> Analysis:
    return sample_analysis()


@pytest.fixture(scope="module")
def decoded(analysis: Analysis) -> Decoded:
    return decode_pprof(encode(pprof_profile(analysis)))


def test_protobuf_reads_the_sample_types_period_and_times(
    analysis: Analysis, decoded: Decoded
) -> None:
    assert decoded.sample_types == (("samples", "count"), ("wall", "nanoseconds"))
    assert decoded.period_type == ("wall", "nanoseconds")
    assert decoded.period == round(analysis.sample_labels.period_s * 1e9)
    assert decoded.time_nanos == round(analysis.profile.sampling.started_at * 1e9)
    assert decoded.duration_nanos == round(analysis.profile.sampling.duration_s * 1e9)


def test_totals_per_label_equal_the_analysis(analysis: Analysis, decoded: Decoded) -> None:
    assert decoded.total(0) == analysis.profile.sampling.samples
    assert decoded.total(1, loop_state="blocked") == pytest.approx(
        analysis.loop.blocked_ms * 1e6, abs=len(decoded.samples)
    )
    assert decoded.total(1, loop_state="idle") == pytest.approx(
        analysis.loop.idle_ms * 1e6, abs=len(decoded.samples)
    )
    samples = decoded.by_label(0, "http_route")
    blocked = decoded.by_label(1, "http_route", loop_state="blocked")
    pool = decoded.by_label(1, "http_route", thread_role="threadpool")
    for r in analysis.routes:
        assert samples[r.route] == r.samples
        # A sample's route label is its stack's route (a route's share of its dependencies,
        # in RouteStats, has no stack of the route): the route's view within each view.
        ms = route_ms(analysis, r.route)
        assert blocked.get(r.route, 0) == pytest.approx(ms[VIEW_BLOCKING] * 1e6, abs=100)
        assert pool.get(r.route, 0) == pytest.approx(ms[VIEW_THREADPOOL] * 1e6, abs=100)
    assert any(ms > 0 for ms in pool.values()) and any(ms > 0 for ms in blocked.values())


def route_ms(analysis: Analysis, route: str) -> dict[str, float]:
    """Milliseconds of the route's stacks in each view."""
    stacks = analysis.views[ROUTE_VIEW_PREFIX + route]
    return {
        vid: sum(weights.get(sid, 0.0) for sid in stacks) for vid, weights in analysis.views.items()
    }


def test_labels_are_valid_names_with_bounded_values(decoded: Decoded) -> None:
    for s in decoded.samples:
        assert all(LABEL_NAME.fullmatch(k) for k in s.labels)
        assert s.labels["thread_role"] in {"event_loop", "threadpool", "other"}
        assert s.labels["worker"] == "4242"
        assert s.labels.get("loop_state", "idle") in {"idle", "busy", "blocked"}
        assert ("block_kind" in s.labels) == (s.labels.get("loop_state") == "blocked")
        assert s.labels.get("block_kind", "cpu") in {"cpu", "io", "unknown"}
        assert ("loop_state" in s.labels) == (s.labels["thread_role"] == "event_loop")


def test_hostile_names_survive_exactly(decoded: Decoded) -> None:
    routes = set(decoded.by_label(0, "http_route"))
    assert {ROUTE_ITEMS, ROUTE_TMPL} <= routes
    functions = {name for s in decoded.samples for name, _f, _l in s.frames}
    files = {file for s in decoded.samples for _n, file, _l in s.frames}
    assert f"render_{SCRIPT}" in functions
    assert f"/srv/app/{IMG}/views.py" in files
    assert any(UNICODE in f for f in functions | files)


def test_stacks_are_leaf_first_with_lines(analysis: Analysis, decoded: Decoded) -> None:
    top = analysis.culprits[0]
    leaves = [s.frames[0] for s in decoded.samples if s.labels.get("loop_state") == "blocked"]
    assert any(file == top.file and line == top.line for _n, file, line in leaves)


def test_bytes_are_deterministic(analysis: Analysis, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = REPORTER.render(analysis, tmp_path / "a").read_bytes()
    second = REPORTER.render(analysis, tmp_path / "b").read_bytes()
    assert first == second and first[:2] == b"\x1f\x8b"


@needs_go
def test_go_tool_pprof_reads_hostile_names_and_agrees(analysis: Analysis, tmp_path: Path) -> None:
    path = REPORTER.render(analysis, tmp_path)
    assert "Type: wall" in go_pprof(path, "-top")
    assert go_total_ms(path, "-tagfocus=loop_state=^blocked$") == pytest.approx(
        analysis.loop.blocked_ms, abs=0.02
    )
    by_route = go_tags_ms(path, "http_route", "-tagfocus=loop_state=^blocked$")
    expected = {r.route: route_ms(analysis, r.route)[VIEW_BLOCKING] for r in analysis.routes}
    assert by_route == pytest.approx({r: ms for r, ms in expected.items() if ms > 0}, abs=0.02)
    assert ROUTE_ITEMS in by_route  # a hostile route name, read back by go tool pprof


# --- merge -------------------------------------------------------------------------------

SLOW = Frame("get_user", APP, 12)
ROUTE = Route("GET", "/users/{user_id}", "get_user", APP, 10, 14, True)


def _run(blocked_samples: int, routes: tuple[Route, ...] = (ROUTE,)) -> Builder:
    b = Builder(routes=routes)
    for _ in range(5):
        b.add(1, IDLE, 20)
        b.add(1, request(SLOW), blocked_samples)
    return b


def test_merged_profile_keeps_colliding_pids_apart_and_sums_the_runs() -> None:
    one, two = _run(5).build(), _run(8).build()
    merged = merge_profiles([("a", Path("a"), one), ("b", Path("b"), two)])
    merged.self_check()
    assert sorted(t.thread.pid for t in merged.threads) == [1, (1 << 22) | 1]
    assert [s.pids for s in merged.sources] == [((1, 1),), (((1 << 22) | 1, 1),)]
    assert merged.sampling.samples == one.sampling.samples + two.sampling.samples
    assert merged.sampling.duration_s == max(one.sampling.duration_s, two.sampling.duration_s)
    analysis = analyze(merged)
    separate = [analyze(one), analyze(two)]
    assert analysis.loop.blocked_ms == pytest.approx(sum(a.loop.blocked_ms for a in separate))
    assert analysis.loop.episodes == sum(a.loop.episodes for a in separate)
    (culprit,) = analysis.culprits
    shares = analysis.fleet.culprit_sources[(culprit.file, culprit.line)]
    assert [(s.source, s.episodes) for s in shares] == [("b", 5), ("a", 5)]
    assert sum(s.blocked_ms for s in shares) == pytest.approx(culprit.blocked_ms)
    assert analysis.sample_labels.workers == {1: "a:1", (1 << 22) | 1: "b:1"}


def test_different_route_tables_are_refused_with_the_difference() -> None:
    other = replace(ROUTE, path="/accounts/{account_id}")
    one, two = _run(5).build(), _run(5, routes=(other,)).build()
    with pytest.raises(UsageError) as info:
        check_same_app([("a", one), ("b", two)])
    assert info.value.exit_code == 2
    assert "GET /users/{user_id}" in info.value.message
    assert "GET /accounts/{account_id}" in info.value.message
    check_same_app([("a", one), ("b", _run(9).build())])  # the same app passes


def test_source_names_are_unique() -> None:
    names = source_names([Path("/x/run"), Path("/y/run"), Path("/z/run"), Path("/w/other")])
    assert names == ["run", "run-2", "run-3", "other"]


def test_fleet_section_and_summary_escape_hostile_run_names() -> None:
    hostile = f"pod-{SCRIPT}"
    runs = [(hostile, Path(f"/x/{hostile}"), _run(5).build()), ("b", Path("b"), _run(8).build())]
    analysis = analyze(merge_profiles(runs))
    html = render_html(analysis)
    assert 'id="fleet"' in html
    assert SCRIPT not in html and "pod-&lt;/script&gt;" in html
    data = summary(analysis)
    assert [s["name"] for s in data["fleet"]["sources"]] == [hostile, "b"]
    (culprit,) = data["culprits"]
    assert {s["source"] for s in culprit["sources"]} == {hostile, "b"}
    decoded = decode_pprof(encode(pprof_profile(analysis)))
    assert set(decoded.by_label(0, "worker")) == {f"{hostile}:1", "b:1"}
