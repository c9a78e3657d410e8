"""The output directory: the contract between collecting and reporting.

    OUT/meta.json              target and sampling parameters (rewritten as sampling goes)
    OUT/raw/chunk-NNNN.speedscope.json   py-spy's own output, kept untouched
    OUT/raw/chunk-NNNN.json    that chunk's wall-clock span and py-spy's counts
    OUT/routes.json            the app's route table (or why it could not be read)
    OUT/resources.jsonl        psutil polls (see collect/resources.py)
    OUT/server.log             the launched server's output (run only)

`load_profile(OUT)` rebuilds the `Profile` from these files alone, so `asgiprof report`
can regenerate every artifact.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from asgiprof.collect.pyspy_format import parse_chunk, place_samples
from asgiprof.errors import CorruptProfileError, OutputDirError
from asgiprof.model import (
    NO_STACK,
    Chunk,
    Frame,
    Interner,
    Profile,
    Resources,
    Route,
    RouteTable,
    SamplingInfo,
    TargetInfo,
    ThreadInfo,
    ThreadTimeline,
)

META = "meta.json"
RAW_DIR = "raw"
ROUTES = "routes.json"
RESOURCES = "resources.jsonl"
SERVER_LOG = "server.log"
FORMAT = 1


def default_out_dir(now: float | None = None) -> Path:
    """./asgiprof-out-<date-time>, with a suffix when that name is taken."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now or time.time()))
    base = Path(f"asgiprof-out-{stamp}")
    for n in range(1, 1000):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        if not candidate.exists():
            return candidate
    return base


def prepare_out_dir(out: Path) -> Path:
    """Create OUT (or accept an empty one); refuse one that already holds other files."""
    if out.exists() and not out.is_dir():
        raise OutputDirError(
            f"output path {out} exists and is not a directory: choose another --out"
        )
    if out.is_dir() and any(out.iterdir()):
        what = "a profile" if (out / META).exists() else "other files"
        raise OutputDirError(
            f"output directory {out} already holds {what}: choose a new --out "
            f"(or `asgiprof report {out}` to re-render a saved profile)"
        )
    try:
        (out / RAW_DIR).mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputDirError(
            f"cannot write to output directory {out}: {exc.strerror}: choose a writable --out"
        ) from exc
    return out


def discard_if_empty(out: Path) -> None:
    """Remove an output directory that holds no samples (a failed start), keeping others."""
    raw = out / RAW_DIR
    if raw.is_dir() and any(raw.iterdir()):
        return
    for name in (META, ROUTES, RESOURCES, SERVER_LOG):
        (out / name).unlink(missing_ok=True)
    for path in (raw, out):
        try:
            path.rmdir()
        except OSError:
            return


