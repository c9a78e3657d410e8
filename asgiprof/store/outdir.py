"""The output directory's files and names: the contract between recording and reporting.

    OUT/meta.json              target and sampling parameters (rewritten as sampling goes)
    OUT/raw/chunk-NNNN.chrometrace.json  py-spy's own output, secrets masked (.speedscope.json
                               in directories recorded before 0.2)
    OUT/raw/chunk-NNNN.json    that chunk's wall-clock span and py-spy's counts
    OUT/raw/gil-NNNN.*.json    short py-spy --gil windows: who held the GIL (record/gil_sampler.py)
    OUT/routes.json            the app's route table (or why it could not be read)
    OUT/resources.jsonl        psutil polls (format: store/resources.py)
    OUT/server.log             the launched server's output (run), or the request lines
                               an attached server logged to a file while sampled (attach,
                               record/server_log.py): requests per route (store/access_log.py)
    OUT/load.json, load.log    the load command's outcome and output (--load, --load-url)

    OUT/sources.json           source lines of culprits (store/sources.py)

`load_profile(OUT)` (store/profile.py) rebuilds the `Profile` from these files alone, so
`asgiprof report` can regenerate every artifact. Only the store package reads or writes them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from asgiprof.errors import CorruptProfileError, OutputDirError
from asgiprof.model import (
    Chunk,
    LoadInfo,
    Route,
    RouteDependency,
    RouteTable,
    SamplingInfo,
    TargetInfo,
)
from asgiprof.store.fields import as_dict, as_float, as_int, as_list, read_json
from asgiprof.store.pyspy import seal
from asgiprof.text import json_safe

META = "meta.json"


RAW_DIR = "raw"


ROUTES = "routes.json"


RESOURCES = "resources.jsonl"


SERVER_LOG = "server.log"


LOAD = "load.json"


LOAD_LOG = "load.log"


PYSPY_LOG = "pyspy.log"  # in RAW_DIR: the output of every py-spy run


GIL_LOG = "pyspy-gil.log"  # in RAW_DIR: the output of the `--gil` windows' py-spy runs


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
    try:
        taken = out.is_dir() and any(out.iterdir())
    except OSError as exc:
        raise OutputDirError(
            f"cannot read output directory {out}: {exc.strerror}: choose a writable --out"
        ) from exc
    if taken:
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


def chunk_files(out: Path) -> list[Path]:
    raw = out / RAW_DIR
    try:
        if not raw.is_dir():
            return []
        return sorted(
            [*raw.glob(f"chunk-*{SPEEDSCOPE_SUFFIX}"), *raw.glob(f"chunk-*{TRACE_SUFFIX}")]
        )
    except OSError:
        return []


def discard_if_empty(out: Path) -> None:
    """Remove an output directory that holds no samples (a failed start), keeping others."""
    if not chunk_files(out):
        discard(out)


def discard(out: Path) -> None:
    """Remove the files asgiprof writes into OUT, then OUT if that left it empty: the
    output of a start that failed (no server, not an ASGI server), never a user's file."""
    raw = out / RAW_DIR
    try:
        ours = (
            [
                *raw.glob("chunk-*.json"),
                *raw.glob("chunk-*.log"),
                *raw.glob("gil-*.json"),
                *raw.glob("*.tmp"),
            ]
            if raw.is_dir()
            else []
        )
        for path in ours:
            path.unlink(missing_ok=True)
        (raw / PYSPY_LOG).unlink(missing_ok=True)
        (raw / GIL_LOG).unlink(missing_ok=True)
        names = (
            META,
            ROUTES,
            RESOURCES,
            SERVER_LOG,
            LOAD,
            LOAD_LOG,
            f"{META}.tmp",
            f"{ROUTES}.tmp",
        )
        for name in names:
            (out / name).unlink(missing_ok=True)
    except OSError:
        return
    for path in (raw, out):
        try:
            path.rmdir()
        except OSError:
            return


