"""Two real readers of pprof files, for tests: Go's own `go tool pprof` (Debian golang-go,
installed by scripts/setup.sh) and Google's `protobuf` runtime with profile.proto's messages
declared field by field (numbers and types from google/pprof's proto/profile.proto)."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

GO = shutil.which("go")
needs_go = pytest.mark.skipif(
    GO is None,
    reason="go is not installed, so `go tool pprof` cannot read the profile: install "
    "Debian's golang-go (scripts/setup.sh does, or: apt-get install golang-go)",
)


def go_pprof(path: Path, *args: str, timeout_s: float = 60.0) -> str:
    """`go tool pprof ARGS PATH`'s standard output (its errors fail the test)."""
    assert GO is not None
    done = subprocess.run(
        [GO, "tool", "pprof", *args, str(path)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def go_regexp(text: str) -> str:
    """An RE2 pattern matching exactly `text` (Python's re.escape escapes spaces, which RE2
    refuses)."""
    return "^" + re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", text) + "$"


def go_total_ms(path: Path, *args: str) -> float:
    """The total `go tool pprof -top` accounts for (all nodes shown), in ms (or count)."""
    out = go_pprof(path, "-top", "-unit=ms", "-nodefraction=0", *args)
    match = re.search(r"Showing nodes accounting for ([\d.]+)(ms)?,", out)
    assert match is not None, out
    return float(match.group(1))


def go_tags_ms(path: Path, key: str, *args: str) -> dict[str, float]:
    """`go tool pprof -tags`: milliseconds per value of label `key`."""
    out = go_pprof(path, "-tags", "-unit=ms", *args)
    values: dict[str, float] = {}
    section = False
    for line in out.splitlines():
        if re.match(r"^\s*\w+: Total", line):
            section = line.strip().startswith(f"{key}:")
            continue
        match = re.match(r"^\s*([\d.]+)ms \(\s*[\d.]+%\): (.*)$", line)
        if section and match:
            values[match.group(2)] = float(match.group(1))
    return values


_PROTO: list[tuple[str, list[tuple[str, int, str, bool]]]] = [
    # message, [(field, number, type, repeated)]; types: int64, uint64, bool, string, or a
    # message name. proto3: repeated scalars are packed.
    ("ValueType", [("type", 1, "int64", False), ("unit", 2, "int64", False)]),
    (
        "Sample",
        [
            ("location_id", 1, "uint64", True),
            ("value", 2, "int64", True),
            ("label", 3, "Label", True),
        ],
    ),
    (
        "Label",
        [
            ("key", 1, "int64", False),
            ("str", 2, "int64", False),
            ("num", 3, "int64", False),
            ("num_unit", 4, "int64", False),
        ],
    ),
    (
        "Mapping",
        [
            ("id", 1, "uint64", False),
            ("memory_start", 2, "uint64", False),
            ("memory_limit", 3, "uint64", False),
            ("file_offset", 4, "uint64", False),
            ("filename", 5, "int64", False),
            ("build_id", 6, "int64", False),
            ("has_functions", 7, "bool", False),
            ("has_filenames", 8, "bool", False),
            ("has_line_numbers", 9, "bool", False),
            ("has_inline_frames", 10, "bool", False),
        ],
    ),
    (
        "Location",
        [
            ("id", 1, "uint64", False),
            ("mapping_id", 2, "uint64", False),
            ("address", 3, "uint64", False),
            ("line", 4, "Line", True),
            ("is_folded", 5, "bool", False),
        ],
    ),
    (
        "Line",
        [("function_id", 1, "uint64", False), ("line", 2, "int64", False)],
    ),
    (
        "Function",
        [
            ("id", 1, "uint64", False),
            ("name", 2, "int64", False),
            ("system_name", 3, "int64", False),
            ("filename", 4, "int64", False),
            ("start_line", 5, "int64", False),
        ],
    ),
    (
        "Profile",
        [
            ("sample_type", 1, "ValueType", True),
            ("sample", 2, "Sample", True),
            ("mapping", 3, "Mapping", True),
            ("location", 4, "Location", True),
            ("function", 5, "Function", True),
            ("string_table", 6, "string", True),
            ("drop_frames", 7, "int64", False),
            ("keep_frames", 8, "int64", False),
            ("time_nanos", 9, "int64", False),
            ("duration_nanos", 10, "int64", False),
            ("period_type", 11, "ValueType", False),
            ("period", 12, "int64", False),
            ("comment", 13, "int64", True),
            ("default_sample_type", 14, "int64", False),
        ],
    ),
]


def _profile_class() -> Any:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="asgiprof_test_profile.proto", package="perftools.profiles", syntax="proto3"
    )
    f = descriptor_pb2.FieldDescriptorProto
    scalar = {"int64": f.TYPE_INT64, "uint64": f.TYPE_UINT64, "bool": f.TYPE_BOOL}
    scalar["string"] = f.TYPE_STRING
    for name, fields in _PROTO:
        msg = fdp.message_type.add(name=name)
        for fname, number, ftype, repeated in fields:
            fld = msg.field.add(name=fname, number=number)
            fld.label = f.LABEL_REPEATED if repeated else f.LABEL_OPTIONAL
            if ftype in scalar:
                fld.type = scalar[ftype]
            else:
                fld.type = f.TYPE_MESSAGE
                fld.type_name = f".perftools.profiles.{ftype}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("perftools.profiles.Profile"))


@dataclass(frozen=True, slots=True)
class DecodedSample:
    values: tuple[int, ...]
    labels: dict[str, str]
    frames: tuple[tuple[str, str, int], ...]  # (function, file, line), leaf first


@dataclass(frozen=True, slots=True)
class Decoded:
    sample_types: tuple[tuple[str, str], ...]
    period_type: tuple[str, str]
    period: int
    time_nanos: int
    duration_nanos: int
    samples: tuple[DecodedSample, ...]

    def total(self, index: int, **labels: str) -> int:
        return sum(
            s.values[index]
            for s in self.samples
            if all(s.labels.get(k) == v for k, v in labels.items())
        )

    def by_label(self, index: int, key: str, **labels: str) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for s in self.samples:
            if key in s.labels and all(s.labels.get(k) == v for k, v in labels.items()):
                out[s.labels[key]] += s.values[index]
        return dict(out)


def decode_pprof(data: bytes) -> Decoded:
    """Parse a (gzipped or not) pprof profile with the protobuf runtime."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    msg = _profile_class()()
    msg.ParseFromString(data)
    st = list(msg.string_table)
    assert st and st[0] == "", "string_table[0] must be empty"
    functions = {fn.id: (st[fn.name], st[fn.filename]) for fn in msg.function}
    locations = {}
    for loc in msg.location:
        (line,) = loc.line
        name, file = functions[line.function_id]
        locations[loc.id] = (name, file, line.line)
    samples = []
    for s in msg.sample:
        labels: dict[str, str] = {}
        for lab in s.label:
            assert st[lab.key] not in labels, "a label key twice on one sample"
            labels[st[lab.key]] = st[lab.str]
        frames = tuple(locations[i] for i in s.location_id)
        samples.append(DecodedSample(tuple(s.value), labels, frames))
    return Decoded(
        sample_types=tuple((st[t.type], st[t.unit]) for t in msg.sample_type),
        period_type=(st[msg.period_type.type], st[msg.period_type.unit]),
        period=msg.period,
        time_nanos=msg.time_nanos,
        duration_nanos=msg.duration_nanos,
        samples=tuple(samples),
    )
