"""`asgiprof check --junit FILE`: JUnit XML, one test case per culprit, route and load.

A failing rule becomes a <failure> of the case it names (culprit, route; loop-wide ones go
to the "event loop" case); an --ignore'd culprit is <skipped>. Characters XML 1.0 forbids
(control characters from the target) are dropped; ElementTree escapes the rest.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from asgiprof.gate import CheckResult, Failure

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
SUITE = "asgiprof check"


def _x(text: str) -> str:
    return _NOT_XML.sub("", text)


def _case(suite: ET.Element, classname: str, name: str, failures: list[Failure]) -> ET.Element:
    case = ET.SubElement(suite, "testcase", classname=_x(classname), name=_x(name), time="0")
    if failures:
        case.set("asgiprof-failed", "1")  # counted and removed by junit_xml
    for f in failures:
        el = ET.SubElement(case, "failure", message=_x(f.message), type=f.rule)
        el.text = _x(f.message)
    return case


def junit_xml(result: CheckResult) -> bytes:
    suites = ET.Element("testsuites", name="asgiprof")
    suite = ET.SubElement(suites, "testsuite", name=SUITE)
    by_culprit: dict[int, list[Failure]] = {}
    by_route: dict[str, list[Failure]] = {}
    loop: list[Failure] = []
    load: list[Failure] = []
    for f in result.failures:
        if f.culprit is not None:
            by_culprit.setdefault(id(f.culprit), []).append(f)
        elif f.rule == "load":
            load.append(f)
        elif f.route is not None:
            by_route.setdefault(f.route, []).append(f)
        else:
            loop.append(f)
    cases = failed = skipped = 0
    for c in result.culprits:
        name = f"{c.rel_file}:{c.line} ({c.route or 'no route'})"
        case = _case(suite, "asgiprof.culprits", name, by_culprit.get(id(c), []))
        if c.ignored_by is not None:
            ET.SubElement(case, "skipped", message=_x(f"ignored by --ignore {c.ignored_by}"))
            skipped += 1
        cases += 1
    for r in result.routes:
        _case(suite, "asgiprof.routes", r.route, by_route.get(r.route, []))
        cases += 1
    _case(suite, "asgiprof.event_loop", "event loop", loop)
    cases += 1
    if result.load is not None or load:
        _case(suite, "asgiprof.load", "load command", load)
        cases += 1
    for case in suite.iter("testcase"):
        if case.attrib.pop("asgiprof-failed", None):
            failed += 1
    suite.set("tests", str(cases))
    suite.set("failures", str(failed))
    suite.set("errors", "0")
    suite.set("skipped", str(skipped))
    suites.set("tests", str(cases))
    suites.set("failures", str(failed))
    body: bytes = ET.tostring(suites, encoding="utf-8", xml_declaration=True)
    return body + b"\n"


def write_junit(result: CheckResult, path: Path) -> Path:
    path.write_bytes(junit_xml(result))
    return path
