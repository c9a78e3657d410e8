"""The speedscope and folded exports: valid, lossless on totals, robust to hostile names."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from asgiprof.analyze.result import ROUTE_VIEW_PREFIX, VIEW_BLOCKING, Analysis
from asgiprof.model import NO_STACK
from asgiprof.reporters import folded, speedscope
from asgiprof.reporters.folded import folded_lines, frame_text
from asgiprof.reporters.speedscope import SCHEMA_URL, speedscope_document
from tests.reporter_fixtures import (
    HOSTILE_FN,
    PLANTED,
    QUOTED_FN,
    SEMI_FN,
    sample_analysis,
)

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "data" / "speedscope-schema.json"
# What str.splitlines() splits on: none may survive inside a folded line.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


@pytest.fixture(scope="module")
def analysis() -> Analysis:
    return sample_analysis()


@pytest.fixture(scope="module")
def document(analysis: Analysis, tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("speedscope")
    path = speedscope.REPORTER.render(analysis, out)
    assert path == out / "profile.speedscope.json"
    return json.loads(path.read_bytes())


# ---- speedscope --------------------------------------------------------------------------


def test_speedscope_validates_against_the_schema(document: Any) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(document, schema, cls=jsonschema.Draft7Validator)
    assert document["$schema"] == SCHEMA_URL


def test_speedscope_rejects_what_the_schema_forbids() -> None:
    # The schema subset is not vacuous: a wrong unit or a missing field fails.
    schema = json.loads(SCHEMA_PATH.read_text())
    bad = {
        "$schema": SCHEMA_URL,
        "shared": {"frames": [{"name": "f"}]},
        "profiles": [{"type": "sampled", "name": "x", "unit": "ticks", "startValue": 0,
                      "endValue": 1, "samples": [[0]], "weights": [1]}],
    }  # fmt: skip
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    del bad["shared"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_speedscope_profiles_are_consistent(document: Any) -> None:
    n_frames = len(document["shared"]["frames"])
    for p in document["profiles"]:
        assert len(p["samples"]) == len(p["weights"])
        assert all(0 <= f < n_frames for stack in p["samples"] for f in stack)
        assert p["endValue"] - p["startValue"] == pytest.approx(sum(p["weights"]), abs=1e-6)
        assert all(w >= 0 for w in p["weights"])
    assert 0 <= document["activeProfileIndex"] < len(document["profiles"])


def test_one_profile_per_thread_event_loop_first(analysis: Analysis, document: Any) -> None:
    names = [p["name"] for p in document["profiles"]]
    threads = names[: len(analysis.profile.threads)]
    assert threads[0] == "event-loop pid 4242 tid 4242 (MainThread)"
    assert [n.split(" ")[0] for n in threads] == ["event-loop", "threadpool", "threadpool"]
    extra = names[len(analysis.profile.threads) :]
    assert extra == ["blocking episodes (event loop)"] + [
        f"route {r.route}" for r in analysis.routes
    ]


def test_thread_profiles_replay_the_runs_in_time_order(analysis: Analysis, document: Any) -> None:
    profile = analysis.profile
    frames = document["shared"]["frames"]
    by_name = {p["name"]: p for p in document["profiles"]}
    for tl in profile.threads:
        p = by_name[speedscope.thread_profile_name(analysis, tl)]
        runs = [(sid, dur) for _, dur, sid, _ in tl.runs() if sid != NO_STACK]
        assert len(p["samples"]) == len(runs)
        for stack, weight, (sid, dur) in zip(p["samples"], p["weights"], runs, strict=True):
            assert weight == pytest.approx(dur * 1000, abs=1e-3)
            got = [(frames[i]["name"], frames[i]["file"], frames[i]["line"]) for i in stack]
            assert got == [(f.function, f.file, f.line) for f in profile.stack_frames(sid)]


def test_route_and_blocking_profiles_carry_the_view_weights(
    analysis: Analysis, document: Any
) -> None:
    by_name = {p["name"]: p for p in document["profiles"]}
    for r in analysis.routes:
        view = analysis.views[ROUTE_VIEW_PREFIX + r.route]
        assert sum(by_name[f"route {r.route}"]["weights"]) == pytest.approx(
            sum(view.values()), abs=1e-2
        )
    blocking = by_name["blocking episodes (event loop)"]
    assert sum(blocking["weights"]) == pytest.approx(
        sum(analysis.views[VIEW_BLOCKING].values()), abs=1e-2
    )


def test_speedscope_keeps_hostile_names_exactly(document: Any) -> None:
    names = {(f["name"], f["file"]) for f in document["shared"]["frames"]}
    for frame in (HOSTILE_FN, QUOTED_FN, SEMI_FN, PLANTED):
        assert (frame.function, frame.file) in names


def test_speedscope_bytes_are_deterministic(analysis: Analysis, tmp_path: Path) -> None:
    written = speedscope.REPORTER.render(analysis, tmp_path).read_bytes()
    assert written == orjson.dumps(speedscope_document(analysis), option=orjson.OPT_SORT_KEYS)
    assert written == orjson.dumps(
        speedscope_document(sample_analysis()), option=orjson.OPT_SORT_KEYS
    )


# ---- folded ------------------------------------------------------------------------------


def parse_folded(text: str) -> dict[tuple[str, ...], int]:
    out: dict[tuple[str, ...], int] = {}
    for line in text.split("\n"):
        if not line:
            continue
        stack, count = line.rsplit(" ", 1)
        out[tuple(stack.split(";"))] = int(count)
    return out


def test_folded_parses_back_to_the_same_totals(analysis: Analysis, tmp_path: Path) -> None:
    path = folded.REPORTER.render(analysis, tmp_path)
    assert path == tmp_path / "stacks.folded"
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and text.splitlines() == text.rstrip("\n").split("\n")
    parsed = parse_folded(text)
    profile = analysis.profile
    assert sum(parsed.values()) == profile.sampling.samples
    expected: dict[tuple[str, ...], int] = defaultdict(int)
    for tl in profile.threads:
        for _, _, sid, n in tl.runs():
            expected[tuple(frame_text(f) for f in profile.stack_frames(sid))] += n
    assert parsed == expected
    # One line per distinct stack, root first.
    assert len(parsed) == len({sid for tl in profile.threads for sid in tl.stack})
    assert all(stack[0].startswith("Runner.run") or stack[0].startswith("Thread._bootstrap")
               for stack in parsed)  # fmt: skip


def test_folded_frames_are_function_file_line_and_stay_parseable(analysis: Analysis) -> None:
    frame_re = re.compile(r"^.* \(.*:\d+\)$")
    for line in folded_lines(analysis):
        assert not any(ch in line for ch in LINE_BREAKS)
        stack, count = line.rsplit(" ", 1)
        assert count.isdigit()
        assert all(frame_re.match(f) for f in stack.split(";"))
    assert frame_text(SEMI_FN) == "semi,colon newline (/srv/app/odd,path.py:5)"
    assert frame_text(PLANTED) == "get_user (/srv/app/main.py:42)"


def test_folded_keeps_hostile_names_as_text(analysis: Analysis) -> None:
    text = "\n".join(folded_lines(analysis))
    assert frame_text(HOSTILE_FN) in text and "</script><script>alert(1)</script>" in text
    assert frame_text(QUOTED_FN) in text


def test_folded_lines_are_sorted_and_deterministic(analysis: Analysis) -> None:
    lines = folded_lines(analysis)
    assert lines == sorted(lines) == folded_lines(analysis)
