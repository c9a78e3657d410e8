"""The output directory: the contract between collecting and reporting.

    OUT/meta.json              target and sampling parameters (rewritten as sampling goes)
    OUT/raw/chunk-NNNN.speedscope.json   py-spy's own output, kept untouched
    OUT/raw/chunk-NNNN.json    that chunk's wall-clock span and py-spy's counts
    OUT/raw/gil-NNNN.*.json    short py-spy --gil windows: who held the GIL (gil_sampler.py)
    OUT/routes.json            the app's route table (or why it could not be read)
    OUT/resources.jsonl        psutil polls (see collect/resources.py)
    OUT/server.log             the launched server's output (run only): its access log
                               gives requests per route (see collect/access_log.py)
    OUT/load.json, load.log    the load command's outcome and output (--load, --load-url)

`load_profile(OUT)` rebuilds the `Profile` from these files alone, so `asgiprof report`
can regenerate every artifact.
"""

from __future__ import annotations

import gc
import math
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from itertools import accumulate
from pathlib import Path
from typing import Any

import orjson

from asgiprof.collect.access_log import count_requests
from asgiprof.collect.pyspy_format import ThreadSamples, parse_chunk, place_samples, seal
from asgiprof.errors import CorruptProfileError, OutputDirError
from asgiprof.model import (
    NO_STACK,
    Chunk,
    Frame,
    GilSamples,
    Interner,
    LoadInfo,
    Profile,
    RateChange,
    Resources,
    Route,
    RouteDependency,
    RouteTable,
    SamplingInfo,
    TargetInfo,
    ThreadInfo,
    ThreadTimeline,
)
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


def _chunk_files(out: Path) -> list[Path]:
    raw = out / RAW_DIR
    try:
        return sorted(raw.glob("chunk-*.speedscope.json")) if raw.is_dir() else []
    except OSError:
        return []


def discard_if_empty(out: Path) -> None:
    """Remove an output directory that holds no samples (a failed start), keeping others."""
    if not _chunk_files(out):
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
    data = _dict(_read_json(path), str(path))
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
            started_s=_float(data["started_s"]),
            duration_s=_float(data["duration_s"]),
            stopped_by=stopped_by,
            exit_status=None if status is None else _int(status),
            output_tail=tuple(str(line) for line in _list(data.get("output_tail", []))),
            requests=None if requests is None else _int(requests),
            failed_requests=None if failed is None else _int(failed),
            requests_by_path=tuple(
                (str(_list(pair)[0]), _int(_list(pair)[1]))
                for pair in _list(data.get("requests_by_path", []))
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
) -> None:
    """The chunk's span (sampling start to py-spy's exit) and py-spy's counts: `samples`
    thread stacks and `errors` failed reads as py-spy printed them, `intervals` sampling
    instants, `lag_s` the furthest py-spy said it fell behind, `rate_hz` the rate it
    was asked for."""
    write_json(
        out / RAW_DIR / f"{chunk_name(index)}.json",
        {
            "start_s": start_s,
            "end_s": end_s,
            "samples": samples,
            "errors": errors,
            "rc": rc,
            "intervals": intervals,
            "lag_s": lag_s,
            "rate_hz": rate_hz,
        },
    )


