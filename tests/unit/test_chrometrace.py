"""py-spy chrometrace chunks (`py-spy record --format chrometrace`): each run of one stack
gets the times py-spy measured, hostile names stay names, secrets are masked, and an output
directory of such chunks loads with runs at those times."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgiprof import store
from asgiprof.errors import CorruptProfileError
from asgiprof.model import NO_STACK, Frame, Interner, SamplingInfo, TargetInfo
from asgiprof.store.pyspy import ThreadSamples, parse_chunk, seal

PROC = 'process 7:"python -m uvicorn app:app"'
LOOP = "thread (7): MainThread"
WORKER = "thread (8): AnyIO worker thread"


def ev(
    ph: str, name: str, ts: int, tid: int = 140, file: str = "", line: int = 0
) -> dict[str, object]:
    return {
        "args": {"filename": file, "line": line},
        "cat": "py-spy",
        "name": name,
        "ph": ph,
        "pid": 7,
        "tid": tid,
        "ts": ts,
    }


def code(ph: str, name: str, line: int, ts: int, tid: int = 140) -> dict[str, object]:
    return ev(ph, name, ts, tid, "/srv/app.py", line)


# Written by hand the way py-spy 0.4 writes it: the loop thread runs <module> from 0 s, enters
# handler at 0.10 s (a sample saw it there), leaves it at 0.35 s, and py-spy writes at 0.50 s;
# a worker thread is first sampled at 0.20 s.
HAND = [
    ev("B", PROC, 0),
    ev("B", LOOP, 0),
    code("B", "<module>", 1, 0),
    code("B", "handler", 9, 100_000),
    ev("B", PROC, 200_000, tid=141),
    ev("B", WORKER, 200_000, tid=141),
    code("E", "handler", 9, 350_000),
    code("E", "<module>", 1, 500_000),
    ev("E", LOOP, 500_000),
    ev("E", PROC, 500_000),
    ev("E", WORKER, 500_000, tid=141),
    ev("E", PROC, 500_000, tid=141),
]


def parse(
    events: list[dict[str, object]], rate_hz: float = 100.0
) -> tuple[list[ThreadSamples], list[Frame], list[tuple[int, ...]]]:
    frames: list[Frame] = []
    stacks: list[tuple[int, ...]] = []
    threads = parse_chunk(
        orjson.dumps(events), Interner(frames, stacks), default_pid=1, rate_hz=rate_hz
    )
    return threads, frames, stacks


def test_runs_carry_the_measured_times() -> None:
    threads, frames, stacks = parse(HAND)
    loop, worker = threads
    assert (loop.thread.pid, loop.thread.tid, loop.thread.name) == (7, 7, "MainThread")
    assert (worker.thread.tid, worker.thread.name) == (8, "AnyIO worker thread")
    assert [stacks[s] for s in loop.stacks] == [(0,), (0, 1), (0,)]
    assert [f.function for f in frames] == ["<module>", "handler"]
    assert loop.starts == [0.0, 0.1, 0.35] and loop.ends == [0.1, 0.35, 0.5]
    assert loop.counts == [10, 25, 15]  # estimated from the durations at 100 Hz
    assert worker.starts == [0.2] and worker.ends == [0.5] and stacks[worker.stacks[0]] == ()


def test_counts_follow_the_rate_and_never_drop_a_run() -> None:
    threads, _, _ = parse(HAND, rate_hz=10.0)
    assert threads[0].counts == [1, 2, 2]
    events = [ev("B", LOOP, 0), code("B", "f", 3, 0), code("E", "f", 3, 1), ev("E", LOOP, 1)]
    assert parse(events)[0][0].counts == [1]  # 1 us: still a sample


def test_a_renamed_thread_keeps_its_run() -> None:
    events = [
        ev("B", LOOP, 0),
        code("B", "f", 3, 0),
        code("E", "f", 3, 50_000),
        ev("E", LOOP, 50_000),
        ev("B", "thread (7): renamed", 50_000),
        code("B", "f", 3, 50_000),
        code("E", "f", 3, 90_000),
        ev("E", "thread (7): renamed", 90_000),
    ]
    (loop,), _, _ = parse(events)
    assert loop.starts == [0.0] and loop.ends == [0.09] and loop.thread.name == "renamed"


HOSTILE = [
    'thread (7): <script>alert(1)</script> "quoted"\nnewline',
    'process 7:"x" thread (9): fake',
    "thread (0x1f)",
    "</script>\u2028\x00",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_stay_names(name: str) -> None:
    events = [
        ev("B", LOOP, 0),
        code("B", name, 2, 0),
        code("E", name, 2, 10_000),
        ev("E", LOOP, 10_000),
    ]
    (loop,), frames, _ = parse(events)
    assert [f.function for f in frames] == [name] and loop.thread.tid == 7


def test_a_hostile_thread_frame_is_identity_not_code() -> None:
    name = 'thread (7): </script>"\n'
    (loop,), frames, stacks = parse(
        [ev("B", name, 0), code("B", "f", 1, 0), code("E", "f", 1, 5), ev("E", name, 5)]
    )
    assert loop.thread.name == '</script>"\n' and [f.function for f in frames] == ["f"]


@pytest.mark.parametrize(
    "events",
    [
        [1],
        [{"ph": "B"}],
        [ev("X", "f", 0)],
        [ev("E", "f", 0)],  # ends a frame never begun
        [ev("B", "f", 0), ev("E", "g", 1)],  # ends another frame than the innermost
        [ev("B", "f", 5), ev("B", "g", 4)],  # back in time
        [{**ev("B", "f", 0), "ts": -1}],
        [{**ev("B", "f", 0), "tid": "7"}],
        [{**ev("B", "f", 0), "ts": True}],
        [{**ev("B", "f", 0), "args": {"filename": 3}}],
        [{**ev("B", "f", 0), "args": None}],
    ],
)
def test_garbage_is_a_clear_error(events: list[object]) -> None:
    with pytest.raises(CorruptProfileError):
        parse_chunk(orjson.dumps(events), Interner([], []), default_pid=1)


def test_truncated_document_is_a_clear_error() -> None:
    data = orjson.dumps(HAND)
    for cut in range(1, len(data), 97):
        with pytest.raises(CorruptProfileError):
            parse_chunk(data[:cut], Interner([], []), default_pid=1)


def test_empty_trace_has_no_threads() -> None:
    assert parse_chunk(b"[]\n", Interner([], []), default_pid=1) == []


def test_seal_masks_secrets_in_process_frames_and_counts_instants() -> None:
    secret = 'process 7:"uvicorn app:app --password=hunter2 --db-token hunter3"'
    events = [
        ev("B", secret, 0),
        ev("B", LOOP, 0),
        code("B", "--password=hunter2", 1, 0),
        code("E", "--password=hunter2", 1, 100_000),
        ev("E", LOOP, 100_000),
        ev("E", secret, 100_000),
    ]
    sealed, intervals = seal(orjson.dumps(events), samples=11)
    assert sealed is not None
    text = sealed.decode()
    assert "hunter2" in text  # a code frame's name is code, not a command line
    assert text.count("hunter2") == 2 and "hunter3" not in text
    assert intervals == 11  # one thread over the whole chunk: every sample an instant
    (loop,), _, _ = parse(orjson.loads(sealed))
    assert loop.thread.pid == 7
    assert seal(sealed, 11)[0] is None  # nothing left to mask


def test_seal_counts_instants_over_thread_time() -> None:
    # The loop thread lives 0.5 s, the worker 0.3 s: 30 stacks over 0.8 s of thread time
    # are 37.5 stacks a second per thread, so 19 instants in the chunk's 0.5 s.
    assert seal(orjson.dumps(HAND), samples=30)[1] == round(30 * 0.5 / 0.8) == 19


def write_trace_profile(
    out: Path, chunks: list[tuple[float, float, bytes]], written_s: float | None = None
) -> None:
    """An output directory of pid 7 holding chrometrace chunks with their measured spans
    (`written_s`: when the last one's file appeared, after the signal that ended it)."""
    store.prepare_out_dir(out)
    store.write_meta(
        out,
        TargetInfo(pids=(7,), command=("uvicorn", "app:app"), server="uvicorn"),
        SamplingInfo(100, 1000.0, 2.0, 0, 0),
    )
    for i, (start_s, end_s, data) in enumerate(chunks, start=1):
        store.chunk_path(out, i, "chrometrace").write_bytes(data)
        samples = round((end_s - start_s) * 100)  # one thread at 100 Hz, as py-spy counts
        store.write_chunk_meta(
            out, i, start_s=start_s, end_s=end_s, samples=samples, errors=0, rc=0,
            written_s=written_s if i == len(chunks) else None,
        )  # fmt: skip


def test_load_profile_places_runs_at_their_measured_times(tmp_path: Path) -> None:
    # py-spy's clock starts before it attached: its first sample (0.2 s on its clock) is
    # the chunk's measured start (1.0 s); the second chunk started 0.05 s before the first
    # ended (the handover overlap), which is cut.
    first = [{**e, "ts": e["ts"] + 200_000} for e in HAND if e["tid"] == 140]  # type: ignore[operator]
    second = [{**e, "ts": e["ts"] + 300_000} for e in HAND if e["tid"] == 140]  # type: ignore[operator]
    write_trace_profile(
        tmp_path, [(1.0, 1.5, orjson.dumps(first)), (1.45, 1.95, orjson.dumps(second))]
    )
    profile = store.load_profile(tmp_path)
    (tl,) = [t for t in profile.threads if t.thread.tid == 7]
    runs = [(round(s, 6), round(d, 6), n) for s, d, _sid, n in tl.runs()]
    assert runs[:3] == [(1.0, 0.1, 10), (1.1, 0.25, 25), (1.35, 0.15, 15)]
    # the second chunk from 1.5 s on: its first run (1.45-1.55) cut to 1.5-1.55
    assert runs[3:] == [(1.5, 0.05, 5), (1.55, 0.25, 25), (1.8, 0.15, 15)]
    assert NO_STACK not in list(tl.stack)
    assert [c.file for c in profile.sampling.chunks] == [
        "raw/chunk-0001.chrometrace.json",
        "raw/chunk-0002.chrometrace.json",
    ]


# --- py-spy's writer, as src/chrometrace.rs does it, against random samples ---------------

CODE = [("f", "/srv/a.py", 1), ("g", "/srv/a.py", 2), ("g", "/srv/a.py", 3), ("h", "/srv/b.py", 9)]
FUZZ = settings(max_examples=60, deadline=None, database=None)


def write_like_pyspy(samples: list[tuple[int, list[list[int]]]]) -> list[dict[str, object]]:
    """Events for `samples` = [(ts, [code frame indexes per thread, root first])]: per
    thread, end events for the frames that left (leaf first) and begin events for those that
    came (root first) at each sample; every open frame ended at the last time."""
    events: list[dict[str, object]] = []
    prev: dict[int, list[tuple[str, str, int]]] = {}
    for ts, stacks in samples:
        for tid, stack in enumerate(stacks):
            now = [(f"thread ({100 + tid}): t{tid}", "", 0), *(CODE[i] for i in stack)]
            old = prev.get(tid, [])
            same = 0
            while same < min(len(old), len(now)) and old[same] == now[same]:
                same += 1
            events += [ev("E", n, ts, tid, f, ln) for n, f, ln in reversed(old[same:])]
            events += [ev("B", n, ts, tid, f, ln) for n, f, ln in now[same:]]
            prev[tid] = now
    end = samples[-1][0] + 1 if samples else 0
    for tid, old in prev.items():
        events += [ev("E", n, end, tid, f, ln) for n, f, ln in reversed(old)]
    return events


SAMPLES = st.lists(
    st.tuples(
        st.integers(1, 50_000),  # gap before the sample, us
        st.lists(st.lists(st.integers(0, len(CODE) - 1), max_size=4), min_size=2, max_size=2),
    ),
    min_size=1,
    max_size=40,
).map(lambda xs: [(sum(g for g, _ in xs[: i + 1]), s) for i, (_, s) in enumerate(xs)])


@FUZZ
@given(SAMPLES)
def test_runs_are_the_samples_stack_changes_at_their_times(
    samples: list[tuple[int, list[list[int]]]],
) -> None:
    threads, frames, stacks = parse(write_like_pyspy(samples))
    end = (samples[-1][0] + 1) / 1e6
    for tid, t in enumerate(threads):
        assert t.thread.tid == 100 + tid
        # the expected runs: the sample sequence of this thread, equal neighbours merged
        want: list[tuple[tuple[tuple[str, str, int], ...], float]] = []
        for ts, per_thread in samples:
            stack = tuple(CODE[i] for i in per_thread[tid])
            if not want or want[-1][0] != stack:
                want.append((stack, ts / 1e6))
        got = [
            tuple((frames[f].function, frames[f].file, frames[f].line) for f in stacks[sid])
            for sid in t.stacks
        ]
        assert got == [s for s, _ in want]
        assert t.starts == [start for _, start in want]
        assert t.ends == [start for _, start in want[1:]] + [end]


@FUZZ
@given(SAMPLES, st.data())
def test_random_damage_is_an_error_or_a_result(
    samples: list[tuple[int, list[list[int]]]], data: st.DataObject
) -> None:
    events: list[object] = list(write_like_pyspy(samples))
    i = data.draw(st.integers(0, len(events) - 1))
    event = events[i]
    assert isinstance(event, dict)
    key = data.draw(st.sampled_from(sorted(event)))
    event[key] = data.draw(
        st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=5) | st.just({})
    )
    raw = orjson.dumps(events)
    for attempt in (
        lambda: parse_chunk(raw, Interner([], []), default_pid=1),
        lambda: seal(raw, 5),
    ):
        try:
            attempt()
        except CorruptProfileError as exc:
            assert exc.message


