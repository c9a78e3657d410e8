"""resources.jsonl loading, cpu_ratio and growth on hand-written records."""

from __future__ import annotations

from array import array
from pathlib import Path

import orjson
import pytest

from asgiprof.analyze.resources import cpu_ratio, growth
from asgiprof.errors import CorruptProfileError
from asgiprof.model import UNKNOWN, ConnectionSeries, ResourcePoint, Resources, ThreadCpu
from asgiprof.record.resources import ResourceMonitor
from asgiprof.store.resources import load_resource_log, load_resources

START = (
    b'{"k":"start","t0":1000.0,"cpu_clock":"schedstat","cpu_interval_s":0.05,'
    b'"resource_interval_s":1.0}\n'
)


def write(tmp_path: Path, *lines: bytes) -> Path:
    path = tmp_path / "resources.jsonl"
    path.write_bytes(b"".join(lines))
    return path


def cpu_line(t_s: float, pid: int, tids: list[int], cpu_us: list[int]) -> bytes:
    rec = {"k": "cpu", "t_s": t_s, "pid": pid, "tids": tids, "cpu_us": cpu_us}
    return orjson.dumps(rec) + b"\n"


def res_line(t_s: float, pid: int, **fields: object) -> bytes:
    rec: dict[str, object] = {
        "k": "res",
        "t_s": t_s,
        "pid": pid,
        "rss_bytes": 1000,
        "fds": 10,
        "threads": 2,
        "conns": 0,
        "by_remote_port": {},
        "by_listen_port": {},
    }
    rec.update(fields)
    return orjson.dumps(rec) + b"\n"


def series(points: list[tuple[float, float]], pid: int = 1, tid: int = 1) -> Resources:
    res = Resources()
    for t_s, cpu_s in points:
        res.add_cpu(ThreadCpu(t_s, pid, tid, cpu_s))
    return res


def points(values: list[tuple[float, int]], pid: int = 1) -> Resources:
    return Resources(points=[ResourcePoint(t, pid, v, v, 1, v) for t, v in values])


# ----------------------------------------------------------------------------- loading


def test_load_reads_every_kind(tmp_path: Path) -> None:
    # GIVEN a file with one record of each kind, for two processes
    path = write(
        tmp_path,
        START,
        b'{"k":"watch","t_s":0.0,"pid":10}\n',
        b'{"k":"watch","t_s":0.0,"pid":20}\n',
        cpu_line(0.05, 10, [10, 11], [1000, 500_000]),
        cpu_line(0.10, 10, [10, 11], [2000, 550_000]),
        cpu_line(0.05, 20, [20], [7]),
        res_line(
            1.0,
            10,
            rss_bytes=5_000_000,
            fds=12,
            threads=2,
            conns=4,
            by_remote_port={"5432": 3},
            by_listen_port={"8000": 1},
        ),
        res_line(1.0, 20, fds=None, conns=None),
        b'{"k":"exit","t_s":1.5,"pid":20,"why":"zombie"}\n',
        b'{"k":"problem","t_s":1.5,"pid":20,"msg":"pid 20: access denied"}\n',
    )

    # WHEN it is loaded
    log = load_resource_log(path)

    # THEN every record lands where the analysis reads it
    res = log.resources
    assert res.thread_cpu == {
        (10, 10): (array("d", [0.05, 0.10]), array("d", [0.001, 0.002])),
        (10, 11): (array("d", [0.05, 0.10]), array("d", [0.5, 0.55])),
        (20, 20): (array("d", [0.05]), array("d", [7e-6])),
    }
    assert res.points == [
        ResourcePoint(1.0, 10, 5_000_000, 12, 2, 4),
        ResourcePoint(1.0, 20, 1000, UNKNOWN, 2, UNKNOWN),
    ]
    assert log.connections == {
        10: ConnectionSeries(10, (1.0,), (4,), ({5432: 3},), ({8000: 1},)),
    }
    assert res.connections == log.connections  # the Profile carries them: one read
    assert log.watched_s == {10: 0.0, 20: 0.0}
    assert log.exits == {20: (1.5, "zombie")}
    assert log.cpu_clock == "schedstat"
    assert log.problems == ("pid 20: access denied",)
    assert load_resources(path) == res