def seal_chunk(path: Path) -> int:
    """Mask secrets in a chunk py-spy wrote (see `pyspy_format.seal`), rewriting it in
    place; returns its number of sampling instants. Raises CorruptProfileError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptProfileError(f"{path.name} is unreadable: {exc.strerror}") from exc
    sealed, intervals = seal(data)
    if sealed is not None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(sealed)
        os.replace(tmp, path)
    return intervals


def _read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise CorruptProfileError(f"{path} is missing: not an asgiprof output directory?") from exc
    except (orjson.JSONDecodeError, OSError) as exc:
        raise CorruptProfileError(f"{path} is unreadable: {exc}") from exc


def _as_target(data: Mapping[str, Any]) -> TargetInfo:
    exit_status = data.get("exit_status")
    app_spec = data.get("app_spec")
    return TargetInfo(
        pids=tuple(_int(p) for p in _list(data.get("pids", ()))),
        command=tuple(str(c) for c in _list(data.get("command", ()))),
        server=str(data.get("server", "unknown")),
        cwd=str(data.get("cwd", "")),
        python=str(data.get("python", "")),
        app_spec=app_spec if isinstance(app_spec, str) else None,
        mode="attach" if data.get("mode") == "attach" else "run",
        exit_status=_int(exit_status) if exit_status is not None else None,
    )


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r:.40}")
    return value


def _rate_change(data: Any) -> RateChange:
    if not isinstance(data, dict):
        raise TypeError("a rate change is not a JSON object")
    return RateChange(
        _float(data.get("at_s")),
        _int(data.get("from_hz")),
        _int(data.get("to_hz")),
        str(data.get("reason", "")),
    )


def _trim_overlap(
    threads: list[ThreadSamples],
    longest: int,
    span_start_s: float,
    span_end_s: float,
    keep_from_s: float,
    rate_hz: float,
) -> int:
    """Drop, in place, every sample placed before `keep_from_s` in a chunk that spans
    span_start_s..span_end_s; returns how many instants (of the longest thread) went."""
    dropped_instants = 0
    for ts in threads:
        n = ts.n_samples
        first, period = place_samples(n, longest, span_start_s, span_end_s, rate_hz)
        if period <= 0 or first >= keep_from_s:
            continue
        drop = min(n, math.ceil((keep_from_s - first) / period - 1e-9))
        if n == longest:
            dropped_instants = max(dropped_instants, drop)
        while drop and ts.counts:
            if ts.counts[0] <= drop:
                drop -= ts.counts[0]
                del ts.counts[0], ts.stacks[0]
            else:
                ts.counts[0] -= drop
                drop = 0
    return dropped_instants


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r:.40}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CorruptProfileError(f"{what} is not a JSON object")
    return value


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


def load_routes(out: Path) -> RouteTable:
    path = out / ROUTES
    if not path.exists():
        return RouteTable((), "none", "route table was not read")
    data = _dict(_read_json(path), str(path))
    try:
        routes = tuple(_route(r) for r in _list(data.get("routes", [])))
    except TypeError as exc:
        raise CorruptProfileError(f"{path} holds an unexpected route entry: {exc}") from exc
    error = data.get("error")
    error = error if isinstance(error, str) else None
    dependency_error = data.get("dependency_error")
    dependency_error = dependency_error if isinstance(dependency_error, str) else None
    if data.get("source") == "app":
        return RouteTable(routes, "app", error, dependency_error)
    return RouteTable(routes, "none", error, dependency_error)


def _chunk_meta(path: Path) -> dict[str, Any] | None:
    """A chunk's span and counts, or None when absent or unreadable (then py-spy's file
    time places the chunk)."""
    try:
        data = orjson.loads(path.read_bytes())
        start_s, end_s = _float(data["start_s"]), _float(data["end_s"])
        return {
            "start_s": start_s,
            "end_s": max(end_s, start_s),
            "samples": max(0, _int(data.get("samples", 0))),
            "errors": max(0, _int(data.get("errors", 0))),
            "intervals": max(0, _int(data.get("intervals", 0))),
            "lag_s": max(0.0, _float(data.get("lag_s", 0.0))),
            "rate_hz": max(0, _int(data.get("rate_hz", 0))),
        }
    except (OSError, orjson.JSONDecodeError, TypeError, ValueError, KeyError, AttributeError):
        return None


def read_chunk_meta(path: Path) -> Chunk:
    """A chunk's span and counts from its meta file (raises CorruptProfileError)."""
    data = _chunk_meta(path)
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
    )


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Loading allocates many small tuples that all stay alive: pause the cyclic collector,
    whose passes over them would be wasted work."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_profile(out: Path) -> Profile:
    """Rebuild the Profile from an output directory (raises CorruptProfileError).

    A damaged chunk is skipped and named in `problems`; so is a chunk py-spy finished after
    asgiprof died (it has no span file: its file time places it, and its secrets are masked
    here). Anything else unreadable is a CorruptProfileError naming the file.
    """
    if not out.is_dir():
        raise CorruptProfileError(f"{out} is not a directory: give the --out folder of a profile")
    meta = _read_json(out / META)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CorruptProfileError(f"{out / META} is not an asgiprof {FORMAT} profile")
    try:
        target = _as_target(_dict(meta.get("target", {}), "its target"))
        s = _dict(meta.get("sampling", {}), "its sampling")
        rate_hz = _int(s.get("rate_hz", 100))
        started_at = _float(s.get("started_at", 0.0))
        saved_duration_s = _float(s.get("duration_s", 0.0))
        stopped_by = str(s.get("stopped_by", "unknown"))
        nonblocking = s.get("nonblocking", False)
        if not isinstance(nonblocking, bool):
            raise TypeError(f"expected true or false for nonblocking, got {nonblocking!r:.40}")
        rate_changes = tuple(_rate_change(r) for r in _list(s.get("rate_changes", [])))
        watchdog = tuple(str(w) for w in _list(s.get("watchdog", [])))
    except (TypeError, ValueError) as exc:
        raise CorruptProfileError(
            f"{out / META} is damaged ({exc}): it cannot be reported; py-spy's own files are "
            f"in {out / RAW_DIR}"
        ) from exc
    if not 0 < rate_hz <= 100_000:
        raise CorruptProfileError(f"{out / META} is damaged (sampling rate {rate_hz} Hz)")
    default_pid = target.pids[0] if target.pids else 0

    frames: list[Frame] = []
    stacks: list[tuple[int, ...]] = []
    interner = Interner(frames, stacks)
    timelines: dict[tuple[int, int], ThreadTimeline] = {}
    chunks: list[Chunk] = []
    problems: list[str] = []
    unsealed = 0

    raw_dir = out / RAW_DIR
    chunk_files = _chunk_files(out)
    prev_end_s = 0.0
    with _gc_paused():  # every chunk: many small objects, all kept
        for path in chunk_files:
            stem = path.name.removesuffix(".speedscope.json")
            cmeta = _chunk_meta(raw_dir / f"{stem}.json")
            try:
                data = path.read_bytes()
                if cmeta is None:
                    unsealed += 1
                    data = _seal_late(path, data)
                threads = parse_chunk(data, interner, default_pid=default_pid)
            except CorruptProfileError as exc:
                # A truncated last chunk (py-spy killed mid-write) must not cost the others.
                problems.append(f"unreadable chunk skipped: {path.name}: {exc.message}")
                continue
            except OSError as exc:
                problems.append(f"unreadable chunk skipped: {path.name}: {exc.strerror}")
                continue
            longest = max((t.n_samples for t in threads), default=0)
            if cmeta is None:
                # asgiprof died before writing the chunk's span: py-spy's file time ends it.
                try:
                    end_s = path.stat().st_mtime - started_at
                except OSError:
                    end_s = prev_end_s + longest / rate_hz
                cmeta = {
                    "start_s": end_s - longest / rate_hz,
                    "end_s": end_s,
                    "samples": sum(t.n_samples for t in threads),
                    "errors": 0,
                    "intervals": longest,
                    "lag_s": 0.0,
                    "rate_hz": 0,
                }
            chunk_rate = cmeta["rate_hz"] or rate_hz
            # Each chunk starts while the one before it still samples (a few ms, so that
            # no instant goes unsampled): cut the overlap from this chunk's start, by time
            # alone, so that no instant counts twice and what is cut does not depend on
            # what the target was doing. A chunk that ends before the previous one is damage.
            span_start_s, span_end_s = cmeta["start_s"], max(cmeta["end_s"], cmeta["start_s"])
            start_s = max(span_start_s, prev_end_s)
            end_s = max(span_end_s, start_s)
            prev_end_s = end_s
            cut = 0
            if start_s > span_start_s and longest:
                cut = _trim_overlap(threads, longest, span_start_s, span_end_s, start_s, chunk_rate)
            intervals = max(0, (cmeta["intervals"] or longest) - cut)
            samples = max(0, cmeta["samples"] - cut * sum(1 for t in threads if t.n_samples))
            chunks.append(
                Chunk(
                    f"{RAW_DIR}/{path.name}",
                    start_s,
                    end_s,
                    samples,
                    cmeta["errors"],
                    intervals,
                    cmeta["lag_s"],
                    cmeta["rate_hz"],
                    round(start_s - span_start_s, 6),
                )
            )
            longest = max((t.n_samples for t in threads), default=0)
            for ts in threads:
                key = (ts.thread.pid, ts.thread.tid)
                tl = timelines.get(key)
                if tl is None:
                    tl = timelines[key] = ThreadTimeline(ts.thread)
                elif not tl.thread.name and ts.thread.name:
                    tl.thread = ThreadInfo(ts.thread.pid, ts.thread.tid, ts.thread.name)
                first, period = place_samples(ts.n_samples, longest, start_s, end_s, chunk_rate)
                if len(tl) and tl.stack[-1] != NO_STACK:
                    last_end = tl.start_s[-1] + tl.duration_s[-1]
                    if first > last_end:
                        tl.append(last_end, first - last_end, NO_STACK, 0)
                _append_runs(tl, ts.stacks, ts.counts, first, period)

    gil = _load_gil(raw_dir, interner, default_pid, problems)

    if chunk_files and not chunks:
        raise CorruptProfileError(
            f"no readable py-spy output in {raw_dir}: " + "; ".join(problems[:3])
        )

    from asgiprof.collect.resources import load_resources  # late: optional file

    res_path = out / RESOURCES
    resources = load_resources(res_path) if res_path.exists() else Resources()

    last_end_s = chunks[-1].end_s if chunks else 0.0
    duration_s = saved_duration_s
    if stopped_by == "running":
        # meta.json is rewritten when sampling ends: asgiprof was killed before that.
        stopped_by = "unfinished"
        duration_s = last_end_s
        problems.append(
            f"asgiprof stopped before it finished (killed?): this report covers the "
            f"{last_end_s:.1f} s saved until then"
            + (
                f", {unsealed} chunk(s) of which py-spy wrote after asgiprof died"
                if unsealed
                else ""
            )
        )
    duration_s = max(duration_s, last_end_s)
    sampling = SamplingInfo(
        rate_hz=rate_hz,
        started_at=started_at,
        duration_s=duration_s,
        samples=sum(c.samples for c in chunks),
        errors=sum(c.errors for c in chunks),
        chunks=tuple(chunks),
        stopped_by=stopped_by,
        nonblocking=nonblocking,
        rate_changes=rate_changes,
        watchdog=watchdog,
    )
    problems.extend(sampling_problems(sampling))
    load = load_load(out)
    if load is not None and load.failure is not None:
        problems.append(f"{load.failure}: the profile may not show the load you meant (load.log)")
    problems.extend(f"watchdog: {event}" for event in watchdog)
    routes = load_routes(out)
    if routes.dependency_error is not None:
        problems.append(routes.dependency_error)
    if stopped_by == "target-exit" and target.exit_status is None:
        problems.append(
            "the target exited while sampled (its exit status is known only to its parent "
            "process): the report covers the time until then"
        )
    profile = Profile(
        target=target,
        sampling=sampling,
        frames=frames,
        stacks=stacks,
        threads=sorted(timelines.values(), key=lambda t: (t.thread.pid, t.thread.tid)),
        routes=routes,
        resources=resources,
        problems=problems,
        load=load,
        requests=count_requests(out / SERVER_LOG, routes.routes),
        gil=gil,
    )
    return profile


