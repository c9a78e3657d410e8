"""Parsing py-spy speedscope chunks and loading an output directory."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from asgiprof import store
from asgiprof.errors import CorruptProfileError
from asgiprof.model import COVERAGE_NOTE, Chunk, Frame, Interner, SamplingInfo
from asgiprof.store.profile import sampling_problems
from asgiprof.store.pyspy import parse_chunk, place_samples
from tests.pyspy_chunks import doc, write_profile


def test_root_frames_become_thread_identity_not_code() -> None:
    data = doc(
        [
            {
                "type": "sampled",
                "name": 'Process 7 Thread 7 "MainThread"',
                "samples": [[0, 1, 2], [0, 1, 2, 3], [0, 1, 2, 3]],
                "weights": [0.01] * 3,
            },
            {
                "type": "sampled",
                "name": 'Process 7 Thread 8 ""',
                "samples": [[0, 4, 2]],
                "weights": [0.01],
            },
        ]
    )
    frames: list[Frame] = []
    stacks: list[tuple[int, ...]] = []
    threads = parse_chunk(data, Interner(frames, stacks), default_pid=1)
    assert [(t.thread.pid, t.thread.tid, t.thread.name) for t in threads] == [
        (7, 7, "MainThread"),
        (7, 8, "AnyIO worker thread"),
    ]
    assert [f.function for f in frames] == ["<module>", "handler"]
    assert threads[0].stack_ids == [0, 1, 1] and threads[1].stack_ids == [0]
    assert stacks == [(0,), (0, 1)]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"[1]",  # a list is a chrometrace document ([] is one without events)
        b"7",
        b'{"shared": {}, "profiles": []}',
        b'{"shared": {"frames": [{}]}, "profiles": []}',
        b'{"shared": {"frames": []}, "profiles": [{"samples": [[5]]}]}',
    ],
)
def test_garbage_is_a_clear_error(data: bytes) -> None:
    with pytest.raises(CorruptProfileError):
        parse_chunk(data, Interner([], []), default_pid=1)


def test_place_samples_aligns_short_threads_to_the_end() -> None:
    assert place_samples(100, 100, 0.0, 1.0, 100) == (0.0, 0.01)
    first, period = place_samples(50, 100, 0.0, 1.0, 100)
    assert first == pytest.approx(0.5) and period == 0.01
    # py-spy fell behind: 100 samples had to fit in 0.5 s
    assert place_samples(100, 100, 0.0, 0.5, 100) == (0.0, 0.005)


def test_load_profile_keeps_good_chunks_when_one_is_truncated(tmp_path: Path) -> None:
    good = doc(
        [
            {
                "type": "sampled",
                "name": 'Thread 7 "MainThread"',
                "samples": [[1, 2]] * 3,
                "weights": [0.01] * 3,
            }
        ]
    )
    write_profile(tmp_path / "out", [good, good[: len(good) // 2]])
    profile = store.load_profile(tmp_path / "out")
    profile.self_check()
    assert len(profile.sampling.chunks) == 1
    assert profile.problems and "chunk-0002" in profile.problems[0]
    (tl,) = profile.threads
    assert tl.total_samples == 3


def test_load_profile_rejects_a_directory_without_profile(tmp_path: Path) -> None:
    with pytest.raises(CorruptProfileError, match="missing"):
        store.load_profile(tmp_path)


def test_out_dir_holding_other_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("hi")
    from asgiprof.errors import OutputDirError

    with pytest.raises(OutputDirError, match="already holds"):
        store.prepare_out_dir(tmp_path)


def _thread_doc(stacks: list[list[int]]) -> bytes:
    return doc(
        [
            {
                "type": "sampled",
                "name": 'Thread 7 "MainThread"',
                "samples": stacks,
                "weights": [0.01] * len(stacks),
            }
        ]
    )


def test_overlapping_chunks_count_each_instant_once_and_cut_by_time_alone(
    tmp_path: Path,
) -> None:
    # GIVEN two chunks at 100 Hz; the second started 0.1 s before the first ended (its
    # first 10 samples are busy in `handler`, the rest idle at `<module>`)
    out = tmp_path / "out"
    first = _thread_doc([[1, 2]] * 100)
    second = _thread_doc([[1, 2, 3]] * 10 + [[1, 2]] * 100)
    write_profile(out, [first, second])
    store.write_chunk_meta(
        out, 1, start_s=0.0, end_s=1.0, samples=100, errors=0, rc=0, intervals=100, rate_hz=100
    )
    store.write_chunk_meta(
        out, 2, start_s=0.9, end_s=2.0, samples=110, errors=0, rc=0, intervals=110, rate_hz=100
    )
    # WHEN the profile is loaded
    profile = store.load_profile(out)
    profile.self_check()
    # THEN the overlap is cut from the newer chunk: its first 0.1 s (10 samples) go,
    # whatever they hold, and no run of the timeline starts before the one before it ends
    c1, c2 = profile.sampling.chunks
    assert (c2.start_s, c2.intervals) == (1.0, 100) and c2.overlap_s == pytest.approx(0.1)
    (tl,) = profile.threads
    assert tl.total_samples == 200
    assert profile.stacks[tl.stack[-1]] == profile.stacks[tl.stack[0]]  # `handler` is gone
    assert len(profile.stacks) == 2 and all(len(profile.stacks[s]) == 1 for s in tl.stack)
    ends = [s + d for s, d in zip(tl.start_s, tl.duration_s, strict=True)]
    assert all(b >= a - 1e-9 for a, b in zip(ends, tl.start_s[1:], strict=False))
    assert profile.sampling.span_coverage == 1.0


def test_coverage_counts_instants_at_their_own_chunk_rate(tmp_path: Path) -> None:
    # GIVEN a chunk at 100 Hz then one at 50 Hz after the sampler backed off, each keeping up
    out = tmp_path / "out"
    write_profile(out, [_thread_doc([[1, 2]] * 100), _thread_doc([[1, 2]] * 50)])
    store.write_chunk_meta(
        out, 1, start_s=0.0, end_s=1.0, samples=100, errors=0, rc=0, intervals=100, rate_hz=100
    )
    store.write_chunk_meta(
        out, 2, start_s=1.0, end_s=2.0, samples=50, errors=0, rc=0, intervals=50, rate_hz=50
    )
    profile = store.load_profile(out)
    # THEN the whole of the 2 s is covered, and the slower chunk's samples last 20 ms each
    assert profile.sampling.coverage == pytest.approx(1.0)
    assert profile.sampling.behind_s == pytest.approx(0.0)
    (tl,) = profile.threads
    assert tl.duration_s[-1] == pytest.approx(1.0)  # one run of 50 samples x 20 ms


def _chunks_at(rate_hz: int, counts: list[int], gap_s: float = 0.0) -> SamplingInfo:
    """Back-to-back 2 s chunks at `rate_hz` that took `counts` instants (`gap_s` apart)."""
    chunks = tuple(
        Chunk("c", i * (2 + gap_s), i * (2 + gap_s) + 2, n, 0, n, 0.0, rate_hz)
        for i, n in enumerate(counts)
    )
    end = chunks[-1].end_s
    return SamplingInfo(rate_hz, 0.0, end, sum(counts), 0, chunks)


def test_py_spy_is_said_behind_only_beyond_its_random_spacing() -> None:
    # GIVEN three 2 s chunks at 10 Hz (20 instants asked each) that took 17, 15 and 19:
    # 85% of the instants, 1.8 sd short of a Poisson count of 60 (py-spy spaces its
    # instants at random: a run at 10 Hz for 30 s took 0.96-1.06 of them)
    sampling = _chunks_at(10, [17, 15, 19])
    # THEN coverage says what was taken, and the report does not call that falling behind
    assert sampling.asked == pytest.approx(60) and sampling.coverage == pytest.approx(0.85)
    assert not sampling.fell_behind
    assert not [p for p in sampling_problems(sampling) if p.startswith(COVERAGE_NOTE)]
    # ... but 33 of 60 (4.6 sd short) is py-spy falling behind, said with the counts
    behind = _chunks_at(10, [11, 10, 12])
    assert behind.fell_behind
    (said,) = [p for p in sampling_problems(behind) if p.startswith(COVERAGE_NOTE)]
    assert "33 of the 60 instants" in said and "2.7 s behind" in said
    # ... and at 100 Hz, where the count is tighter, 85% is behind too
    assert _chunks_at(100, [170, 170, 170]).fell_behind
    # ... while failed reads are not falling behind (they have their own note)
    failed = replace(behind, errors=27)
    assert not failed.fell_behind
    assert [p for p in sampling_problems(failed) if "failed to read" in p]


def test_time_left_between_chunks_is_said() -> None:
    # GIVEN 100 Hz chunks that kept up, with 0.1 s between them (one py-spy ended before
    # the next sampled)
    gaps = _chunks_at(100, [200] * 5, gap_s=0.1)
    assert gaps.coverage == pytest.approx(1.0)
    assert gaps.span_coverage == pytest.approx(10 / 10.4)
    # THEN the report says how much went unsampled
    (said,) = [p for p in sampling_problems(gaps) if "unsampled" in p]
    assert said.startswith("0.4 s (4%) between py-spy's chunks went unsampled")
    # ... and nothing for back-to-back chunks
    assert not [p for p in sampling_problems(_chunks_at(100, [200] * 5)) if "unsampled" in p]


def test_the_pause_share_is_kept_per_chunk_and_said_when_over_the_limit(tmp_path: Path) -> None:
    # GIVEN two chunks that held the target 0.30 s of 1 s, then 0.04 s of 1 s (the second
    # started 0.1 s early: its pause is cut with its overlap), and a limit of 5%
    out = tmp_path / "out"
    write_profile(out, [_thread_doc([[1, 2]] * 100), _thread_doc([[1, 2]] * 110)])
    meta = orjson.loads((out / "meta.json").read_bytes())
    meta["sampling"]["max_pause"] = 0.05
    (out / "meta.json").write_bytes(orjson.dumps(meta))
    store.write_chunk_meta(
        out, 1, start_s=0.0, end_s=1.0, samples=100, errors=0, rc=0, intervals=100,
        rate_hz=100, pause_s=0.3,
    )  # fmt: skip
    store.write_chunk_meta(
        out, 2, start_s=0.9, end_s=2.0, samples=110, errors=0, rc=0, intervals=110,
        rate_hz=100, pause_s=0.044,
    )  # fmt: skip
    # WHEN the profile is loaded
    sampling = store.load_profile(out).sampling
    # THEN the run's share is the chunks' pauses over their kept spans, and the report
    # says it held the target longer than allowed
    c1, c2 = sampling.chunks
    assert c2.pause_s == pytest.approx(0.04)
    assert sampling.max_pause == 0.05
    assert sampling.pause_share == pytest.approx(0.17)
    (said,) = [p for p in sampling_problems(sampling) if "paused" in p]
    assert "17.0%" in said and "--max-pause 5%" in said
    # ... and says nothing about a share within the limit, nor where none was measured
    within = replace(sampling, chunks=(replace(c1, pause_s=0.05), replace(c2, pause_s=0.05)))
    assert within.pause_share == pytest.approx(0.05)
    assert not [p for p in sampling_problems(within) if "paused" in p]
    # ... but a tenth of the time or more is said even within the limit (the run's
    # latencies and throughput were partly the profiler's)
    (said,) = [p for p in sampling_problems(replace(sampling, max_pause=0.3)) if "paused" in p]
    assert "17.0%" in said and "--max-pause 30%" in said
    unmeasured = replace(sampling, chunks=(replace(c1, pause_s=None), c2))
    assert unmeasured.pause_share == pytest.approx(0.04)
    assert replace(sampling, chunks=(replace(c1, pause_s=None),)).pause_share is None