def test_load_fills_thread_cpu_like_add_cpu(tmp_path: Path) -> None:
    path = write(tmp_path, cpu_line(0.5, 3, [4, 5], [250_000, 0]), cpu_line(1.0, 3, [4], [500_000]))

    expected = Resources()
    for sample in (
        ThreadCpu(0.5, 3, 4, 0.25),
        ThreadCpu(0.5, 3, 5, 0.0),
        ThreadCpu(1.0, 3, 4, 0.5),
    ):
        expected.add_cpu(sample)

    assert load_resources(path) == expected


def test_load_ignores_blank_lines_and_unknown_kinds(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        b"\n",
        cpu_line(0.0, 1, [1], [0]),
        b"   \n\n",
        b'{"k":"future-kind","t_s":0.5,"x":[1,2]}\n',
        cpu_line(1.0, 1, [1], [10]),
        b"\n",
    )

    log = load_resource_log(path)

    assert log.resources.thread_cpu == {(1, 1): (array("d", [0.0, 1.0]), array("d", [0.0, 1e-5]))}
    assert log.problems == ()
    assert log.cpu_clock == ""


def test_load_tolerates_a_truncated_last_line(tmp_path: Path) -> None:
    # GIVEN asgiprof died in the middle of writing its last poll
    whole = cpu_line(0.1, 1, [1], [100])
    path = write(tmp_path, START, cpu_line(0.0, 1, [1], [0]), whole[:17])

    log = load_resource_log(path)

    assert log.resources.thread_cpu == {(1, 1): (array("d", [0.0]), array("d", [0.0]))}
    assert log.problems == ("resources.jsonl line 3: cut by a crash, skipped",)


def test_load_tolerates_a_cut_line_before_a_new_run(tmp_path: Path) -> None:
    # GIVEN a run that died mid-line, then a second run appended 10 s later (its own t0)
    later_start = START.replace(b'"t0":1000.0', b'"t0":1010.0')
    path = write(
        tmp_path,
        START,
        cpu_line(1.0, 1, [1], [0]),
        b'{"k":"cpu","t_s":1.05,"pid":1,"ti\n',
        later_start,
        cpu_line(0.5, 1, [1], [250_000]),
    )

    log = load_resource_log(path)

    # THEN the cut line is skipped and the second run's times are put on the first run's t0
    assert log.resources.thread_cpu == {(1, 1): (array("d", [1.0, 10.5]), array("d", [0.0, 0.25]))}
    assert log.problems == ("resources.jsonl line 3: cut by a crash, skipped",)


def test_load_keeps_cpu_series_in_time_order(tmp_path: Path) -> None:
    # GIVEN the wall clock stepped back between two polls
    path = write(
        tmp_path,
        cpu_line(1.0, 1, [1], [0]),
        cpu_line(2.0, 1, [1], [10]),
        cpu_line(1.5, 1, [1], [20]),
        cpu_line(3.0, 1, [1], [30]),
    )

    times, _ = load_resources(path).thread_cpu[(1, 1)]

    assert times == array("d", [1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        (b"this is not json\n", "line 2 is unreadable: not JSON"),
        (b'{"k":"cpu","t_s":1.0,"pid":1,"tids":[1]}\n', "line 2 is unreadable: bad 'cpu' record"),
        (
            b'{"k":"cpu","t_s":1.0,"pid":1,"tids":[1,2],"cpu_us":[5]}\n',
            "line 2 is unreadable: bad 'cpu' record",
        ),
        (b'{"k":"res","t_s":"soon","pid":1}\n', "line 2 is unreadable: bad 'res' record"),
        (b"[1, 2, 3]\n", "line 2 is unreadable: bad None record"),
    ],
)
def test_load_rejects_garbage_in_the_middle(tmp_path: Path, bad_line: bytes, message: str) -> None:
    path = write(tmp_path, cpu_line(0.0, 1, [1], [0]), bad_line, cpu_line(1.0, 1, [1], [9]))

    with pytest.raises(CorruptProfileError) as info:
        load_resource_log(path)

    assert f"{path} {message}" in info.value.message
    assert "delete the file to report without resource data" in info.value.message


