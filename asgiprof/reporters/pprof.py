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
varints and length-delimited fields, under a hundred lines here, while the `protobuf` runtime
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
from asgiprof.model import NO_STACK, Frame, Profile

ROLE_VALUES: Final = {"event-loop": "event_loop", "threadpool": "threadpool", "other": "other"}
LABEL_NAMES: Final = ("http_route", "loop_state", "block_kind", "thread_role", "worker")
EMPTY_STACK: Final = Frame("(no Python frames)", "", 0)


@dataclass(slots=True)
class PprofProfile:
    """profile.proto's content before encoding; ids are 1-based as pprof wants them."""

    strings: list[str] = field(default_factory=lambda: [""])
    sample_types: list[tuple[int, int]] = field(default_factory=list)  # (type, unit) ids
    functions: list[tuple[int, int, int]] = field(default_factory=list)  # name, file, start line
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


# A sample's labels as (key, value) string ids, sorted by key.
Tags = tuple[tuple[int, int], ...]


def pprof_profile(analysis: Analysis) -> PprofProfile:
    out = PprofProfile()
    # Sample types first: their strings are referenced by index below.
    out.sample_types = [
        (out.string("samples"), out.string("count")),
        (out.string("wall"), out.string("nanoseconds")),
    ]
    tags = _LabelTags(out, analysis)
    locations = _Locations(out, analysis.profile)
    for (sid, sample_tags), (count, wall_s) in sorted(_sums(analysis, tags).items()):
        out.samples.append(
            (locations.of_stack(sid), (int(count), round(wall_s * 1e9)), sample_tags)
        )
    _header(out, analysis)
    return out


class _Locations:
    """pprof functions and locations of the profile's frames, made on first use."""

    def __init__(self, out: PprofProfile, profile: Profile) -> None:
        self._out = out
        self._profile = profile
        self._functions: dict[tuple[str, str], int] = {}
        self._locations: dict[int, int] = {}  # frame id (or -1 for an empty stack) -> id
        self._stacks: dict[int, tuple[int, ...]] = {}

    def of_stack(self, sid: int) -> tuple[int, ...]:
        """Location ids of a stack, leaf first."""
        locs = self._stacks.get(sid)
        if locs is None:
            frame_ids = self._profile.stacks[sid]
            locs = tuple(self._location(f) for f in reversed(frame_ids)) or (self._location(-1),)
            self._stacks[sid] = locs
        return locs

    def _location(self, frame_id: int) -> int:
        lid = self._locations.get(frame_id)
        if lid is None:
            out = self._out
            frame = self._profile.frames[frame_id] if frame_id >= 0 else EMPTY_STACK
            fid = self._functions.get((frame.function, frame.file))
            if fid is None:
                # start_line 0: py-spy gives the running line, not where the function starts
                out.functions.append((out.string(frame.function), out.string(frame.file), 0))
                fid = self._functions[(frame.function, frame.file)] = len(out.functions)
            out.locations.append((fid, frame.line))
            lid = self._locations[frame_id] = len(out.locations)
        return lid


class _LabelTags:
    """Each label value's (key, value) tags, interned once.

    Label names are interned in LABEL_NAMES order, so concatenating the label tuples in
    that order keeps every sample's labels sorted by key: no per-run sort."""

    def __init__(self, out: PprofProfile, analysis: Analysis) -> None:
        self._out = out
        self._analysis = analysis
        names = {name: out.string(name) for name in LABEL_NAMES}
        self._names = names
        self.state: dict[str | None, Tags] = {None: ()}
        self.kind: dict[str | None, Tags] = {None: ()}
        for state in ("idle", "busy", "blocked"):
            self.state[state] = ((names["loop_state"], out.string(state)),)
        for kind in ("cpu", "io", "unknown"):
            self.kind[kind] = ((names["block_kind"], out.string(kind)),)
        self.route: dict[int, Tags] = {}
        for sid, route in sorted(analysis.sample_labels.stack_routes.items()):
            self.route[sid] = ((names["http_route"], out.string(route)),)

    def thread(self, pid: int, tid: int) -> Tags:
        """The labels every sample of a thread carries: its role and its worker."""
        role = ROLE_VALUES[self._analysis.thread_roles.get((pid, tid), "other")]
        worker = self._analysis.sample_labels.workers.get(pid, str(pid))
        return (
            (self._names["thread_role"], self._out.string(role)),
            (self._names["worker"], self._out.string(worker)),
        )


