"""`asgiprof check`: rules over a summary.json written by the real reporter from a hand-built
analysis; JUnit read back with junitparser, annotations against GitHub's command syntax."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import junitparser
import orjson
import pytest
from typer.testing import CliRunner

from asgiprof.analyze import analyze
from asgiprof.analyze.result import Analysis
from asgiprof.cli import app
from asgiprof.errors import CorruptProfileError, UsageError
from asgiprof.gate import Rules, check
from asgiprof.model import Frame, LoadInfo, Route
from asgiprof.reporters.annotations import annotation_lines, escape_data, escape_property
from asgiprof.reporters.check import check_json, check_lines
from asgiprof.reporters.junit import junit_xml
from asgiprof.reporters.summary_json import REPORTER as SUMMARY
from tests.profile_builder import APP, IDLE, ONE_EPISODE_IS_ENOUGH, Builder, busy, source_reader

USERS = Frame("get_user", APP, 12)
REPORT = Frame("report", APP, 40)
ROUTES = (
    Route("GET", "/users/{user_id}", "main.get_user", APP, 10, 14, True),
    Route("GET", "/report", "main.report", APP, 38, 42, True),
)
SOURCE = {(APP, 12): "time.sleep(0.05)", (APP, 40): "sum(i * i for i in range(N))"}


def _analysis(users_ms: int = 80, report_ms: int = 50, load: LoadInfo | None = None) -> Analysis:
    b = Builder(routes=ROUTES)
    for _ in range(3):
        b.add(1, IDLE, 20)
        if users_ms:
            b.add(1, busy(USERS), users_ms // 10)
        b.add(1, IDLE, 20)
        if report_ms:
            b.add(1, busy(REPORT), report_ms // 10)
    profile = b.build()
    profile.target = replace(profile.target, cwd="/srv")
    profile.load = load
    return analyze(profile, ONE_EPISODE_IS_ENOUGH, source_reader(SOURCE))


def _out(tmp_path: Path, name: str, analysis: Analysis) -> Path:
    out = tmp_path / name
    out.mkdir()
    SUMMARY.render(analysis, out)
    return out


def test_every_culprit_fails_by_default_one_line_each(tmp_path: Path) -> None:
    out = _out(tmp_path, "run", _analysis())
    result = check(out, Rules())
    assert result.exit_code == 1
    lines = check_lines(result)
    # kind and advice as the analysis gave them (its rules may change; the line's shape not)
    users, report = result.culprits
    assert lines[:2] == [
        "culprit: GET /users/{user_id} app/main.py:12 blocked 240 ms (3 episode(s), longest "
        f"80 ms), {users.kind}: {users.advice} [a culprit]",
        "culprit: GET /report app/main.py:40 blocked 150 ms (3 episode(s), longest 50 ms), "
        f"{report.kind}: {report.advice or 'no known fix: see its stack in report.html'} "
        "[a culprit]",
    ]
    assert users.advice is not None and "time.sleep()" in users.advice
    assert lines[-1].startswith("asgiprof check: FAILED, 2 failure(s)")


def test_a_profile_without_culprits_passes(tmp_path: Path) -> None:
    out = _out(tmp_path, "run", _analysis(users_ms=0, report_ms=0))
    result = check(out, Rules(max_block_ms=10, max_blocked_share=0.0))
    assert result.passed and result.exit_code == 0
    assert check_lines(result) == [
        "asgiprof check: passed (0 culprit(s), 0 route(s), event loop blocked 0.0% of its time)"
    ]


def test_ignore_by_file_line_and_glob(tmp_path: Path) -> None:
    out = _out(tmp_path, "run", _analysis())
    by_line = check(out, Rules(ignore=("app/main.py:12",)))
    assert [f.culprit.line for f in by_line.failures if f.culprit] == [40]
    by_glob = check(out, Rules(ignore=("*/app/*", "nothing/*.py:3")))
    assert by_glob.passed
    assert by_glob.unmatched_ignores == ("nothing/*.py:3",)
    assert "note: --ignore nothing/*.py:3 matched no culprit" in check_lines(by_glob)


def test_baseline_fails_only_new_culprits(tmp_path: Path) -> None:
    base = _out(tmp_path, "base", _analysis(report_ms=0))
    head = _out(tmp_path, "head", _analysis())
    result = check(head, Rules(fail_on="new-culprit", baseline=base))
    assert [(f.rule, f.culprit.line) for f in result.failures if f.culprit] == [("new-culprit", 40)]
    same = check(head, Rules(baseline=head))
    assert same.passed


def test_thresholds_name_route_and_line(tmp_path: Path) -> None:
    out = _out(tmp_path, "run", _analysis())
    result = check(out, Rules(fail_on="none", max_block_ms=60, max_blocked_share=0.1))
    rules = [(f.rule, f.route) for f in result.failures]
    # users blocks 80 ms at once (> 60); 240 of 1590 ms is 15% (> 10%), report's 150 ms 9.4%
    assert rules == [
        ("max-block-ms", "GET /users/{user_id}"),
        ("max-blocked-share", "GET /users/{user_id}"),
        ("max-blocked-share", None),
    ]
    assert "15.1% of its time > 10.0%; most of it at app/main.py:12, " in (
        result.failures[1].message
    )


def test_a_failed_load_fails_the_check(tmp_path: Path) -> None:
    load = LoadInfo("wrk http://127.0.0.1:1/", "http://127.0.0.1:1", 0.1, 1.0, "exit", 1, ("boom",))
    out = _out(tmp_path, "run", _analysis(users_ms=0, report_ms=0, load=load))
    result = check(out, Rules())
    assert [f.message for f in result.failures] == [
        "load: the load command exited with status 1 (wrk http://127.0.0.1:1/); its last "
        "output: boom"
    ]
    assert check_json(result)["load"]["exit_status"] == 1


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p, "is not a directory"),
        (lambda p: (p.mkdir(), p)[1], "summary.json is missing"),
        (lambda p: (p.mkdir(), (p / "summary.json").write_text("{"), p)[-1], "is unreadable"),
        (
            lambda p: (p.mkdir(), (p / "summary.json").write_text('{"schema": 1}'), p)[-1],
            "is not an asgiprof schema-1 summary",
        ),
    ],
)
def test_bad_input_is_exit_2(tmp_path: Path, setup: object, message: str) -> None:
    out = setup(tmp_path / "out")  # type: ignore[operator]
    with pytest.raises((UsageError, CorruptProfileError)) as info:
        check(out, Rules())
    assert info.value.exit_code == 2
    assert message in info.value.message


def test_new_culprit_needs_a_baseline(tmp_path: Path) -> None:
    out = _out(tmp_path, "run", _analysis())
    with pytest.raises(UsageError, match="needs --baseline"):
        check(out, Rules(fail_on="new-culprit"))


def test_junit_parses_with_junitparser_one_case_per_culprit_and_route(tmp_path: Path) -> None:
    out = _out(tmp_path, "run", _analysis())
    result = check(out, Rules(ignore=("app/main.py:40",)))
    path = tmp_path / "junit.xml"
    path.write_bytes(junit_xml(result))
    xml = junitparser.JUnitXml.fromfile(str(path))
    suites = list(xml) if isinstance(xml, junitparser.JUnitXml) else [xml]
    cases = {(c.classname, c.name): c for s in suites for c in s}
    assert set(cases) == {
        ("asgiprof.culprits", "app/main.py:12 (GET /users/{user_id})"),
        ("asgiprof.culprits", "app/main.py:40 (GET /report)"),
        ("asgiprof.routes", "GET /users/{user_id}"),
        ("asgiprof.routes", "GET /report"),
        ("asgiprof.event_loop", "event loop"),
    }
    failed = cases[("asgiprof.culprits", "app/main.py:12 (GET /users/{user_id})")]
    assert [type(r).__name__ for r in failed.result] == ["Failure"]
    skipped = cases[("asgiprof.culprits", "app/main.py:40 (GET /report)")]
    assert [type(r).__name__ for r in skipped.result] == ["Skipped"]
    assert cases[("asgiprof.routes", "GET /report")].is_passed
    suite = suites[0]
    assert (suite.tests, suite.failures, suite.skipped) == (5, 1, 1)


def test_junit_drops_characters_xml_forbids(tmp_path: Path) -> None:
    hostile = Frame("get_user", "/srv/app/<b>\x1b[31m&.py", 12)
    b = Builder()
    b.add(1, IDLE, 5)
    b.add(1, busy(hostile), 8)
    out = _out(tmp_path, "run", analyze(b.build(), ONE_EPISODE_IS_ENOUGH))
    xml = junitparser.JUnitXml.fromstring(junit_xml(check(out, Rules())).decode())
    names = [c.name for s in xml for c in s]
    assert "/srv/app/<b>[31m&.py:12 (get_user)" in names


# GitHub's workflow command: `::error` then comma-separated key=value properties, `::`, data.
_COMMAND = re.compile(r"^::error(?: (?P<props>[^:]*))?::(?P<data>[^\r\n]*)$")


def _unescape_property(v: str) -> str:
    return (
        v.replace("%2C", ",").replace("%3A", ":").replace("%0A", "\n").replace("%0D", "\r")
    ).replace("%25", "%")


def test_annotations_match_githubs_syntax_and_escape_its_specials(tmp_path: Path) -> None:
    out = _out(tmp_path, "run", _analysis())
    lines = annotation_lines(check(out, Rules(max_block_ms=60)), workspace="/srv")
    assert len(lines) == 3
    for line in lines:
        m = _COMMAND.match(line)
        assert m is not None, line
        props = dict(p.split("=", 1) for p in m["props"].split(","))
        assert set(props) == {"file", "line", "title"}
    first = _COMMAND.match(lines[0])
    assert first is not None
    assert dict(p.split("=", 1) for p in first["props"].split(",")) == {
        "file": "app/main.py",
        "line": "12",
        "title": "asgiprof culprit",
    }
    assert escape_data("50% done\r\nnext\x1b[31m") == "50%25 done%0D%0Anext\u241b[31m"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    assert _unescape_property(escape_property("x:1,2%\n")) == "x:1,2%\n"


def test_cli_check_exit_codes_json_and_junit(tmp_path: Path) -> None:
    out = _out(tmp_path, "run", _analysis())
    runner = CliRunner()
    failed = runner.invoke(app, ["check", str(out), "--format", "json"])
    assert failed.exit_code == 1
    data = orjson.loads(failed.stdout)
    assert data["passed"] is False and len(data["failures"]) == 2
    junit = tmp_path / "j.xml"
    passed = runner.invoke(app, ["check", str(out), "--ignore", "app/*", "--junit", str(junit)])
    assert passed.exit_code == 0, passed.stdout
    assert junit.exists()
    annotated = runner.invoke(app, ["check", str(out)], env={"GITHUB_ACTIONS": "true"})
    assert annotated.stdout.startswith("::error file=")