def test_load_rejects_two_unparseable_lines_at_the_end(tmp_path: Path) -> None:
    path = write(tmp_path, cpu_line(0.0, 1, [1], [0]), b"garbage\n", b"{\n")

    with pytest.raises(CorruptProfileError, match="line 2 is unreadable"):
        load_resource_log(path)


def test_load_of_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(CorruptProfileError, match="is unreadable"):
        load_resource_log(tmp_path / "nope.jsonl")


def test_connection_series_helpers() -> None:
    conns = ConnectionSeries(
        pid=1,
        t_s=(0.0, 1.0, 2.0),
        total=(1, 4, 6),
        by_remote_port=({}, {5432: 2, 6379: 1}, {5432: 5}),
        by_listen_port=({}, {}, {}),
    )

    assert conns.remote_ports() == [5432, 6379]
    assert conns.remote_port_series(5432) == (0, 2, 5)
    assert conns.remote_port_series(6379) == (0, 1, 0)


# ----------------------------------------------------------------------------- cpu_ratio


def test_cpu_ratio_interpolates_between_polls() -> None:
    # GIVEN a thread that ran 0.5 s of CPU between t=1 and t=2, then none until t=3
    res = series([(0.0, 0.0), (1.0, 0.0), (2.0, 0.5), (3.0, 0.5)])

    assert cpu_ratio(res, 1, 1, 1.0, 2.0) == 0.5
    assert cpu_ratio(res, 1, 1, 1.25, 1.75) == 0.5
    assert cpu_ratio(res, 1, 1, 2.0, 3.0) == 0.0
    # [1.5, 2.5]: 0.25 s of CPU before t=2, none after
    assert cpu_ratio(res, 1, 1, 1.5, 2.5) == 0.25
    assert cpu_ratio(res, 1, 1, 0.0, 3.0) == pytest.approx(0.5 / 3, rel=1e-15)


def test_cpu_ratio_is_none_outside_the_polls() -> None:
    res = series([(1.0, 0.0), (2.0, 1.0)])

    assert cpu_ratio(res, 1, 1, 0.5, 1.5) is None
    assert cpu_ratio(res, 1, 1, 1.5, 2.5) is None
    assert cpu_ratio(res, 1, 2, 1.0, 2.0) is None  # unknown thread
    assert cpu_ratio(res, 2, 1, 1.0, 2.0) is None  # unknown process
    assert cpu_ratio(res, 1, 1, 1.0, 2.0) == 1.0


def test_cpu_ratio_is_none_across_a_gap_in_the_polls() -> None:
    res = series([(0.0, 0.0), (0.05, 0.05), (5.0, 0.1), (5.05, 0.15)])

    assert cpu_ratio(res, 1, 1, 0.0, 0.05) == 1.0
    assert cpu_ratio(res, 1, 1, 1.0, 1.1) is None
    assert cpu_ratio(res, 1, 1, 1.0, 1.1, max_gap_s=10.0) == pytest.approx(0.05 / 4.95, rel=1e-12)


def test_cpu_ratio_clamps_poll_jitter_to_0_and_1() -> None:
    # Each thread is read a little after its poll's timestamp: 0.11 s of CPU in 0.1 s.
    res = series([(0.0, 0.0), (0.1, 0.11), (0.2, 0.05)])

    assert cpu_ratio(res, 1, 1, 0.0, 0.1) == 1.0
    assert cpu_ratio(res, 1, 1, 0.1, 0.2) == 0.0


def test_cpu_ratio_rejects_an_empty_window() -> None:
    res = series([(0.0, 0.0), (1.0, 1.0)])

    with pytest.raises(ValueError, match="empty window"):
        cpu_ratio(res, 1, 1, 0.5, 0.5)


