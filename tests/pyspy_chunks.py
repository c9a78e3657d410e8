"""Hand-written py-spy speedscope chunks and output directories holding them (the py-spy
format tests and the installed-wheel test)."""

from __future__ import annotations

from pathlib import Path

import orjson

from asgiprof import store
from asgiprof.model import SamplingInfo, TargetInfo


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


def write_profile(out: Path, chunks: list[bytes]) -> None:
    """An output directory of pid 7 holding these py-spy chunks, one second each."""
    store.prepare_out_dir(out)
    store.write_meta(
        out,
        TargetInfo(pids=(7,), command=("uvicorn", "app:app"), server="uvicorn"),
        SamplingInfo(100, 1000.0, 2.0, 0, 0),
    )
    for i, data in enumerate(chunks, start=1):
        (out / "raw" / f"{store.chunk_name(i)}.speedscope.json").write_bytes(data)
        store.write_chunk_meta(out, i, start_s=i - 1.0, end_s=float(i), samples=3, errors=0, rc=0)
