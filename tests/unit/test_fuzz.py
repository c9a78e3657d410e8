"""Issue 6: property and fuzz tests of the parsers of untrusted input, py-spy's chunks and
saved output directories. Whatever they are given (random JSON, truncated files, hostile
names, 1,000-frame stacks) they give a CorruptProfileError or a result, and every result
analyses and reports without an exception.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from asgiprof import store
from asgiprof.analyze import analyze
from asgiprof.errors import CorruptProfileError
from asgiprof.model import Chunk, Frame, Interner, SamplingInfo, TargetInfo
from asgiprof.reporters import write_all
from asgiprof.reporters.terminal import print_summary
from asgiprof.store.pyspy import parse_chunk, seal
from tests.profile_builder import IDLE, busy

FUZZ = settings(
    max_examples=100,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

HOSTILE = (
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[bold]x[/bold]",
    "{{ x }}{% raw %}",
    "\x1b[31mred\x1b]0;title\x07",
    "a;b c",
    "line\nbreak\r",
    "\"quoted' `back`",
    "\u202eevil\u2066",
    "\x00nul",
    "💥 ünï",
    "",
)
NAMES = st.sampled_from(HOSTILE) | st.text(max_size=24)
FILES = st.sampled_from(["/srv/app/main.py", "<frozen runpy>", "", "/tmp/ü<b>/x.py"]) | NAMES
LOOP_FRAMES = [*IDLE, *busy(Frame("handler", "/srv/app/main.py", 12))]

JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | NAMES
)
JSON = st.recursive(
    JSON_LEAF,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(NAMES, children, max_size=4),
    max_leaves=12,
)


def _frame_json(frame: Frame) -> dict[str, Any]:
    return {"name": frame.function, "file": frame.file, "line": frame.line, "col": None}


@st.composite
def chunk_docs(draw: st.DrawFn, max_depth: int = 12) -> dict[str, Any]:
    """Documents shaped like `py-spy record --idle --threads --subprocesses` output, with
    hostile names, asyncio loop frames (so episodes and culprits are exercised) and edge
    cases py-spy itself produces (empty stacks, threads without samples)."""
    pid = draw(st.integers(min_value=1, max_value=2**22))
    code = [
        {"name": draw(NAMES), "file": draw(FILES), "line": draw(st.integers(0, 10**6))}
        for _ in range(draw(st.integers(0, 6)))
    ]
    frames: list[dict[str, Any]] = [
        {"name": f'process {pid}:"{draw(NAMES)}"', "file": "", "line": 0},
        *[_frame_json(f) for f in LOOP_FRAMES],
        *code,
    ]
    n_code = len(frames)
    tids = draw(st.lists(st.integers(1, 2**22), max_size=3, unique=True))
    profiles = []
    for tid in tids:
        frames.append({"name": f"thread ({tid}): {draw(NAMES)}", "file": "", "line": 0})
        thread_frame = len(frames) - 1
        stacks = draw(
            st.lists(
                st.lists(st.integers(1, n_code - 1), max_size=max_depth)
                | st.just(list(range(1, 1 + len(IDLE))))
                | st.just([1, 2, 3, *range(1 + len(IDLE), 1 + len(LOOP_FRAMES))]),
                max_size=40,
            )
        )
        profiles.append(
            {
                "type": "sampled",
                "name": f'Process {pid} Thread {tid} "{draw(NAMES)}"',
                "unit": "seconds",
                "startValue": 0.0,
                "endValue": 0.01 * len(stacks),
                "samples": [[0, thread_frame, *s] for s in stacks],
                "weights": [0.01] * len(stacks),
            }
        )
    return {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": frames},
        "profiles": profiles,
        "name": "py-spy profile",
        "exporter": "py-spy@0.4.3",
        "activeProfileIndex": 0,
    }


def _parse(data: bytes) -> list[Any] | None:
    """parse_chunk's result, or None for a CorruptProfileError; anything else fails."""
    frames: list[Frame] = []
    stacks: list[tuple[int, ...]] = []
    try:
        return list(parse_chunk(data, Interner(frames, stacks), default_pid=1))
    except CorruptProfileError as exc:
        assert exc.message
        return None


