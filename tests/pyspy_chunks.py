"""Hand-written py-spy speedscope chunks and output directories holding them (the py-spy
format tests, the installed-wheel test, the live view and --scout-rate)."""

from __future__ import annotations

from pathlib import Path

import orjson

from asgiprof import store
from asgiprof.model import Route, RouteTable, SamplingInfo, TargetInfo


def doc(profiles: list[dict[str, object]]) -> bytes:
    """A py-spy speedscope chunk of one process (pid 7: a loop thread 7 running `handler`,
    a worker thread 8) holding `profiles`."""
    frames = [
        {"name": 'process 7:"python -m uvicorn app:app"', "file": "", "line": 0},
        {"name": "thread (7): MainThread", "file": "", "line": 0},
        {"name": "<module>", "file": "/srv/app.py", "line": 1},
        {"name": "handler", "file": "/srv/app.py", "line": 9},
        {"name": "thread (8): AnyIO worker thread", "file": "", "line": 0},
    ]
    return orjson.dumps({"shared": {"frames": frames}, "profiles": profiles})


def profile_dir(out: Path, sampling: SamplingInfo | None = None) -> Path:
    """An output directory of pid 7 (`uvicorn app:app`) with its meta.json and no chunk."""
    store.prepare_out_dir(out)
    store.write_meta(
        out,
        TargetInfo(pids=(7,), command=("uvicorn", "app:app"), server="uvicorn"),
        sampling or SamplingInfo(100, 1000.0, 2.0, 0, 0),
    )
    return out


def write_profile(out: Path, chunks: list[bytes]) -> None:
    """An output directory of pid 7 holding these py-spy chunks, one second each."""
    profile_dir(out)
    for i, data in enumerate(chunks, start=1):
        (out / "raw" / f"{store.chunk_name(i)}.speedscope.json").write_bytes(data)
        store.write_chunk_meta(out, i, start_s=i - 1.0, end_s=float(i), samples=3, errors=0, rc=0)


ASYNCIO = "/usr/lib/python3.11/asyncio"
APP = "/srv/app.py"


def loop_chunk(loop: list[list[int]], worker: list[list[int]]) -> bytes:
    """A speedscope chunk of pid 7: its loop thread (7) and a worker thread (8), each a list
    of samples (indexes into the frames below, outermost first)."""
    frames = [
        {"name": "thread (7): MainThread", "file": "", "line": 0},  # 0
        {"name": "run_forever", "file": f"{ASYNCIO}/base_events.py", "line": 600},  # 1
        {"name": "_run_once", "file": f"{ASYNCIO}/base_events.py", "line": 1900},  # 2
        {"name": "select", "file": "/usr/lib/python3.11/selectors.py", "line": 468},  # 3
        {"name": "_run", "file": f"{ASYNCIO}/events.py", "line": 80},  # 4
        {"name": "get_user", "file": APP, "line": 12},  # 5
        {"name": "sleep_a_bit", "file": APP, "line": 30},  # 6
        {"name": "thread (8): AnyIO worker thread", "file": "", "line": 0},  # 7
        {"name": "sync_route", "file": APP, "line": 40},  # 8
        {"name": "wait", "file": "/usr/lib/python3.11/threading.py", "line": 320},  # 9
    ]
    profiles = [
        {"type": "sampled", "name": 'Thread 7 "MainThread"', "samples": loop},
        {"type": "sampled", "name": 'Thread 8 "AnyIO worker thread"', "samples": worker},
    ]
    return orjson.dumps({"shared": {"frames": frames}, "profiles": profiles})


IDLE = [0, 1, 2, 3]
BLOCKED = [0, 1, 2, 4, 5, 6]  # the same stack, sample after sample: it holds still
SHORT = [0, 1, 2, 4, 5]
ROUTES = RouteTable(
    (
        Route("GET", "/users/{user_id}", "get_user", APP, 10, 14, True),
        Route("GET", "/sync", "sync_route", APP, 38, 42, False),
    ),
    "app",
)