def _sums(analysis: Analysis, tags: _LabelTags) -> dict[tuple[int, Tags], list[float]]:
    """(count, wall seconds) per stack and label set, over every run of every thread."""
    sums: dict[tuple[int, Tags], list[float]] = defaultdict(lambda: [0, 0.0])
    for tl in analysis.profile.threads:
        pid, tid = tl.thread.pid, tl.thread.tid
        base = tags.thread(pid, tid)
        loop = analysis.sample_labels.loop_runs.get((pid, tid))
        for i, (sid, n, dur) in enumerate(zip(tl.stack, tl.samples, tl.duration_s, strict=True)):
            if sid == NO_STACK or n <= 0:
                continue
            if loop is not None:
                sample_tags = tags.route.get(loop.route_stacks[i], ())
                sample_tags += tags.state[loop.states[i]] + tags.kind[loop.kinds[i]]
            else:
                sample_tags = tags.route.get(sid, ())
            entry = sums[(sid, sample_tags + base)]
            entry[0] += n
            entry[1] += dur
    return sums


def _header(out: PprofProfile, analysis: Analysis) -> None:
    """Times, the sampling period and the comment naming what wrote the profile."""
    sampling = analysis.profile.sampling
    period_s = analysis.sample_labels.period_s
    out.time_nanos = round(sampling.started_at * 1e9)
    out.duration_nanos = round(sampling.duration_s * 1e9)
    out.period_nanos = round(period_s * 1e9)
    out.binary = out.string("python")
    period_ms = period_s * 1000
    out.comments = [out.string(f"asgiprof {__version__}, py-spy, period {period_ms:.3f} ms")]


# --- protobuf wire format (https://protobuf.dev/programming-guides/encoding/) ---------


def _slow_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64: two's complement in ten bytes
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Location, function and string ids are mostly below 2**14: their bytes, looked up.
_SMALL: Final = [_slow_varint(v) for v in range(1 << 14)]


def _varint(value: int) -> bytes:
    return _SMALL[value] if 0 <= value < 16384 else _slow_varint(value)


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value) if value else b""


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _packed(number: int, values: tuple[int, ...]) -> bytes:
    if not values:
        return b""
    small = _SMALL
    if max(values) < 16384 and min(values) >= 0:
        return _bytes_field(number, b"".join([small[v] for v in values]))
    return _bytes_field(number, b"".join([_varint(v) for v in values]))


def encode(p: PprofProfile) -> bytes:
    """profile.proto's `Profile` message (field numbers from google/pprof's proto)."""
    parts: list[bytes] = []
    for type_id, unit_id in p.sample_types:  # 1: sample_type (ValueType: 1 type, 2 unit)
        parts.append(_bytes_field(1, _int_field(1, type_id) + _int_field(2, unit_id)))
    # Many samples share a stack or a label set: encode each once.
    packed_locs: dict[tuple[int, ...], bytes] = {}
    packed_tags: dict[tuple[tuple[int, int], ...], bytes] = {}
    for locs, values, tags in p.samples:  # 2: Sample (1 location_id, 2 value, 3 label)
        loc_bytes = packed_locs.get(locs)
        if loc_bytes is None:
            loc_bytes = packed_locs[locs] = _packed(1, locs)
        tag_bytes = packed_tags.get(tags)
        if tag_bytes is None:
            # Label: 1 key, 2 str
            tag_bytes = packed_tags[tags] = b"".join(
                _bytes_field(3, _int_field(1, key) + _int_field(2, value)) for key, value in tags
            )
        parts.append(_bytes_field(2, loc_bytes + _packed(2, values) + tag_bytes))
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
        # 5: Function (1 id, 2 name, 4 filename, 5 start_line). No 3 system_name: readers
        # demangle a system name equal to the name (C++), which turns `<module>` into "".
        body = _int_field(1, i) + _int_field(2, name) + _int_field(4, file)
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
        data = gzip.compress(encode(pprof_profile(analysis)), compresslevel=6, mtime=0)
        path.write_bytes(data)
        return path


REPORTER = PprofReporter()