def test_a_start_seen_late_gives_way_to_the_measured_end(tmp_path: Path) -> None:
    # The chunk's events span 0.5 s on py-spy's clock, but the sampler measured 1.0-1.3 s
    # (it saw py-spy's "sampling" line 0.2 s late): the file was written by 1.3 s, so the
    # last event is placed there, not at 1.5 s.
    loop_only = [e for e in HAND if e["tid"] == 140]
    write_trace_profile(tmp_path, [(1.0, 1.3, orjson.dumps(loop_only))])
    (tl,) = [t for t in store.load_profile(tmp_path).threads if t.thread.tid == 7]
    runs = [(round(s, 6), round(d, 6)) for s, d, _sid, _n in tl.runs()]
    assert runs == [(0.8, 0.1), (0.9, 0.25), (1.15, 0.15)]


def test_a_chunk_ends_at_the_signal_that_stopped_it_not_at_its_file(tmp_path: Path) -> None:
    # GIVEN a chunk that sampled from 1.0 s until SIGINT at 1.4 s; py-spy sampled no more
    # and wrote its file at 1.5 s, stamping the end of its last run then (0.5 s on its
    # clock)
    loop_only = [e for e in HAND if e["tid"] == 140]
    write_trace_profile(tmp_path, [(1.0, 1.4, orjson.dumps(loop_only))], written_s=1.5)
    profile = store.load_profile(tmp_path)
    # THEN the runs are placed by both ends (start and file: no shift) and the last one
    # ends at the signal: nothing was sampled after it
    (tl,) = [t for t in profile.threads if t.thread.tid == 7]
    runs = [(round(s, 6), round(d, 6)) for s, d, _sid, _n in tl.runs()]
    assert runs == [(1.0, 0.1), (1.1, 0.25), (1.35, 0.05)]
    (chunk,) = profile.sampling.chunks
    assert (chunk.start_s, chunk.end_s) == (1.0, 1.4)