def _load_gil(
    raw_dir: Path, interner: Interner, default_pid: int, problems: list[str]
) -> GilSamples | None:
    """The `--gil` windows (collect/gil_sampler.py): GIL-holding samples per thread; None
    when there are none (sampled before they existed, or every window failed)."""
    try:
        paths = sorted(raw_dir.glob("gil-*.speedscope.json")) if raw_dir.is_dir() else []
    except OSError:
        return None
    gil = GilSamples(windows=0, seconds=0.0)
    for path in paths:
        meta = _chunk_meta(raw_dir / path.name.replace(".speedscope.json", ".json"))
        try:
            data = path.read_bytes()
            if meta is None:  # py-spy finished it after asgiprof died: never sealed
                data = _seal_late(path, data)
            threads = parse_chunk(data, interner, default_pid=default_pid)
        except (CorruptProfileError, OSError):
            problems.append(f"unreadable GIL window skipped: {path.name}")
            continue
        gil.windows += 1
        if meta is not None:
            gil.seconds += meta["end_s"] - meta["start_s"]
        for ts in threads:
            held = gil.held.setdefault((ts.thread.pid, ts.thread.tid), {})
            for sid, n in zip(ts.stacks, ts.counts, strict=True):
                held[sid] = held.get(sid, 0) + n
    return gil if gil.windows else None


