"""report.html without a browser: the embedded payload decodes to what Python built, hostile
text stays inert, the page loads nothing from anywhere, and the bytes are deterministic."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest

from asgiprof.analyze.result import VIEW_ALL, VIEW_BLOCKING, VIEW_LOOP, Analysis
from asgiprof.model import RouteTable, TargetInfo
from asgiprof.reporters.html import (
    PAYLOAD_ELEMENT_ID,
    REPORTER,
    build_call_tree,
    code_spans,
    format_count,
    format_ms,
    format_pct,
    inline_asset,
    render_html,
    report_payload,
    short_path,
    tojson,
)
from tests.reporter_fixtures import (
    HOSTILE,
    HOSTILE_FN,
    IMG,
    PLANTED,
    PLANTED_CODE,
    QUOTED_FN,
    SCRIPT,
    TEMPLATE,
    UNICODE,
    URL,
    sample_analysis,
    synthesize,
)
from tests.reporter_fixtures import ROUTES as FIXTURE_ROUTES

PAYLOAD_RE = re.compile(
    rf'<script type="application/json" id="{PAYLOAD_ELEMENT_ID}">(.*?)</script>', re.S
)


# Every element the templates use: data must never add one.
PAGE_TAGS = frozenset(
    "html head meta title link style body div span main header footer section h1 h2 p code"
    " pre strong ul li ol table thead tbody tr th td button label select option input nav"
    " canvas script".split()
)


class PageParts(HTMLParser):
    """Tags, attributes, text, and the bodies of script and style elements of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []
        self.text: list[str] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.styles: list[str] = []
        self._open: tuple[str, dict[str, str | None]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((tag, name, value) for name, value in attrs)
        if tag in ("script", "style"):
            self._open = (tag, dict(attrs))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is None:
            self.text.append(data)
        elif self._open[0] == "script":
            self.scripts.append((self._open[1], data))
        else:
            self.styles.append(data)


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
    assert {data["route_names"][r] for r in ep["route"]} == {
        e.route for e in analysis.episodes if e.route
    }
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


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_csp_allows_exactly_the_inline_script_and_style(parts: PageParts) -> None:
    csp = [v for tag, name, v in parts.attrs if tag == "meta" and name == "content" and v][0]
    policy = dict(item.strip().split(" ", 1) for item in csp.split(";"))
    assert policy["default-src"] == "'none'"
    code = [body for attrs, body in parts.scripts if "type" not in attrs]
    assert len(code) == 1 and len(parts.styles) == 1
    assert policy["script-src"] == _sha256(code[0])
    assert policy["style-src"] == _sha256(parts.styles[0])
    assert ("meta", "http-equiv", "Content-Security-Policy") in parts.attrs
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp


def test_nothing_references_a_remote_url(page: str, parts: PageParts) -> None:
    # A URL in target text (here the command) is fine as text; nowhere else.
    for tag, name, value in parts.attrs:
        assert not re.search(r"(?i)(https?:)?//", value or ""), (tag, name, value)
        if name in ("src", "href", "action", "srcset", "poster"):
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
    target = TargetInfo((1,), ("uvicorn", "app:app"), "uvicorn")
    empty = synthesize(target, [], RouteTable(FIXTURE_ROUTES, "app"))
    page = render_html(empty)
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
