"""Findings only from evidence: a blocking-dependency finding needs a ranked culprit line
under the dependency and a minimum of samples; a header counting blocking episodes is never
followed by "no blocking episodes" when none of them has a culprit line."""

from __future__ import annotations

from rich.console import Console

from asgiprof.analyze import analyze
from asgiprof.analyze.result import AnalysisParams
from asgiprof.model import Frame
from asgiprof.reporters.html import render_html
from asgiprof.reporters.terminal import print_summary
from tests.fastapi_frames import (
    CURRENT_USER,
    ENDPOINT,
    FASTAPI,
    ROUTES,
    SOLVE,
    SOURCE,
)
from tests.profile_builder import IDLE, SITE, Builder, request, source_reader

OAUTH2 = Frame("OAuth2PasswordBearer.__call__", f"{SITE}/fastapi/security/oauth2.py", 488)
RANK_ONE_OFFS = AnalysisParams(one_off_factor=0)  # rank every line: only the sample rule acts
read_line = source_reader(SOURCE)


def solving(frame: Frame, samples: int) -> Builder:
    b = Builder(routes=ROUTES)
    b.add(1, IDLE, 30)
    b.add(1, request(FASTAPI, *ENDPOINT[:3], SOLVE, frame), samples)
    b.add(1, IDLE, 30)
    return b


def blocking_dependency_findings(b: Builder, params: AnalysisParams) -> list[str]:
    a = analyze(b.build(), params, read_line=read_line)
    return [f.subject or "" for f in a.findings if f.kind == "blocking-dependency"]


def test_a_few_samples_of_a_security_scheme_make_no_finding() -> None:
    # GIVEN FastAPI's OAuth2PasswordBearer caught on the loop 3 samples in a row (30 ms)
    b = solving(OAUTH2, 3)
    a = analyze(b.build(), RANK_ONE_OFFS, read_line=read_line)
    # THEN it is in the dependency table, but no finding names it
    assert [d.name for d in a.dependencies.dependencies] == ["OAuth2PasswordBearer.__call__"]
    assert not [f for f in a.findings if f.kind == "blocking-dependency"]


def test_dependency_time_without_a_culprit_line_under_it_makes_no_finding() -> None:
    # GIVEN a library dependency holding the loop 150 ms (15 samples), no line of user code
    b = solving(OAUTH2, 15)
    a = analyze(b.build(), RANK_ONE_OFFS, read_line=read_line)
    (dep,) = a.dependencies.dependencies
    assert dep.blocked_ms >= 100 and dep.samples >= 10
    # THEN there is no culprit in it, so no finding either
    assert not [c for c in a.culprits if c.context == "dependency"]
    assert not [f for f in a.findings if f.kind == "blocking-dependency"]


def test_a_user_dependency_line_needs_the_minimum_of_samples() -> None:
    # GIVEN the app's own dependency blocking at a ranked line, 3 then 15 samples
    few = blocking_dependency_findings(solving(CURRENT_USER, 3), RANK_ONE_OFFS)
    many = blocking_dependency_findings(solving(CURRENT_USER, 15), RANK_ONE_OFFS)
    # THEN only the well-sampled one is a finding
    assert RANK_ONE_OFFS.finding_min_samples == 10
    assert few == [] and many == ["current_user"]


def test_the_finding_names_the_culprit_line() -> None:
    a = analyze(solving(CURRENT_USER, 15).build(), RANK_ONE_OFFS, read_line=read_line)
    (finding,) = [f for f in a.findings if f.kind == "blocking-dependency"]
    assert f"{CURRENT_USER.file}:{CURRENT_USER.line}" in finding.detail
    assert "15 samples" in finding.detail


def library_only_episodes() -> Builder:
    """Two 60 ms episodes in library code: counted in the header, no line of user code."""
    lib = Frame("Encoder.encode", f"{SITE}/somelib/encoder.py", 40)
    b = Builder(routes=ROUTES)
    for _ in range(2):
        b.add(1, IDLE, 20)
        b.add(1, request(FASTAPI, *ENDPOINT, lib), 6)
    b.add(1, IDLE, 20)
    return b


def test_episodes_without_culprits_are_never_reported_as_none_found() -> None:
    a = analyze(library_only_episodes().build(), read_line=read_line)
    assert a.loop.episodes == 2 and not a.culprits
    page = render_html(a)
    # THEN the page counts the episodes the header counts, and never says there were none
    assert "No blocking episodes" not in page
    assert "2 blocking episodes of 20 ms or more (120 ms in all) held the event loop" in page
    console = Console(record=True, width=200)
    print_summary(a, console)
    text = console.export_text()
    assert "2 episodes" in text and "nothing in your code held" not in text
    assert "the 2 blocking episode(s) (120 ms) had no single line of your code" in text