# --- py-spy chunks ------------------------------------------------------------------------


@FUZZ
@given(chunk_docs())
def test_a_well_formed_chunk_parses_to_every_sample(doc: dict[str, Any]) -> None:
    threads = _parse(orjson.dumps(doc))
    assert threads is not None
    assert [t.n_samples for t in threads] == [len(p["samples"]) for p in doc["profiles"]]


@FUZZ
@given(chunk_docs(), st.data())
def test_a_truncated_chunk_is_an_error_or_a_result(
    doc: dict[str, Any], data: st.DataObject
) -> None:
    raw = orjson.dumps(doc)
    cut = data.draw(st.integers(0, len(raw)))
    _parse(raw[:cut])
    try:
        seal(raw[:cut])
    except CorruptProfileError:
        pass


@FUZZ
@given(chunk_docs(), st.data())
def test_random_json_anywhere_in_a_chunk_is_an_error_or_a_result(
    doc: dict[str, Any], data: st.DataObject
) -> None:
    # GIVEN a chunk with one value, at any depth, replaced by random JSON
    target: Any = doc
    for _ in range(data.draw(st.integers(0, 5))):
        if isinstance(target, dict) and target:
            key = data.draw(st.sampled_from(sorted(target)))
            if not isinstance(target[key], dict | list) or data.draw(st.booleans()):
                target[key] = data.draw(JSON)
                break
            target = target[key]
        elif isinstance(target, list) and target:
            i = data.draw(st.integers(0, len(target) - 1))
            if not isinstance(target[i], dict | list) or data.draw(st.booleans()):
                target[i] = data.draw(JSON)
                break
            target = target[i]
    # THEN parsing raises CorruptProfileError or returns threads, never anything else
    raw = orjson.dumps(doc)
    _parse(raw)
    try:
        seal(raw)
    except CorruptProfileError:
        pass


@FUZZ
@given(JSON | st.binary(max_size=200))
def test_anything_else_is_not_a_chunk(value: Any) -> None:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    _parse(raw)


# --- saved output directories ---------------------------------------------------------------


def _write_profile(out: Path, docs: list[dict[str, Any]], spans: list[Any]) -> None:
    """An output directory as `run` leaves it: meta, chunks and their span files."""
    (out / store.RAW_DIR).mkdir(parents=True)
    target = TargetInfo(
        pids=(1,), command=("uvicorn", "app:app", "--token=s3cret"), server="uvicorn"
    )
    store.write_meta(out, target, SamplingInfo(100, 1_700_000_000.0, 0.0, 0, 0))
    for index, (doc, span) in enumerate(zip(docs, spans, strict=True), start=1):
        name = store.chunk_name(index)
        (out / store.RAW_DIR / f"{name}.speedscope.json").write_bytes(orjson.dumps(doc))
        if span is not None:
            (out / store.RAW_DIR / f"{name}.json").write_bytes(orjson.dumps(span))


def _load_and_report(out: Path, *, reporters: bool = False) -> None:
    """load_profile gives CorruptProfileError or a Profile that keeps its invariants,
    analyses, and (optionally) goes through every reporter."""
    try:
        profile = store.load_profile(out)
    except CorruptProfileError as exc:
        assert exc.message
        return
    profile.self_check()
    for chunk in profile.sampling.chunks:
        assert 0 <= chunk.start_s <= chunk.end_s and math.isfinite(chunk.end_s)
    analysis = analyze(profile)
    if reporters:
        write_all(analysis, out)
        print_summary(analysis, Console(file=open(out / "terminal.txt", "w"), width=100))  # noqa: SIM115


SPANS = (
    st.none()
    | st.fixed_dictionaries(
        {
            "start_s": st.floats(-10, 1e4, allow_nan=False),
            "end_s": st.floats(-10, 1e4, allow_nan=False),
            "samples": st.integers(-5, 10**6),
            "errors": st.integers(-5, 10**6),
            "intervals": st.integers(-5, 10**6),
            "lag_s": st.floats(0, 100),
        }
    )
    | JSON
)