# Below these, the report says how much py-spy missed (see `sampling_problems`).
MIN_COVERAGE = 0.9
MAX_ERROR_SHARE = 0.01
COVERAGE_NOTE = "py-spy sampled "  # how the coverage problem starts (analyze drops it when idle)


def sampling_problems(sampling: SamplingInfo) -> list[str]:
    """Sentences for the report when py-spy fell behind or failed to read samples."""
    problems: list[str] = []
    intervals = sampling.intervals
    # What the rates asked for (one rate: rate x duration).
    expected = (
        round(intervals / sampling.coverage)
        if sampling.coverage > 0
        else round(sampling.rate_hz * sampling.duration_s)
    )
    if expected >= sampling.rate_hz and intervals and sampling.coverage < MIN_COVERAGE:
        lag = (
            f"; it reported falling up to {sampling.max_lag_s:.1f} s behind"
            if sampling.max_lag_s
            else ""
        )
        problems.append(
            f"{COVERAGE_NOTE}{intervals} of the {expected} instants asked for "
            f"({sampling.coverage:.0%}): it fell {sampling.behind_s:.1f} s behind its rate"
            f"{lag}; times are estimates, lower --rate or load the machine less"
        )
    for change in sampling.rate_changes:
        verb = "lowered" if change.to_hz < change.from_hz else "raised"
        problems.append(
            f"the sampler {verb} its rate from {change.from_hz} to {change.to_hz} Hz at "
            f"{change.at_s:.1f} s: {change.reason}"
        )
    if intervals and sampling.errors > MAX_ERROR_SHARE * intervals:
        problems.append(
            f"py-spy failed to read {sampling.errors} samples ({sampling.errors / intervals:.1%}"
            " of instants): those moments are missing from the report"
        )
    return problems


def _seal_late(path: Path, data: bytes) -> bytes:
    """A chunk py-spy finished after asgiprof died was never sealed: mask its secrets now
    (in place when the directory is writable)."""
    sealed, _ = seal(data)
    if sealed is None:
        return data
    try:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(sealed)
        os.replace(tmp, path)
    except OSError:
        pass
    return sealed


def _append_runs(
    tl: ThreadTimeline, stacks: list[int], counts: list[int], first: float, period: float
) -> None:
    """Append one chunk's runs to the timeline, in bulk (runs never merge across chunks)."""
    if not counts:
        return
    durations = [n * period for n in counts]
    starts = accumulate(durations[:-1], initial=first)  # the same sums, in the same order
    tl.start_s.extend(starts)
    tl.duration_s.extend(durations)
    tl.stack.extend(stacks)
    tl.samples.extend(counts)