# ----------------------------------------------------------------------------- growth


def test_growth_of_a_steady_leak() -> None:
    # GIVEN fds growing by exactly 1 every 6 s (10 per minute) from 100, for 2 minutes
    res = points([(6.0 * i, 100 + i) for i in range(21)])

    g = growth(res, "fds", 1)

    assert g.metric == "fds"
    assert g.pid == 1
    assert g.points == 21
    assert g.duration_s == 120.0
    assert g.slope_per_min == pytest.approx(10.0, rel=1e-12)
    assert g.start_value == pytest.approx(100.0, rel=1e-12)
    assert g.end_value == pytest.approx(120.0, rel=1e-12)
    assert g.relative == pytest.approx(0.2, rel=1e-12)
    assert g.r2 == pytest.approx(1.0, rel=1e-12)
    assert g.steady is True


def test_growth_of_a_flat_series_is_not_steady() -> None:
    res = points([(float(i), 50) for i in range(10)])

    g = growth(res, "rss_bytes", 1)

    assert (g.slope_per_min, g.relative, g.r2, g.steady) == (0.0, 0.0, 1.0, False)
    assert (g.start_value, g.end_value) == (50.0, 50.0)


def test_growth_of_a_noisy_series_is_not_steady() -> None:
    # Up and down around 100 with a slight upward tilt: r2 is low.
    values = [100, 130, 90, 120, 95, 125, 100, 128, 97, 131]
    res = points([(float(i), v) for i, v in enumerate(values)])

    g = growth(res, "connections", 1)

    assert g.slope_per_min > 0
    assert g.r2 < 0.8
    assert g.steady is False


def test_growth_of_a_small_rise_is_not_steady() -> None:
    # A perfect line, but only +2% over the profile.
    res = points([(float(i), 1000 + 2 * i) for i in range(11)])

    g = growth(res, "rss_bytes", 1)

    assert g.relative == pytest.approx(0.02, rel=1e-12)
    assert g.steady is False
    assert growth(res, "rss_bytes", 1, min_relative=0.01).steady is True


def test_growth_from_zero_stays_finite() -> None:
    res = points([(float(i), 2 * i) for i in range(6)])

    g = growth(res, "connections", 1)

    assert g.relative == pytest.approx(10.0, rel=1e-12)  # (10 - 0) / max(0, 1)
    assert g.steady is True


def test_growth_needs_enough_points_and_skips_unknown_values() -> None:
    res = points([(0.0, 1), (1.0, 2), (2.0, UNKNOWN), (3.0, 4)])
    res.points.append(ResourcePoint(4.0, 2, 1, 1, 1, 1))  # another process

    g = growth(res, "fds", 1)

    assert g.points == 3
    assert g.slope_per_min == pytest.approx(60.0, rel=1e-12)
    assert g.steady is False  # fewer than min_points
    assert growth(res, "fds", 1, min_points=3).steady is True


def test_growth_without_data() -> None:
    assert growth(Resources(), "fds", 1).points == 0
    single = growth(points([(1.0, 7)]), "fds", 1)
    assert (single.points, single.start_value, single.steady) == (1, 7.0, False)


@pytest.mark.parametrize(
    "intervals",
    [
        {"cpu_interval_s": 0.0},
        {"resource_interval_s": -1.0},
        {"sched_interval_s": 0.0},  # a zero poll interval would spin the monitor thread
    ],
)
def test_a_poll_interval_that_is_not_positive_is_refused(
    tmp_path: Path, intervals: dict[str, float]
) -> None:
    given = {"cpu_interval_s": 0.05, "resource_interval_s": 1.0, "sched_interval_s": 0.01}
    given.update(intervals)
    with pytest.raises(ValueError, match="poll intervals must be positive"):
        ResourceMonitor(
            tmp_path / "resources.jsonl",
            [],
            t0=0.0,
            cpu_interval_s=given["cpu_interval_s"],
            resource_interval_s=given["resource_interval_s"],
            sched_interval_s=given["sched_interval_s"],
        )