def _json_safe(data: Any) -> Any:
    if isinstance(data, str):
        return json_safe(data)
    if isinstance(data, dict):
        return {_json_safe(k): _json_safe(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_json_safe(v) for v in data]
    return data


def write_json(path: Path, data: Any) -> None:
    """Write atomically (temp file + rename): a crash never leaves half a file."""
    option = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    try:
        encoded = orjson.dumps(data, option=option)
    except orjson.JSONEncodeError:  # text from the target that is not valid UTF-8
        encoded = orjson.dumps(_json_safe(data), option=option)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(encoded)
    os.replace(tmp, path)


def chunk_name(index: int) -> str:
    return f"chunk-{index:04d}"


SPEEDSCOPE_SUFFIX = ".speedscope.json"
TRACE_SUFFIX = ".chrometrace.json"
PYSPY_FORMATS = {"chrometrace": TRACE_SUFFIX, "speedscope": SPEEDSCOPE_SUFFIX}


def chunk_path(out: Path, index: int, fmt: str = "") -> Path:
    """Where py-spy writes chunk `index` in format `fmt` (chrometrace or speedscope); without
    a format, the one that exists (output directories before 0.2 hold speedscope chunks)."""
    base = out / RAW_DIR / chunk_name(index)
    if fmt:
        return base.with_name(base.name + PYSPY_FORMATS[fmt])
    old = base.with_name(base.name + SPEEDSCOPE_SUFFIX)
    return old if old.exists() else base.with_name(base.name + TRACE_SUFFIX)


def chunk_stem(path: Path) -> str:
    """`chunk-NNNN` of a chunk's file, whichever its format."""
    return path.name.removesuffix(SPEEDSCOPE_SUFFIX).removesuffix(TRACE_SUFFIX)


def chunk_meta_path(out: Path, index: int) -> Path:
    """The chunk's span and counts (`write_chunk_meta`)."""
    return out / RAW_DIR / f"{chunk_name(index)}.json"


def chunk_log_path(out: Path, index: int) -> Path:
    """What one py-spy run prints, until `append_pyspy_log` moves it into pyspy.log."""
    return out / RAW_DIR / f"{chunk_name(index)}.log"


def append_pyspy_log(out: Path, index: int, pid: int, said: str) -> None:
    """Add one py-spy run's output to OUT/raw/pyspy.log (one py-spy at a time writes it)."""
    with open(out / RAW_DIR / PYSPY_LOG, "a", encoding="utf-8") as f:
        f.write(f"--- {chunk_name(index)} (py-spy {pid}) ---\n{said}")
    chunk_log_path(out, index).unlink(missing_ok=True)


def gil_name(index: int) -> str:
    return f"gil-{index:04d}"


def gil_path(out: Path, index: int) -> Path:
    """Where py-spy writes `--gil` window `index` (speedscope)."""
    return out / RAW_DIR / f"{gil_name(index)}.speedscope.json"


def gil_log_path(out: Path) -> Path:
    return out / RAW_DIR / GIL_LOG


def write_gil_meta(out: Path, index: int, *, start_s: float, end_s: float, intervals: int) -> None:
    write_json(
        out / RAW_DIR / f"{gil_name(index)}.json",
        {"start_s": start_s, "end_s": end_s, "intervals": intervals, "gil": True},
    )


def load_log_path(out: Path) -> Path:
    """The load command's output (--load), or the generator's summary (--load-url)."""
    return out / LOAD_LOG


def write_load_log(out: Path, lines: Sequence[str]) -> None:
    (out / LOAD_LOG).write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_meta(out: Path, target: TargetInfo, sampling: SamplingInfo) -> None:
    t = asdict(target)
    s = asdict(sampling)
    s.pop("chunks")
    write_json(out / META, {"format": FORMAT, "target": t, "sampling": s})


def write_load(out: Path, load: LoadInfo) -> None:
    data = asdict(load)
    data["output_tail"] = list(load.output_tail)
    data["requests_by_path"] = [list(pair) for pair in load.requests_by_path]
    write_json(out / LOAD, data)


_LOAD_STOPS = ("exit", "duration", "interrupt", "target-exit", "error")


def load_load(out: Path) -> LoadInfo | None:
    """The load run's record, or None when the profile was taken without --load."""
    path = out / LOAD
    if not path.exists():
        return None
    data = as_dict(read_json(path), str(path))
    try:
        stopped_by = data["stopped_by"]
        if stopped_by not in _LOAD_STOPS:
            raise ValueError(f"unknown stopped_by {stopped_by!r:.40}")
        status, requests, failed = (
            data.get(k) for k in ("exit_status", "requests", "failed_requests")
        )
        return LoadInfo(
            command=str(data["command"]),
            url=str(data["url"]),
            started_s=as_float(data["started_s"]),
            duration_s=as_float(data["duration_s"]),
            stopped_by=stopped_by,
            exit_status=None if status is None else as_int(status),
            output_tail=tuple(str(line) for line in as_list(data.get("output_tail", []))),
            requests=None if requests is None else as_int(requests),
            failed_requests=None if failed is None else as_int(failed),
            requests_by_path=tuple(
                (str(as_list(pair)[0]), as_int(as_list(pair)[1]))
                for pair in as_list(data.get("requests_by_path", []))
            ),
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CorruptProfileError(f"{path} is damaged ({exc}): delete it or re-run") from exc


def write_routes(out: Path, table: RouteTable) -> None:
    write_json(
        out / ROUTES,
        {
            "source": table.source,
            "error": table.error,
            "dependency_error": table.dependency_error,
            "routes": [asdict(r) for r in table.routes],
        },
    )


def write_chunk_meta(
    out: Path,
    index: int,
    *,
    start_s: float,
    end_s: float,
    samples: int,
    errors: int,
    rc: int,
    intervals: int = 0,
    lag_s: float = 0.0,
    rate_hz: int = 0,
    pause_s: float | None = None,
    written_s: float | None = None,
) -> None:
    """The chunk's span (sampling start to the signal that stopped it, or py-spy's exit)
    and py-spy's counts: `samples` thread stacks and `errors` failed reads as py-spy
    printed them, `intervals` sampling instants, `lag_s` the furthest py-spy said it fell
    behind, `rate_hz` the rate it was asked for, `pause_s` how long it held the target
    paused (None: not measured), `written_s` when its file appeared (after `end_s`)."""
    write_json(
        chunk_meta_path(out, index),
        {
            "start_s": start_s,
            "end_s": end_s,
            "samples": samples,
            "errors": errors,
            "rc": rc,
            "intervals": intervals,
            "lag_s": lag_s,
            "rate_hz": rate_hz,
            "pause_s": pause_s,
            "written_s": written_s if written_s is not None else end_s,
        },
    )


def seal_chunk(path: Path, samples: int = 0) -> int:
    """Mask secrets in a chunk py-spy wrote (see `store.pyspy.seal`), rewriting it in
    place; returns its number of sampling instants (`samples`: the thread stacks py-spy
    said it recorded, which chrometrace needs). Raises CorruptProfileError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptProfileError(f"{path.name} is unreadable: {exc.strerror}") from exc
    sealed, intervals = seal(data, samples)
    if sealed is not None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(sealed)
        os.replace(tmp, path)
    return intervals


_ROUTE_FIELDS: dict[str, type] = {
    "method": str,
    "path": str,
    "endpoint": str,
    "file": str,
    "first_line": int,
    "last_line": int,
    "is_async": bool,
}


_DEPENDENCY_FIELDS: dict[str, type] = {
    "function": str,
    "file": str,
    "first_line": int,
    "last_line": int,
    "depth": int,
}


def _check_fields(data: dict[str, Any], fields: dict[str, type], what: str) -> None:
    for name, kind in fields.items():
        value = data[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TypeError(f"{what} field {name} is not {kind.__name__}")


def _route_dependency(data: Any) -> RouteDependency:
    if not isinstance(data, dict) or set(data) != set(_DEPENDENCY_FIELDS):
        raise TypeError(
            "a route dependency needs exactly the fields " + ", ".join(_DEPENDENCY_FIELDS)
        )
    _check_fields(data, _DEPENDENCY_FIELDS, "route dependency")
    return RouteDependency(**data)


def _route(data: Any) -> Route:
    # "dependencies" is optional: routes.json files written before it was read lack it.
    if not isinstance(data, dict) or set(data) - {"dependencies"} != set(_ROUTE_FIELDS):
        raise TypeError("a route entry needs exactly the fields " + ", ".join(_ROUTE_FIELDS))
    _check_fields(data, _ROUTE_FIELDS, "route")
    fields = {name: data[name] for name in _ROUTE_FIELDS}
    if "dependencies" not in data:
        return Route(**fields)
    if not isinstance(data["dependencies"], list):
        raise TypeError("route field dependencies is not a list")
    return Route(**fields, dependencies=tuple(map(_route_dependency, data["dependencies"])))


class RoutesSoFar:
    """The route table while sampling: routes.json is written by a thread meanwhile, so it
    is read once it is there (an empty table until then)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._table: RouteTable | None = None

    def table(self) -> RouteTable:
        if self._table is None or not self._table.routes:
            if not (self.out / ROUTES).exists():
                return RouteTable((), "none", "not read yet")
            self._table = load_routes(self.out)
        return self._table


def load_routes(out: Path) -> RouteTable:
    path = out / ROUTES
    if not path.exists():
        return RouteTable((), "none", "route table was not read")
    data = as_dict(read_json(path), str(path))
    try:
        routes = tuple(_route(r) for r in as_list(data.get("routes", [])))
    except TypeError as exc:
        raise CorruptProfileError(f"{path} holds an unexpected route entry: {exc}") from exc
    error = data.get("error")
    error = error if isinstance(error, str) else None
    dependency_error = data.get("dependency_error")
    dependency_error = dependency_error if isinstance(dependency_error, str) else None
    if data.get("source") == "app":
        return RouteTable(routes, "app", error, dependency_error)
    return RouteTable(routes, "none", error, dependency_error)


def chunk_meta(path: Path) -> dict[str, Any] | None:
    """A chunk's span and counts, or None when absent or unreadable (then py-spy's file
    time places the chunk)."""
    try:
        data = orjson.loads(path.read_bytes())
        start_s, end_s = as_float(data["start_s"]), as_float(data["end_s"])
        return {
            "start_s": start_s,
            "end_s": max(end_s, start_s),
            "samples": max(0, as_int(data.get("samples", 0))),
            "errors": max(0, as_int(data.get("errors", 0))),
            "intervals": max(0, as_int(data.get("intervals", 0))),
            "lag_s": max(0.0, as_float(data.get("lag_s", 0.0))),
            "rate_hz": max(0, as_int(data.get("rate_hz", 0))),
            "pause_s": _pause_s(data.get("pause_s")),
            # Profiles from before the span ended at the signal: their end is the file's.
            "written_s": max(end_s, as_float(data.get("written_s", end_s))),
        }
    except (OSError, orjson.JSONDecodeError, TypeError, ValueError, KeyError, AttributeError):
        return None


def _pause_s(value: Any) -> float | None:
    return None if value is None else max(0.0, as_float(value))


def read_chunk_meta(path: Path) -> Chunk:
    """A chunk's span and counts from its meta file (raises CorruptProfileError)."""
    data = chunk_meta(path)
    if data is None:
        raise CorruptProfileError(f"{path} is missing or unreadable")
    return Chunk(
        f"{RAW_DIR}/{path.name}",
        data["start_s"],
        data["end_s"],
        data["samples"],
        data["errors"],
        data["intervals"],
        data["lag_s"],
        data["rate_hz"],
        pause_s=data["pause_s"],
    )
