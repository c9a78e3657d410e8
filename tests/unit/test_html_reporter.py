"""report.html without a browser: the embedded payload decodes to what Python built, hostile
text stays inert, the page loads nothing from anywhere, and the bytes are deterministic."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from asgiprof.analyze import analyze
from asgiprof.analyze.processes import process_timelines
from asgiprof.analyze.result import (
    VIEW_ALL,
    VIEW_BLOCKING,
    VIEW_LOOP,
    Analysis,
    MiddlewareSummary,
    ResourceSeries,
    ResourceSummary,
    ThreadpoolBin,
)
from asgiprof.model import Frame, Route, TargetInfo
from asgiprof.reporters.html import (
    MIB,
    PAYLOAD_ELEMENT_ID,
    REPORTER,
    build_call_tree,
    call_rows,
    code_spans,
    format_count,
    format_ms,
    format_pct,
    inline_asset,
    middleware_rows,
    render_html,
    report_context,
    report_payload,
    resources_payload,
    short_path,
    threadpool_payload,
    tojson,
)
from tests.html_pages import PageParts, csp_hash
from tests.profile_builder import APP, IDLE, Builder, busy
from tests.reporter_fixtures import (
    AUDIT,
    DEP_NAME,
    EXECUTE,
    HASH,
    HOSTILE,
    HOSTILE_FINDING_TITLE,
    HOSTILE_FN,
    IMG,
    LEAK_PORT,
    MW_NAME,
    PID,
    PLANTED,
    PLANTED_CODE,
    POLLS,
    QUOTED_FN,
    QUOTES,
    SCRIPT,
    SIGN_MW_NAME,
    SOCK_RECV,
    TEMPLATE,
    UNICODE,
    UNREADABLE_POLL,
    URL,
    empty_analysis,
    sample_analysis,
)

PAYLOAD_RE = re.compile(
    rf'<script type="application/json" id="{PAYLOAD_ELEMENT_ID}">(.*?)</script>', re.S
)


# Every element the templates use: data must never add one.
PAGE_TAGS = frozenset(
    "html head meta title link style body div span main header footer section h1 h2 h3 p code"
    " pre strong ul li ol table thead tbody tfoot tr th td button label select option input nav"
    " canvas script a article details summary br svg path circle".split()
)


@pytest.fixture(scope="module")
def analysis() -> Analysis:
    return sample_analysis()


@pytest.fixture(scope="module")
def page(analysis: Analysis) -> str:
    return render_html(analysis)


@pytest.fixture(scope="module")
def parts(page: str) -> PageParts:
    parser = PageParts()
    parser.feed(page)
    parser.close()
    return parser


def embedded_payload(page: str) -> Any:
    found = PAYLOAD_RE.findall(page)
    assert len(found) == 1
    return json.loads(found[0])


# ---- the payload -------------------------------------------------------------------------


def test_embedded_payload_equals_the_python_payload(analysis: Analysis, page: str) -> None:
    expected = orjson.loads(orjson.dumps(report_payload(analysis)))
    assert embedded_payload(page) == expected


def test_call_tree_rebuilds_every_stack_and_weight(analysis: Analysis, page: str) -> None:
    data = embedded_payload(page)
    strings, frames = data["strings"], data["frames"]
    parent, node_frame = data["nodes"]["parent"], data["nodes"]["frame"]
    assert parent[0] == -1 and node_frame[0] == -1
    assert all(parent[i] < i for i in range(1, len(parent)))  # pre-order

    def path(node: int) -> list[tuple[str, str, int]]:
        out = []
        while node > 0:
            f = node_frame[node]
            out.append((strings[frames["fn"][f]], strings[frames["file"][f]], frames["line"][f]))
            node = parent[node]
        return out[::-1]

    profile = analysis.profile
    views = {v["id"]: v for v in data["views"]}
    for vid, weights in analysis.views.items():
        v = views[vid]
        # Each stack's end node spells that stack, and the weights add up.
        by_path = {tuple(path(n)): ms for n, ms in zip(v["nodes"], v["ms"], strict=True)}
        for sid, ms in weights.items():
            stack = tuple((f.function, f.file, f.line) for f in profile.stack_frames(sid))
            assert by_path[stack] == pytest.approx(ms, abs=1e-3)
        assert v["total_ms"] == pytest.approx(sum(weights.values()), abs=1e-2)
        assert v["nodes"] == sorted(v["nodes"])


def test_call_tree_siblings_are_sorted_by_name(analysis: Analysis) -> None:
    profile = analysis.profile
    tree = build_call_tree(profile.frames, profile.stacks, range(len(profile.stacks)))
    children: dict[int, list[int]] = {}
    for node in range(1, len(tree.parent)):
        children.setdefault(tree.parent[node], []).append(node)
    for kids in children.values():
        keys = [profile.frames[tree.frames[tree.frame[k]]] for k in kids]
        assert [(f.function, f.file, f.line) for f in keys] == sorted(
            (f.function, f.file, f.line) for f in keys
        )
    for sid, node in tree.stack_node.items():
        assert tree.node_of(profile.stacks[sid]) == node


def test_views_are_ordered_main_first_then_routes_by_rank(analysis: Analysis) -> None:
    data = report_payload(analysis)
    ids = [v["id"] for v in data["views"]]
    assert ids[:4] == ["all", "loop", "blocking", "threadpool"]
    assert ids[4:] == [f"route:{r.route}" for r in analysis.routes]
    assert data["default_view"] == VIEW_LOOP


def test_culprits_point_at_their_frame(analysis: Analysis) -> None:
    data = report_payload(analysis)
    strings, frames = data["strings"], data["frames"]
    assert [c["rank"] for c in data["culprits"]] == [c.rank for c in analysis.culprits]
    for c in data["culprits"]:
        f = data["nodes"]["frame"][c["node"]]
        assert (strings[frames["file"][f]], frames["line"][f]) == (c["file"], c["line"])
        assert f in c["frames"]
    first = data["culprits"][0]
    assert (first["function"], first["code"]) == (PLANTED.function, PLANTED_CODE)


def test_episodes_and_timeline(analysis: Analysis) -> None:
    data = report_payload(analysis)
    ep = data["episodes"]
    assert len(ep["start_s"]) == len(analysis.episodes) == len(ep["culprit"])
    assert ep["start_s"] == sorted(ep["start_s"])
    assert all(0 <= c < len(data["culprits"]) for c in ep["culprit"])
    assert {data["route_names"][r] for r in ep["route"] if r >= 0} == {
        e.route for e in analysis.episodes if e.route
    }
    # (the dependency's episodes run before routing: no route)
    assert ep["route"].count(-1) == sum(e.route is None for e in analysis.episodes) > 0
    tl = data["timeline"]
    assert len(tl["idle_ms"]) == len(analysis.timeline) == len(tl["blocked_ms"])
    assert sum(tl["blocked_ms"]) == pytest.approx(analysis.loop.blocked_ms, abs=1)


# ---- escaping ----------------------------------------------------------------------------


def test_hostile_markup_never_appears_raw(page: str, parts: PageParts) -> None:
    for hostile in (SCRIPT, IMG, "<script>alert", "onerror=alert(1)>"):
        assert hostile not in page
    assert page.count("<script") == 2
    assert set(parts.tags) <= PAGE_TAGS
    assert "img" not in parts.tags
    assert not [a for a in parts.attrs if a[1].startswith("on")]


def test_hostile_text_is_shown_as_text(analysis: Analysis, page: str, parts: PageParts) -> None:
    text = "".join(parts.text)
    # Autoescaped template text decodes back to the very strings the target used.
    for hostile in (SCRIPT, IMG, TEMPLATE):
        assert hostile in text
    assert HOSTILE_FN.function in text and QUOTED_FN.function in text
    # Template syntax in data is printed, not evaluated.
    assert "{{ x }}" in page
    # The payload carries the exact strings too.
    data = embedded_payload(page)
    for hostile in (HOSTILE_FN.function, HOSTILE_FN.file, QUOTED_FN.file):
        assert hostile in data["strings"]
    for hostile in HOSTILE:
        assert any(hostile in s for s in data["strings"] + data["route_names"])


def test_payload_json_escapes_what_html_and_js_would_interpret(page: str) -> None:
    raw = PAYLOAD_RE.findall(page)[0]
    for char in "<>&'\u2028\u2029":
        assert char not in raw
    assert "\\u003c/script\\u003e" in raw and "\\u2028" in raw


def test_tojson_escapes_and_sorts() -> None:
    assert str(tojson({"b": "</script>&'", "a": "\u2028"})) == (
        '{"a":"\\u2028","b":"\\u003c/script\\u003e\\u0026\\u0027"}'
    )


def test_unicode_survives(page: str) -> None:
    data = embedded_payload(page)
    assert any(UNICODE in s for s in data["strings"])


# ---- offline and CSP ---------------------------------------------------------------------


def test_csp_allows_exactly_the_inline_script_and_style(parts: PageParts) -> None:
    csp = [v for tag, name, v in parts.attrs if tag == "meta" and name == "content" and v][0]
    policy = dict(item.strip().split(" ", 1) for item in csp.split(";"))
    assert policy["default-src"] == "'none'"
    code = [body for attrs, body in parts.scripts if "type" not in attrs]
    assert len(code) == 1 and len(parts.styles) == 1
    assert policy["script-src"] == csp_hash(code[0])
    assert policy["style-src"] == csp_hash(parts.styles[0])
    assert ("meta", "http-equiv", "Content-Security-Policy") in parts.attrs
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp


def test_nothing_references_a_remote_url(page: str, parts: PageParts) -> None:
    # A URL in target text (here the command) is fine as text; nowhere else.
    ids = {value for _, name, value in parts.attrs if name == "id"}
    for tag, name, value in parts.attrs:
        assert not re.search(r"(?i)(https?:)?//", value or ""), (tag, name, value)
        if name == "href" and tag == "a":
            href = value or ""
            assert href.startswith("#") and href[1:] in ids, href  # in-page links
        elif name in ("src", "href", "action", "srcset", "poster"):
            assert (value or "").startswith("data:"), (tag, name, value)
    for asset in ("report.js", "report.css"):
        body = inline_asset(asset).text
        assert "http://" not in body and "https://" not in body
        assert "@import" not in body and "url(" not in body
    code = [body for attrs, body in parts.scripts if "type" not in attrs][0]
    assert "fetch(" not in code and "XMLHttpRequest" not in code and "WebSocket" not in code
    assert URL in "".join(parts.text)
    # Drop the payload, the (checked) assets and all text between tags: no URL remains.
    outside_text = PAYLOAD_RE.sub("", page)
    for asset in ("report.js", "report.css"):
        outside_text = outside_text.replace(inline_asset(asset).text, "")
    outside_text = re.sub(r">[^<]*<", "><", outside_text)
    assert "http://" not in outside_text and "https://" not in outside_text


# ---- determinism and the reporter --------------------------------------------------------


def test_rendering_is_deterministic(analysis: Analysis, page: str) -> None:
    assert render_html(analysis) == page
    # Dict insertion order must not leak into the bytes.
    shuffled = dataclasses.replace(
        analysis,
        views={vid: dict(reversed(list(w.items()))) for vid, w in reversed(analysis.views.items())},
        thread_roles=dict(reversed(list(analysis.thread_roles.items()))),
    )
    assert render_html(shuffled) == page


def test_reporter_writes_report_html(analysis: Analysis, page: str, tmp_path: Path) -> None:
    path = REPORTER.render(analysis, tmp_path)
    assert path == tmp_path / "report.html" == tmp_path / REPORTER.filename
    assert path.read_bytes() == page.encode("utf-8")


def test_an_empty_analysis_renders() -> None:
    # No threads, no samples: every section says so instead of failing.
    page = render_html(empty_analysis())
    data = embedded_payload(page)
    assert data["views"][0]["total_ms"] == 0 and data["nodes"]["parent"] == [-1]
    assert "No blocking episodes" in page and "No samples were attributed" in page
    assert data["default_view"] == VIEW_ALL


def test_blocking_view_is_present(analysis: Analysis) -> None:
    views = {v["id"]: v for v in report_payload(analysis)["views"]}
    assert views[VIEW_BLOCKING]["total_ms"] == pytest.approx(analysis.loop.blocked_ms, abs=1e-2)


# ---- formatting --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0.0, "0.0 ms"),
        (1.54, "1.5 ms"),
        (250.4, "250 ms"),
        (1500, "1.50 s"),
        (12345, "12.3 s"),
        (125_000, "2 min 05 s"),
    ],
)
def test_format_ms(ms: float, text: str) -> None:
    assert format_ms(ms) == text


def test_code_spans_escape_everything_and_mark_backticked_code() -> None:
    assert str(code_spans("use `await asyncio.sleep(...)` <b>")) == (
        "use <code>await asyncio.sleep(...)</code> &lt;b&gt;"
    )
    assert str(code_spans(f"`{SCRIPT}` {IMG}")) == (
        "<code>&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;</code> "
        "&lt;img src=x onerror=alert(1)&gt;"
    )
    assert str(code_spans("odd ` tick <")) == "odd ` tick &lt;"


def test_format_pct_and_count_and_short_path() -> None:
    assert (format_pct(0.1234), format_pct(0.0), format_pct(0.0004)) == ("12.3%", "0.0%", "<0.1%")
    assert format_count(2_400_677) == "2\u2009400\u2009677"
    assert short_path("/srv/app/main.py") == "/srv/app/main.py"
    assert short_path("/a/b/c/d/e.py") == "\u2026/c/d/e.py"


# ---- diagnostics: findings, contexts, middleware, dependencies, threadpool, resources ----


def section(page: str, section_id: str) -> str:
    """The HTML of one <section>, by id."""
    found = re.search(rf'<section class="[^"]*" id="{section_id}".*?</section>', page, re.S)
    assert found is not None, section_id
    return found.group(0)


def text_of(html: str) -> str:
    parser = PageParts()
    parser.feed(html)
    return "".join(parser.text)


def test_findings_are_cards_warnings_first_with_links_to_shown_sections(
    analysis: Analysis, page: str
) -> None:
    html = section(page, "findings")
    cards = re.findall(r'<article class="finding finding-(\w+)" data-kind="([\w-]+)">', html)
    assert len(cards) == len(analysis.findings) >= 6
    severities = [f.severity for f in analysis.findings]
    assert [sev for sev, _ in cards] == sorted(severities, key=lambda sev: sev != "warning")
    assert [kind for _, kind in cards] == [
        f.kind for f in sorted(analysis.findings, key=lambda f: f.severity != "warning")
    ]
    text = text_of(html)
    for f in analysis.findings:
        assert f.title in text and f.advice.replace("`", "") in text
    assert HOSTILE_FINDING_TITLE in text
    # Advice and detail show their `code` as <code>, everything else escaped: the hostile
    # dependency's name has a backticked word, the holders a markup route.
    assert "<code>back</code>" in html and "<code>async def</code>" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    links = re.findall(r'<a class="finding-link" href="#(\w+)">', html)
    assert sorted(set(links)) == ["dependencies", "middleware", "resources", "threadpool"]
    # The findings come right after the header, before the culprits.
    assert page.index('id="findings"') < page.index('id="culprits"')


def test_culprit_context_badges_and_call_chain(analysis: Analysis, page: str) -> None:
    html = section(page, "culprits")
    rows = re.findall(r'<tr class="culprit-row.*?</tr>', html, re.S)
    by_fn = {c.function: text_of(row) for c, row in zip(analysis.culprits, rows, strict=True)}
    assert f"in middleware {MW_NAME}" in by_fn[QUOTED_FN.function]
    dep = by_fn[HASH.function]
    assert f"in dependency {DEP_NAME}" in dep
    # Used by: the first three routes, then how many more.
    hashing = next(c for c in analysis.culprits if c.function == HASH.function)
    assert all(r in dep for r in hashing.routes[:3]) and "+1 more" in dep
    assert "in middleware" not in by_fn[PLANTED.function]
    assert "in dependency" not in by_fn[PLANTED.function]
    # The call chain: a <details> per culprit with calls, library frames marked as such.
    hostile_row = rows[[c.function for c in analysis.culprits].index(HOSTILE_FN.function)]
    assert hostile_row.count("<details") == 1 and html.count("<details") == 1
    assert re.findall(r'<li class="call call-(\w+)">', hostile_row) == ["library", "stdlib"]
    assert "Session.execute \u2192 socket.recv_into" in text_of(hostile_row)


def test_call_rows_find_their_frames_or_parse_the_text(analysis: Analysis) -> None:
    hostile = next(c for c in analysis.culprits if c.function == HOSTILE_FN.function)
    rows = call_rows(analysis, hostile)
    assert [(r["function"], r["kind"]) for r in rows] == [
        (EXECUTE.function, "library"),
        (SOCK_RECV.function, "stdlib"),
    ]
    assert rows[0]["where"] == f"{EXECUTE.file}:{EXECUTE.line}"
    # Calls that are not on the culprit's stack are parsed from their text.
    odd = dataclasses.replace(
        hostile,
        stack_id=-1,
        calls=(f"f{SCRIPT} (/srv/app/a (b).py:9)", "no location", "g (/x/site-packages/y.py:x)"),
    )
    assert [(r["function"], r["where"], r["kind"]) for r in call_rows(analysis, odd)] == [
        (f"f{SCRIPT}", "/srv/app/a (b).py:9", "user"),
        ("no location", "", "library"),
        ("g", "/x/site-packages/y.py:0", "library"),
    ]


def test_payload_carries_culprit_contexts_and_calls(analysis: Analysis, page: str) -> None:
    data = embedded_payload(page)
    for c, p in zip(analysis.culprits, data["culprits"], strict=True):
        assert (p["context"], p["context_name"], p["calls"]) == (
            c.context,
            c.context_name,
            list(c.calls),
        )
    assert MW_NAME in [p["context_name"] for p in data["culprits"]]


def test_middleware_rows_in_request_order_add_up(analysis: Analysis, page: str) -> None:
    mw = middleware_rows(analysis)
    assert mw is not None
    labels = [r["label"] for r in mw["rows"]]
    layers = sorted(analysis.middleware.layers, key=lambda x: x.order)
    assert labels == ["server (uvicorn)", *[x.name for x in layers], "router + endpoints"]
    assert sum(r["self_ms"] for r in mw["rows"]) == pytest.approx(analysis.middleware.request_ms)
    assert mw["sum_share"] == pytest.approx(1.0)
    audit = mw["rows"][labels.index(MW_NAME)]
    layer = next(x for x in layers if x.name == MW_NAME)
    assert layer.blocked_ms > 0  # the audit helper it calls blocks
    assert (audit["origin"], audit["blocked_share"]) == (
        "user",
        pytest.approx(layer.blocked_ms / layer.self_ms),
    )
    html = section(page, "middleware")
    assert len(re.findall(r'<tr class="mw-row', html)) == len(labels)
    text = text_of(html)
    assert MW_NAME in text and SIGN_MW_NAME in text and "100.0%" in text
    # Bars get their widths from data attributes (the CSP blocks style attributes).
    assert 'style="' not in page


def test_middleware_rows_show_what_the_layers_leave_unexplained(analysis: Analysis) -> None:
    m = analysis.middleware
    short = dataclasses.replace(
        analysis, middleware=dataclasses.replace(m, request_ms=m.request_ms + 100.0)
    )
    mw = middleware_rows(short)
    assert mw is not None
    assert mw["rows"][-1]["label"] == "other request-path code"
    assert mw["rows"][-1]["self_ms"] == pytest.approx(100.0)
    assert mw["sum_share"] == pytest.approx(1.0)
    # No layer with time: no section.
    idle = MiddlewareSummary(
        100.0, 0.0, 20.0, 80.0, tuple(dataclasses.replace(x, self_ms=0.0) for x in m.layers)
    )
    assert middleware_rows(dataclasses.replace(analysis, middleware=idle)) is None


def test_dependencies_table(analysis: Analysis, page: str) -> None:
    html = section(page, "dependencies")
    rows = re.findall(r"<tr>\s*<td class=\"dep\">.*?</tr>", html, re.S)
    deps = analysis.dependencies
    assert len(rows) == len(deps.dependencies) == 3
    by_name = {
        d.name: " ".join(text_of(row).split())
        for d, row in zip(deps.dependencies, rows, strict=True)
    }
    user = next(d for d in deps.dependencies if d.name == DEP_NAME)
    assert user.runs_on == "loop" and len(user.routes) == 4
    assert "event loop" in by_name[DEP_NAME] and f"{user.blocked_ms:.0f} ms" in by_name[DEP_NAME]
    assert "+1 more" in by_name[DEP_NAME]  # the first three routes, then how many more
    assert "threadpool" in by_name["get_settings"]
    assert "loop + threadpool" in by_name[f"db_{QUOTES}"]
    assert "not declared by a route" in by_name[f"db_{QUOTES}"]
    assert deps.solving_ms > 0
    assert f"{deps.solving_ms:.0f} ms on the loop" in text_of(html)


def test_routes_table_counts_requests_from_the_access_log(analysis: Analysis, page: str) -> None:
    # GIVEN the sample's access log: every route with its request count, hostile names too
    log = analysis.profile.requests
    assert log is not None and analysis.routes_evidence == "access-log"
    html = section(page, "routes")
    assert '<table class="table routes" data-evidence="access-log">' in html
    rows = [
        " ".join(text_of(row).split())
        for row in re.findall(r'<tr class="route-row.*?</tr>', html, re.S)
    ]
    # THEN one row per route, in the analysis's order, each with its logged requests
    assert len(rows) == len(analysis.routes)
    for r, row in zip(analysis.routes, rows, strict=True):
        assert r.requests == log.of(r.route)
        assert row.startswith(
            f"{r.route} {format_count(log.of(r.route))} {format_count(r.samples)} "
        )
    assert IMG not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_threadpool_payload_and_holders(analysis: Analysis, page: str) -> None:
    tp = embedded_payload(page)["threadpool"]
    t = analysis.threadpool
    assert tp["limit"] == t.limit == 2
    assert len(tp["mean_busy"]) == len(tp["max_busy"]) == len(t.timeline) == len(analysis.timeline)
    assert tp["max_busy"] == [b.max_busy for b in t.timeline]
    assert max(tp["max_busy"]) == 2 and all(
        m <= p for m, p in zip(tp["mean_busy"], tp["max_busy"], strict=True)
    )
    # The chart shares the event-loop timeline's axis.
    assert (tp["start_s"], tp["width_s"]) == (
        embedded_payload(page)["timeline"]["start_s"],
        embedded_payload(page)["timeline"]["width_s"],
    )
    text = text_of(section(page, "threadpool"))
    assert "2 / 2 busy at most" in " ".join(text.split())
    for h in t.holders:
        assert h.name in text
    assert f"POST /items/{IMG}" in text


def test_threadpool_payload_clamps_an_average_above_its_peak(analysis: Analysis) -> None:
    bad = dataclasses.replace(
        analysis.threadpool,
        timeline=(ThreadpoolBin(0.0, 0.1, 1098.7, 40), ThreadpoolBin(0.1, 0.1, 3.5, 4)),
    )
    tp = threadpool_payload(dataclasses.replace(analysis, threadpool=bad))
    assert tp["mean_busy"] == [40.0, 3.5] and tp["max_busy"] == [40, 4]


def test_resources_payload_series_fits_and_leaks(analysis: Analysis) -> None:
    res = resources_payload(analysis)
    assert res["warmup_s"] == 2.0
    (proc,) = res["processes"]
    series = analysis.resources.processes[0]
    assert proc["pid"] == PID and len(proc["t_s"]) == len(series.t_s) == POLLS
    metrics = {m["id"]: m for m in proc["metrics"]}
    assert list(metrics) == [
        "rss_bytes",
        "fds",
        "threads",
        "connections",
        f"port:{LEAK_PORT}",
        "port:6379",
    ]
    rss = metrics["rss_bytes"]
    assert rss["unit"] == "MiB" and rss["label"] == "RSS"
    assert rss["values"][5] == pytest.approx(series.rss_bytes[5] / MIB, abs=0.01)
    leaks = {g.metric for g in series.growth if g.leak}
    assert {m["id"] for m in proc["metrics"] if m["leak"]} == leaks
    assert leaks == {"rss_bytes", "connections", f"port:{LEAK_PORT}"}
    # The fitted line: from the first readable poll after the warm-up, over the fit's span.
    growth = {g.metric: g for g in series.growth}
    first_request = analysis.resources.first_request_s
    assert first_request is not None
    t0 = next(t for t in proc["t_s"] if t >= first_request + 2.0)
    g = growth["rss_bytes"]
    assert rss["fit"] == pytest.approx(
        [t0, g.start_value / MIB, t0 + g.duration_s, g.end_value / MIB], abs=0.01
    )
    assert rss["slope_per_min"] == pytest.approx(g.slope_per_min / MIB, abs=0.01)
    # Unreadable polls are null, in the total and in the per-port series (placed on the
    # polls that could be read, as the connection log records them).
    assert metrics["connections"]["values"][UNREADABLE_POLL] is None
    assert metrics[f"port:{LEAK_PORT}"]["values"][UNREADABLE_POLL] is None
    # The poll after the unreadable one is the log's entry at the unreadable one's index.
    log = analysis.profile.resources.connections[PID].remote_port_series(LEAK_PORT)
    assert metrics[f"port:{LEAK_PORT}"]["values"][UNREADABLE_POLL + 1] == log[UNREADABLE_POLL]


def test_resources_payload_skips_what_it_cannot_place(analysis: Analysis) -> None:
    one_poll = ResourceSeries(1, (0.0,), (1,), (1,), (1,), (1,))
    unplaceable = ResourceSeries(
        2,
        (0.0, 1.0, 2.0),
        (MIB,) * 3,
        (-1, -1, -1),
        (3, 3, 3),
        (1, 1, 1),
        remote_ports=((80, (1, 2)),),
    )
    res = resources_payload(
        dataclasses.replace(analysis, resources=ResourceSummary(5.0, (one_poll, unplaceable)))
    )
    (proc,) = res["processes"]
    assert proc["pid"] == 2
    assert [m["id"] for m in proc["metrics"]] == ["rss_bytes", "threads", "connections"]
    assert all(m["fit"] == [] and not m["leak"] for m in proc["metrics"])


def test_diagnostic_sections_in_order_and_in_the_toc(page: str) -> None:
    order = [
        "findings",
        "culprits",
        "timeline",
        "threadpool",
        "flamegraph",
        "routes",
        "middleware",
        "dependencies",
        "resources",
    ]
    positions = [page.index(f'id="{name}"') for name in order]
    assert positions == sorted(positions)
    toc = re.search(r'<nav class="toc".*?</nav>', page, re.S)
    assert toc is not None
    assert re.findall(r'href="#(\w+)"', toc.group(0)) == order
    assert 'id="resources-charts"' in page and 'id="threadpool-canvas"' in page


def test_sections_without_data_are_left_out() -> None:
    page = render_html(empty_analysis())
    for name in ("findings", "middleware", "dependencies", "threadpool", "resources"):
        assert f'id="{name}"' not in page and f'href="#{name}"' not in page
    data = embedded_payload(page)
    assert data["threadpool"]["mean_busy"] == [] and data["resources"]["processes"] == []


def test_new_hostile_text_is_text(analysis: Analysis, page: str, parts: PageParts) -> None:
    # Names of layers, dependencies, holders and findings decode back to the exact strings.
    text = "".join(parts.text)
    titles = " ".join(v or "" for _, name, v in parts.attrs if name == "title")
    for hostile in (MW_NAME, SIGN_MW_NAME, DEP_NAME, HOSTILE_FINDING_TITLE, f"db_{QUOTES}"):
        assert hostile in text
    assert f"{AUDIT.function} (" in titles  # the layer's frame, on hover
    # Escaped exactly once: no double escaping of what autoescape already handled.
    assert "&amp;lt;" not in page
    assert HOSTILE_FINDING_TITLE in [f["title"] for f in report_context(analysis)["findings"]]


# ---- workers: several server processes, each with its own event loop ---------------------

HOT_PID, CALM_PID = 11, 12
SLOW = Frame(f"slow_{SCRIPT}", APP, 12)  # blocks 100 ms, three times, in the hot worker
QUERY = Frame("query", APP, 22)  # blocks 40 ms, twice, in the hot worker
FAST = Frame("health", APP, 31)  # 10 ms at a time: busy, never blocked
WORKER_ROUTES = (
    Route("GET", "/users/{user_id}", "main.slow", APP, 10, 14, True),
    Route("GET", "/items", "main.query", APP, 20, 24, True),
    Route("GET", "/health", "main.health", APP, 30, 32, True),
)


def two_worker_analysis() -> Analysis:
    """`uvicorn --workers 2` (master pid 10) through the real analysis: worker 11 blocks,
    worker 12 is healthy."""
    target = TargetInfo(
        pids=(10, HOT_PID, CALM_PID),
        command=("uvicorn", "main:app", "--workers", "2"),
        server="uvicorn",
    )
    b = Builder(routes=WORKER_ROUTES, target=target)
    for i in range(3):
        b.add(HOT_PID, IDLE, 20, "MainThread", HOT_PID)
        b.add(HOT_PID, busy(SLOW), 10, pid=HOT_PID)
        if i != 1:
            b.add(HOT_PID, IDLE, 5, pid=HOT_PID)
            b.add(HOT_PID, busy(QUERY), 4, pid=HOT_PID)
    b.add(HOT_PID, IDLE, 5, pid=HOT_PID)
    for _ in range(5):
        b.add(CALM_PID, IDLE, 20, "MainThread", CALM_PID)
        b.add(CALM_PID, busy(FAST), 1, pid=CALM_PID)
    return analyze(b.build())


@pytest.fixture(scope="module")
def workers_analysis() -> Analysis:
    return two_worker_analysis()


def test_worker_payload_splits_figures_and_culprits_per_process(workers_analysis: Analysis) -> None:
    data = report_payload(workers_analysis)
    hot, calm = data["workers"]
    assert [(w["pid"], w["label"]) for w in (hot, calm)] == [
        (HOT_PID, f"PID {HOT_PID} (worker 1)"),
        (CALM_PID, f"PID {CALM_PID} (worker 2)"),
    ]
    # The hot worker: every episode and both culprits, most blocked time first.
    assert (hot["blocked_ms"], hot["episodes"], hot["longest_block_ms"]) == (380.0, 5, 100.0)
    assert hot["utilization"] == pytest.approx(380 / (380 + 750), abs=1e-4)
    lines = [data["culprits"][c["culprit"]]["line"] for c in hot["culprits"]]
    assert lines == [SLOW.line, QUERY.line]
    assert [(c["blocked_ms"], c["episodes"], c["max_ms"]) for c in hot["culprits"]] == [
        (300.0, 3, 100.0),
        (80.0, 2, 40.0),
    ]
    # The healthy one: busy now and then, never blocked.
    assert (calm["blocked_ms"], calm["episodes"], calm["culprits"]) == (0.0, 0, [])
    assert (calm["busy_ms"], calm["idle_ms"]) == (50.0, 1000.0)
    assert calm["utilization"] == pytest.approx(50 / 1050, abs=1e-4)
    # Episodes by index: the merged list, split by process.
    assert hot["episode_ids"] == list(range(5)) and calm["episode_ids"] == []
    assert {data["episodes"]["culprit"][i] for i in hot["episode_ids"]} == {
        c["culprit"] for c in hot["culprits"]
    }


def test_worker_timelines_share_the_merged_bins_and_add_up_to_them(
    workers_analysis: Analysis,
) -> None:
    data = report_payload(workers_analysis)
    merged = data["timeline"]
    hot, calm = (w["timeline"] for w in data["workers"])
    for key in ("idle_ms", "busy_ms", "blocked_ms"):
        assert len(hot[key]) == len(calm[key]) == len(merged[key]) == 600
        assert [h + c for h, c in zip(hot[key], calm[key], strict=True)] == pytest.approx(
            merged[key], abs=0.02
        )
    # Unrounded, each worker's bins hold exactly its loop time; the page gets them rounded.
    exact = process_timelines(workers_analysis)
    sums = {
        pid: tuple(sum(getattr(b, k) for b in bins) for k in ("idle_ms", "busy_ms", "blocked_ms"))
        for pid, bins in exact.items()
    }
    assert sums == {
        HOT_PID: pytest.approx((750, 0, 380)),
        CALM_PID: pytest.approx((1000, 50, 0)),
    }
    assert sum(hot["blocked_ms"]) == pytest.approx(380, abs=1) and sum(calm["blocked_ms"]) == 0
    # The healthy worker ran 1.05 s, the hot one 1.13 s: the last bins are the hot one's alone.
    assert hot["idle_ms"][-1] > 0 and calm["idle_ms"][-1] == 0
    assert [b.start_s for b in exact[CALM_PID]] == [b.start_s for b in workers_analysis.timeline]


def test_worker_table_and_switch_in_the_page(workers_analysis: Analysis) -> None:
    page = render_html(workers_analysis)
    html = section(page, "workers")
    rows = re.findall(r'<tr class="worker-row.*?</tr>', html, re.S)
    assert len(rows) == 2
    hot, calm = (" ".join(text_of(r).split()) for r in rows)
    assert hot.startswith(f"PID {HOT_PID} most blocked uvicorn worker 33.6% 380 ms 5 100 ms")
    assert f"{SLOW.function} \u2026/app/main.py:12 300 ms" in hot  # hostile name, as text
    assert calm == f"PID {CALM_PID} uvicorn worker 4.8% \u2013 0 \u2013 nothing blocked"
    assert 'class="worker-row hot" data-pid="11"' in rows[0]
    options = re.findall(r'<option value="(\d*)">([^<]*)</option>', html)
    assert options == [
        ("", "all workers"),
        (str(HOT_PID), f"PID {HOT_PID} (worker 1)"),
        (str(CALM_PID), f"PID {CALM_PID} (worker 2)"),
    ]
    # Before the culprits it narrows, in the table of contents, and badges on both sections.
    assert page.index("<main>") < page.index('id="workers"') < page.index('id="culprits"')
    assert 'href="#workers"' in page
    badge = '<span class="worker-badge" data-worker-badge hidden></span>'
    assert page.count(badge) == 2 and 'id="culprits-worker-empty"' in page
    assert SCRIPT not in page and "onerror=alert" not in page


def test_a_single_process_report_has_no_worker_switch(analysis: Analysis, page: str) -> None:
    assert report_payload(analysis)["workers"] == []
    assert report_context(analysis)["workers"] is None
    for trace in (
        'id="workers"',
        'id="worker-select"',
        'class="worker-badge"',
        'id="culprits-worker-empty"',
    ):
        assert trace not in page
    assert "Workers" not in text_of(page)