@FUZZ
@given(st.lists(st.tuples(chunk_docs(), SPANS), min_size=1, max_size=4))
def test_a_saved_profile_with_any_chunks_and_spans_loads_and_analyses(
    chunks: list[tuple[dict[str, Any], Any]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        _write_profile(out, [c for c, _ in chunks], [s for _, s in chunks])
        _load_and_report(out)


META_PATHS = (
    ("format",),
    ("target",),
    ("target", "pids"),
    ("target", "command"),
    ("target", "exit_status"),
    ("target", "app_spec"),
    ("sampling",),
    ("sampling", "rate_hz"),
    ("sampling", "started_at"),
    ("sampling", "duration_s"),
    ("sampling", "stopped_by"),
)


@FUZZ
@given(chunk_docs(), st.sampled_from(META_PATHS), JSON, JSON)
def test_a_damaged_meta_or_routes_file_is_an_error_or_a_result(
    doc: dict[str, Any], path: tuple[str, ...], value: Any, routes: Any
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        _write_profile(out, [doc], [{"start_s": 0.0, "end_s": 2.0, "samples": 1, "errors": 0}])
        meta = orjson.loads((out / store.META).read_bytes())
        node = meta
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        (out / store.META).write_bytes(orjson.dumps(meta))
        (out / store.ROUTES).write_bytes(orjson.dumps(routes))
        _load_and_report(out)


NUMBER = st.integers(-(2**40), 2**40) | st.floats(-1e300, 1e300, allow_nan=False)
RESOURCE_RECORDS = st.lists(
    st.fixed_dictionaries(
        {
            "k": st.just("cpu"),
            "t_s": NUMBER,
            "pid": st.just(1),
            "tids": st.just([5]),
            "cpu_us": st.lists(NUMBER, min_size=1, max_size=1),
        }
    )
    | st.fixed_dictionaries(
        {
            "k": st.just("res"),
            "t_s": NUMBER,
            "pid": st.just(1),
            "rss_bytes": NUMBER,
            "fds": NUMBER | st.none(),
            "threads": NUMBER,
            "conns": NUMBER | st.none(),
        }
    )
    | st.fixed_dictionaries(
        {"k": st.sampled_from(["exit", "watch"]), "t_s": NUMBER, "pid": st.just(1)}
    )
    | JSON,
    max_size=8,
)


@FUZZ
@given(chunk_docs(), RESOURCE_RECORDS)
def test_a_damaged_resource_log_is_an_error_or_a_result(
    doc: dict[str, Any], records: list[Any]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        _write_profile(out, [doc], [{"start_s": 0.0, "end_s": 2.0, "samples": 1, "errors": 0}])
        start = {
            "k": "start",
            "t0": 1_700_000_000.0,
            "cpu_clock": "schedstat",
            "cpu_interval_s": 0.05,
            "resource_interval_s": 1.0,
        }
        lines = [start, {"k": "watch", "t_s": 0.0, "pid": 1}, *records]
        (out / store.RESOURCES).write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines))
        _load_and_report(out)


@pytest.mark.parametrize("cut", [0, 1, 10, 100, -100, -2, -1])
def test_every_file_of_a_saved_profile_may_be_truncated(tmp_path: Path, cut: int) -> None:
    # GIVEN a profile whose files were cut short (a crash, a full disk, a bad copy)
    docs = [
        {
            "shared": {"frames": [_frame_json(f) for f in LOOP_FRAMES]},
            "profiles": [
                {"name": 'Thread 5 "MainThread"', "samples": [list(range(len(IDLE)))] * 30}
            ],
        }
    ] * 3
    spans = [{"start_s": 2.0 * i, "end_s": 2.0 * i + 1.9, "samples": 30} for i in range(3)]
    for name in (store.META, "raw/chunk-0003.speedscope.json", "raw/chunk-0002.json"):
        out = tmp_path / name.replace("/", "_")
        _write_profile(out, docs, spans)
        (out / store.ROUTES).write_bytes(b'{"source": "none", "error": "x", "routes": []}')
        raw = (out / name).read_bytes()
        (out / name).write_bytes(raw[:cut])
        # THEN it loads (without what was cut) or says which file is damaged
        _load_and_report(out, reporters=True)


# --- deep stacks -----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1_000, 5_000])
def test_deep_stacks_analyse_and_render(tmp_path: Path, depth: int) -> None:
    # GIVEN a blocked event loop whose stack is `depth` frames of recursion in user code
    recursion = [Frame(f"recurse_{i % 7}", "/srv/app/deep.py", 10 + i % 7) for i in range(depth)]
    frames = [*LOOP_FRAMES[: len(IDLE) - 1], *recursion]
    doc = {
        "shared": {"frames": [_frame_json(f) for f in frames]},
        "profiles": [
            {
                "name": 'Thread 5 "MainThread"',
                "samples": [list(range(len(frames)))] * 40 + [list(range(len(IDLE) - 1))] * 10,
            }
        ],
    }
    out = tmp_path / "out"
    _write_profile(out, [doc], [{"start_s": 0.0, "end_s": 0.5, "samples": 50}])
    # WHEN it is loaded, analysed and rendered by every reporter
    profile = store.load_profile(out)
    assert max(len(s) for s in profile.stacks) == len(frames)
    _load_and_report(out, reporters=True)
    # THEN every file was written
    for name in ("summary.json", "report.html", "stacks.folded", "profile.speedscope.json"):
        assert (out / name).stat().st_size > 0


# --- what parsers keep and mask ------------------------------------------------------------


def test_seal_masks_secrets_in_process_frames_only() -> None:
    doc = {
        "shared": {
            "frames": [
                {"name": 'process 9:"uvicorn app:app --token=abc123 --db postgres://u:pw1@h/db"'},
                {"name": "thread (9): MainThread", "file": "", "line": 0},
                {"name": "handler --token=keep-code-frames", "file": "/a.py", "line": 3},
            ]
        },
        "profiles": [{"name": 'Thread 9 ""', "samples": [[0, 1, 2]] * 3}],
    }
    sealed, intervals = seal(orjson.dumps(doc))
    assert sealed is not None and intervals == 3
    text = sealed.decode()
    assert "abc123" not in text and "pw1" not in text
    assert "--token=***" in text and "postgres://u:***@h/db" in text
    assert "keep-code-frames" in text  # code is not a command line
    assert seal(sealed)[0] is None  # nothing left to mask


def test_sampling_problems_say_how_much_py_spy_missed() -> None:
    def sampling(intervals: int, errors: int, span_s: float, lag_s: float = 0.0) -> SamplingInfo:
        chunk = Chunk("raw/c", 0.0, span_s, intervals, errors, intervals, lag_s)
        return SamplingInfo(100, 0.0, span_s, intervals, errors, (chunk,))

    assert store.sampling_problems(sampling(1000, 0, 10.0)) == []
    late, failed = store.sampling_problems(sampling(500, 20, 10.0, lag_s=2.5))
    assert late.startswith("py-spy sampled 500 of the 1000 instants asked for (50%)")
    assert "fell 5.0 s behind" in late and "up to 2.5 s behind" in late
    assert failed.startswith("py-spy failed to read 20 samples (4.0% of instants)")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[31mred\x1b]0;t\x07", "␛[31mred␛]0;t␇"),
        ("tab\tand\nnewline kept", "tab\tand\nnewline kept"),
        ("\u202eevil", "\ufffdevil"),
        ("caf\udce9", "caf\ufffd"),
        ("[bold]<b>", "[bold]<b>"),
    ],
)
def test_terminal_safe_makes_control_characters_visible(text: str, shown: str) -> None:
    from asgiprof.text import terminal_safe

    assert terminal_safe(text) == shown


def test_json_safe_keeps_undecodable_bytes_as_escapes(tmp_path: Path) -> None:
    from asgiprof.text import json_safe

    name = b"/srv/caf\xe9/app.py".decode("utf-8", "surrogateescape")
    assert json_safe(name) == "/srv/caf\\xe9/app.py"
    store.write_json(tmp_path / "x.json", {"command": ["uvicorn", name]})
    assert orjson.loads((tmp_path / "x.json").read_bytes()) == {
        "command": ["uvicorn", "/srv/caf\\xe9/app.py"]
    }
