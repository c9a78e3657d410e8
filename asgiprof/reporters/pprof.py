"""`profile.pb.gz`: the samples as a gzipped pprof profile (google/pprof profile.proto), the
format Grafana Pyroscope, Parca and `go tool pprof` read.

Contract: `pprof_profile(analysis)` returns the plain `PprofProfile`; `encode(profile)` its
protobuf bytes; `REPORTER.render` writes them gzipped. Every run of every thread is one
sample (runs with the same stack and labels are summed) with two values, `samples/count`
and `wall/nanoseconds` (the run's estimated wall time), and string labels decided by the
analysis (`Analysis.sample_labels`, `Analysis.thread_roles`):

    http_route   the route template (never a raw path), when the stack has one
    loop_state   idle / busy / blocked, on event-loop threads
    block_kind   cpu / io / unknown, on blocked samples
    thread_role  event_loop / threadpool / other
    worker       the pid (in a merged profile, `source:pid`)

Label names match `[a-zA-Z_][a-zA-Z0-9_]*` (Pyroscope rejects a whole upload otherwise) and
their values are bounded by routes x states x kinds x roles x workers.

The encoder is written by hand: profile.proto needs six small messages of varints, packed
varints and length-delimited fields, about sixty lines here, while the `protobuf` runtime
would be a compiled dependency (plus generated code to keep in step with its version) for
every user, most of whom never upload a profile. Readers check it in the tests.
"""

from __future__ import annotations

import gzip
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from asgiprof import __version__
from asgiprof.analyze.result import Analysis
from asgiprof.model import NO_STACK, Frame

ROLE_VALUES: Final = {"event-loop": "event_loop", "threadpool": "threadpool", "other": "other"}
LABEL_NAMES: Final = ("http_route", "loop_state", "block_kind", "thread_role", "worker")
EMPTY_STACK: Final = Frame("(no Python frames)", "", 0)


@dataclass(slots=True)
class PprofProfile:
    """profile.proto's content before encoding; ids are 1-based as pprof wants them."""

    strings: list[str] = field(default_factory=lambda: [""])
    sample_types: list[tuple[int, int]] = field(default_factory=list)  # (type, unit) ids
    functions: list[tuple[int, int, int]] = field(default_factory=list)  # name, file, line
    locations: list[tuple[int, int]] = field(default_factory=list)  # function id, line
    # location ids leaf first, (count, wall ns), label (key, value) string ids
    samples: list[tuple[tuple[int, ...], tuple[int, int], tuple[tuple[int, int], ...]]] = field(
        default_factory=list
    )
    time_nanos: int = 0
    duration_nanos: int = 0
    period_nanos: int = 0
    comments: list[int] = field(default_factory=list)
    binary: int = 0  # string id of the mapping's file name
    _string_ids: dict[str, int] = field(default_factory=lambda: {"": 0})

    def string(self, text: str) -> int:
        sid = self._string_ids.get(text)
        if sid is None:
            sid = self._string_ids[text] = len(self.strings)
            self.strings.append(text)
        return sid


def pprof_profile(analysis: Analysis) -> PprofProfile:
    profile = analysis.profile
    labels = analysis.sample_labels
    out = PprofProfile()
    # Sample types first: their strings are referenced by index below.
    out.sample_types = [
        (out.string("samples"), out.string("count")),
        (out.string("wall"), out.string("nanoseconds")),
    ]
    names = {name: out.string(name) for name in LABEL_NAMES}

    function_ids: dict[tuple[str, str], int] = {}
    location_ids: dict[int, int] = {}  # frame id (or -1 for an empty stack) -> location id

    def location(frame_id: int) -> int:
        lid = location_ids.get(frame_id)
        if lid is None:
            frame = profile.frames[frame_id] if frame_id >= 0 else EMPTY_STACK
            fid = function_ids.get((frame.function, frame.file))
            if fid is None:
                out.functions.append(
                    (out.string(frame.function), out.string(frame.file), frame.line)
                )
                fid = function_ids[(frame.function, frame.file)] = len(out.functions)
            out.locations.append((fid, frame.line))
            lid = location_ids[frame_id] = len(out.locations)
        return lid

    sums: dict[tuple[int, tuple[tuple[int, int], ...]], list[int]] = defaultdict(lambda: [0, 0])
    for tl in profile.threads:
        pid, tid = tl.thread.pid, tl.thread.tid
        role = ROLE_VALUES[analysis.thread_roles.get((pid, tid), "other")]
        base = [
            (names["thread_role"], out.string(role)),
            (names["worker"], out.string(labels.workers.get(pid, str(pid)))),
        ]
        loop = labels.loop_runs.get((pid, tid))
        for i, (_start, dur, sid, n) in enumerate(tl.runs()):
            if sid == NO_STACK or n <= 0:
                continue
            tags = list(base)
            route = labels.stack_routes.get(sid)
            if route is not None:
                tags.append((names["http_route"], out.string(route)))
            if loop is not None:
                state, kind = loop.states[i], loop.kinds[i]
                if state is not None:
                    tags.append((names["loop_state"], out.string(state)))
                if kind is not None:
                    tags.append((names["block_kind"], out.string(kind)))
            entry = sums[(sid, tuple(sorted(tags)))]
            entry[0] += n
            entry[1] += round(dur * 1e9)

    for (sid, sample_tags), (n, wall_ns) in sorted(sums.items()):
        frame_ids = profile.stacks[sid]
        locs = tuple(location(f) for f in reversed(frame_ids)) if frame_ids else (location(-1),)
        out.samples.append((locs, (n, wall_ns), sample_tags))

    out.time_nanos = round(profile.sampling.started_at * 1e9)
    out.duration_nanos = round(profile.sampling.duration_s * 1e9)
    out.period_nanos = round(labels.period_s * 1e9)
    out.binary = out.string("python")
    period_ms = labels.period_s * 1000
    out.comments = [out.string(f"asgiprof {__version__}, py-spy, period {period_ms:.3f} ms")]
    return out


