"""reporters/document.py: result dataclasses -> plain dicts, with one set of rounding rules;
and reporters/ reads only the Analysis (no analysis step is imported there)."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import orjson

from asgiprof.analyze.result import Culprit, SourceShare
from asgiprof.reporters.document import DIGITS, digits_of, plain, plain_list, rounded

REPORTERS = Path(__file__).resolve().parents[2] / "asgiprof" / "reporters"


@dataclass(frozen=True)
class _Row:
    name: str
    blocked_ms: float
    utilization: float
    at_s: float
    shares: tuple[float, ...]
    parts: tuple[SourceShare, ...] = ()


def test_fields_become_keys_tuples_lists_and_nested_dataclasses_dicts() -> None:
    row = _Row(
        "a",
        1.23456,
        0.123456,
        1.23456789,
        (0.333333, 0.666666),
        (SourceShare("x", 2.0004, 1, 2.0004),),
    )
    assert plain(row) == {
        "name": "a",
        "blocked_ms": 1.235,  # *_ms: 3 digits
        "utilization": 0.1235,  # named in DIGITS: 4
        "at_s": 1.23456789,  # not named: written as computed
        "shares": [0.3333, 0.6667],
        "parts": [{"source": "x", "blocked_ms": 2.0, "episodes": 1, "max_ms": 2.0}],
    }
    assert plain(row, ("name", "at_s")) == {"name": "a", "at_s": 1.23456789}
    assert set(plain(row, exclude=("parts",))) == {
        "name",
        "blocked_ms",
        "utilization",
        "at_s",
        "shares",
    }
    assert plain(row, rounding=False)["blocked_ms"] == 1.23456
    assert plain_list([row, row], ("name",)) == [{"name": "a"}, {"name": "a"}]


def test_rounding_never_writes_negative_zero_and_keeps_ints() -> None:
    assert orjson.dumps(rounded(-0.0001, 3)) == b"0.0"
    row = _Row("a", 0, 1, 0.0, ())  # ints where floats are declared stay ints, as round() does
    assert (
        orjson.dumps(plain(row, ("blocked_ms", "utilization")))
        == b'{"blocked_ms":0,"utilization":1}'
    )


def test_digits_rules() -> None:
    assert digits_of("anything_ms") == 3 and digits_of("share") == 4 and digits_of("pid") is None
    assert all(isinstance(d, int) and 0 < d <= 6 for d in DIGITS.values())


def test_a_culprit_is_one_dict_whatever_reads_it() -> None:
    c = Culprit(
        1,
        "/a.py",
        3,
        "f",
        "x()",
        "GET /",
        ("GET /",),
        "io",
        12.34567,
        2,
        8.9,
        ("f (/a.py:3)",),
        0,
        None,
        0.12345,
    )
    doc = plain(c)
    assert doc["blocked_ms"] == 12.346 and doc["cpu_ratio"] == 0.123 and doc["routes"] == ["GET /"]
    assert set(doc) == set(Culprit.__dataclass_fields__)


def test_reporters_import_nothing_of_the_analysis_but_its_result() -> None:
    # Reporters format the Analysis; an import of an analysis step means they compute.
    allowed = {"asgiprof.analyze.result", "asgiprof.analyze.frames"}
    found = {}
    for path in REPORTERS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "asgiprof.analyze"
            ):
                if node.module not in allowed:
                    found[str(path.relative_to(REPORTERS))] = node.module
    assert found == {}