def write_json(path: Path, data: Any) -> None:
    """Write atomically (temp file + rename): a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    os.replace(tmp, path)


def chunk_name(index: int) -> str:
    return f"chunk-{index:04d}"


def write_meta(out: Path, target: TargetInfo, sampling: SamplingInfo) -> None:
    t = asdict(target)
    s = asdict(sampling)
    s.pop("chunks")
    write_json(out / META, {"format": FORMAT, "target": t, "sampling": s})


def write_routes(out: Path, table: RouteTable) -> None:
    write_json(
        out / ROUTES,
        {
            "source": table.source,
            "error": table.error,
            "routes": [asdict(r) for r in table.routes],
        },
    )


def write_chunk_meta(
    out: Path, index: int, *, start_s: float, end_s: float, samples: int, errors: int, rc: int
) -> None:
    write_json(
        out / RAW_DIR / f"{chunk_name(index)}.json",
        {"start_s": start_s, "end_s": end_s, "samples": samples, "errors": errors, "rc": rc},
    )


def _read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise CorruptProfileError(f"{path} is missing: not an asgiprof output directory?") from exc
    except (orjson.JSONDecodeError, OSError) as exc:
        raise CorruptProfileError(f"{path} is unreadable: {exc}") from exc


def _as_target(data: Mapping[str, Any]) -> TargetInfo:
    return TargetInfo(
        pids=tuple(int(p) for p in data.get("pids", ())),
        command=tuple(str(c) for c in data.get("command", ())),
        server=str(data.get("server", "unknown")),
        cwd=str(data.get("cwd", "")),
        python=str(data.get("python", "")),
        app_spec=data.get("app_spec"),
        mode="attach" if data.get("mode") == "attach" else "run",
        exit_status=data.get("exit_status"),
    )


def load_routes(out: Path) -> RouteTable:
    path = out / ROUTES
    if not path.exists():
        return RouteTable((), "none", "route table was not read")
    data = _read_json(path)
    try:
        routes = tuple(Route(**r) for r in data.get("routes", ()))
    except TypeError as exc:
        raise CorruptProfileError(f"{path} holds an unexpected route entry: {exc}") from exc
    if data.get("source") == "app":
        return RouteTable(routes, "app", data.get("error"))
    return RouteTable(routes, "none", data.get("error"))


def load_profile(out: Path) -> Profile:
    """Rebuild the Profile from an output directory (raises CorruptProfileError)."""
    if not out.is_dir():
        raise CorruptProfileError(f"{out} is not a directory: give the --out folder of a profile")
    meta = _read_json(out / META)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CorruptProfileError(f"{out / META} is not an asgiprof {FORMAT} profile")
    target = _as_target(meta.get("target", {}))
    s = meta.get("sampling", {})
    rate_hz = int(s.get("rate_hz", 100)) or 100
    default_pid = target.pids[0] if target.pids else 0

    frames: list[Frame] = []
    stacks: list[tuple[int, ...]] = []
    interner = Interner(frames, stacks)
    timelines: dict[tuple[int, int], ThreadTimeline] = {}
    chunks: list[Chunk] = []
    problems: list[str] = []

    raw_dir = out / RAW_DIR
    chunk_files = sorted(raw_dir.glob("chunk-*.speedscope.json")) if raw_dir.is_dir() else []
    for path in chunk_files:
        stem = path.name.removesuffix(".speedscope.json")
        cmeta_path = raw_dir / f"{stem}.json"
        try:
            data = path.read_bytes()
            threads = parse_chunk(data, interner, default_pid=default_pid)
        except CorruptProfileError as exc:
            # A truncated last chunk (py-spy killed mid-write) must not cost the others.
            problems.append(f"{path.name}: {exc.message}")
            continue
        longest = max((len(t.stack_ids) for t in threads), default=0)
        if cmeta_path.exists():
            cm = _read_json(cmeta_path)
            start_s, end_s = float(cm["start_s"]), float(cm["end_s"])
            n_samples, n_errors = int(cm.get("samples", longest)), int(cm.get("errors", 0))
        else:
            # asgiprof died before writing the chunk's span: py-spy's file time ends it.
            started_at = float(s.get("started_at", 0.0))
            end_s = path.stat().st_mtime - started_at
            start_s = end_s - longest / rate_hz
            n_samples, n_errors = longest, 0
        chunks.append(Chunk(f"{RAW_DIR}/{path.name}", start_s, end_s, n_samples, n_errors))
        for ts in threads:
            key = (ts.thread.pid, ts.thread.tid)
            tl = timelines.get(key)
            if tl is None:
                tl = timelines[key] = ThreadTimeline(ts.thread)
            elif not tl.thread.name and ts.thread.name:
                tl.thread = ThreadInfo(ts.thread.pid, ts.thread.tid, ts.thread.name)
            first, period = place_samples(len(ts.stack_ids), longest, start_s, end_s, rate_hz)
            if len(tl) and tl.stack[-1] != NO_STACK:
                last_end = tl.start_s[-1] + tl.duration_s[-1]
                if first > last_end:
                    tl.append(last_end, first - last_end, NO_STACK, 0)
            _append_runs(tl, ts.stack_ids, first, period)

    if chunk_files and not chunks:
        raise CorruptProfileError(
            f"no readable py-spy output in {raw_dir}: " + "; ".join(problems[:3])
        )

    from asgiprof.collect.resources import load_resources  # late: optional file

    res_path = out / RESOURCES
    resources = load_resources(res_path) if res_path.exists() else Resources()

    total_samples = sum(c.samples for c in chunks)
    sampling = SamplingInfo(
        rate_hz=rate_hz,
        started_at=float(s.get("started_at", 0.0)),
        duration_s=float(s.get("duration_s", chunks[-1].end_s if chunks else 0.0)),
        samples=total_samples,
        errors=sum(c.errors for c in chunks),
        chunks=tuple(chunks),
        stopped_by=str(s.get("stopped_by", "unknown")),
    )
    profile = Profile(
        target=target,
        sampling=sampling,
        frames=frames,
        stacks=stacks,
        threads=sorted(timelines.values(), key=lambda t: (t.thread.pid, t.thread.tid)),
        routes=load_routes(out),
        resources=resources,
        problems=problems,
    )
    return profile


def _append_runs(tl: ThreadTimeline, stack_ids: list[int], first: float, period: float) -> None:
    """Run-length encode one chunk's samples onto the timeline."""
    i, n = 0, len(stack_ids)
    t = first
    while i < n:
        sid = stack_ids[i]
        j = i + 1
        while j < n and stack_ids[j] == sid:
            j += 1
        count = j - i
        tl.append(t, count * period, sid, count)
        t += count * period
        i = j