# --- protobuf wire format (https://protobuf.dev/programming-guides/encoding/) ---------


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64: two's complement in ten bytes
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value) if value else b""


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _packed(number: int, values: tuple[int, ...]) -> bytes:
    return _bytes_field(number, b"".join(_varint(v) for v in values)) if values else b""


def encode(p: PprofProfile) -> bytes:
    """profile.proto's `Profile` message (field numbers from google/pprof's proto)."""
    parts: list[bytes] = []
    for type_id, unit_id in p.sample_types:  # 1: sample_type (ValueType: 1 type, 2 unit)
        parts.append(_bytes_field(1, _int_field(1, type_id) + _int_field(2, unit_id)))
    for locs, values, tags in p.samples:  # 2: Sample (1 location_id, 2 value, 3 label)
        body = _packed(1, locs) + _packed(2, values)
        for key, value in tags:  # Label: 1 key, 2 str
            body += _bytes_field(3, _int_field(1, key) + _int_field(2, value))
        parts.append(_bytes_field(2, body))
    # 3: one Mapping for the interpreter, symbolized already (7 has_functions, 8
    # has_filenames, 9 has_line_numbers), so readers do not look for a binary to symbolize.
    mapping = _int_field(1, 1) + _int_field(5, p.binary)
    parts.append(_bytes_field(3, mapping + _int_field(7, 1) + _int_field(8, 1) + _int_field(9, 1)))
    for i, (function_id, line) in enumerate(p.locations, 1):
        # 4: Location (1 id, 2 mapping_id, 4 line); Line: 1 function_id, 2 line
        line_msg = _int_field(1, function_id) + _int_field(2, line)
        body = _int_field(1, i) + _int_field(2, 1) + _bytes_field(4, line_msg)
        parts.append(_bytes_field(4, body))
    for i, (name, file, start) in enumerate(p.functions, 1):
        # 5: Function (1 id, 2 name, 3 system_name, 4 filename, 5 start_line)
        body = _int_field(1, i) + _int_field(2, name) + _int_field(3, name) + _int_field(4, file)
        parts.append(_bytes_field(5, body + _int_field(5, start)))
    # 6: string_table, "" first
    parts.extend(_bytes_field(6, text.encode("utf-8", "replace")) for text in p.strings)
    parts.append(_int_field(9, p.time_nanos))
    parts.append(_int_field(10, p.duration_nanos))
    period_type = p.sample_types[-1]  # 11: period_type, 12: period
    parts.append(_bytes_field(11, _int_field(1, period_type[0]) + _int_field(2, period_type[1])))
    parts.append(_int_field(12, p.period_nanos))
    parts.append(_packed(13, tuple(p.comments)))
    parts.append(_int_field(14, p.sample_types[-1][0]))  # default_sample_type: wall
    return b"".join(parts)


class PprofReporter:
    name = "pprof"
    filename = "profile.pb.gz"

    def render(self, analysis: Analysis, out_dir: Path) -> Path:
        path = out_dir / self.filename
        # mtime=0: the same analysis gives the same bytes
        path.write_bytes(gzip.compress(encode(pprof_profile(analysis)), mtime=0))
        return path


REPORTER = PprofReporter()