def test_counts_of_fast_changing_runs_add_up_to_the_samples_py_spy_took(tmp_path: Path) -> None:
    # GIVEN a chunk of 200 one-sample runs (two stacks alternating, exponentially spaced
    # instants) and one 100-sample run: py-spy took 300 samples
    rng = random.Random(4)
    events = [ev("B", PROC, 0), ev("B", LOOP, 0)]
    t = 0
    for k in range(200):
        name = ("a", "b")[k % 2]
        step = max(1, round(rng.expovariate(1.0) * 10_000))
        events += [code("B", name, 5, t), code("E", name, 5, t + step)]
        t += step
    events += [code("B", "block", 9, t), code("E", "block", 9, t + 1_000_000)]
    t += 1_000_000
    events += [ev("E", LOOP, t), ev("E", PROC, t)]
    write_trace_profile(tmp_path, [(1.0, 1.0 + t / 1e6, orjson.dumps(events))])
    # WHEN loaded, with the chunk's count as py-spy gave it
    store.write_chunk_meta(
        tmp_path, 1, start_s=1.0, end_s=1.0 + t / 1e6, samples=300, errors=0, rc=0
    )
    profile = store.load_profile(tmp_path)
    (tl,) = profile.threads
    counts = list(tl.samples)
    # THEN they add up to py-spy's 300 (rounding each on its own gives ~5-25% more), every
    # run counts at least one, and the long run keeps about its 100
    assert sum(counts) == 300
    assert min(counts) >= 1
    assert 90 <= max(counts) <= 100
