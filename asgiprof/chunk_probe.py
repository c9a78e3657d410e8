"""One py-spy chunk read on its own, while sampling (the live view, --scout-rate): its frame
table as a Profile the analysis' pieces take (`LoopClassifier`, `RouteResolver`), and its
threads' samples in order. The report reads every chunk together through `store`."""

from __future__ import annotations

from dataclasses import dataclass

from asgiprof.model import Frame, Interner, Profile, RouteTable, SamplingInfo, TargetInfo
from asgiprof.store.pyspy import ThreadSamples, parse_chunk


@dataclass(frozen=True, slots=True)
class ChunkProbe:
    profile: Profile
    threads: list[ThreadSamples]


def read_chunk(data: bytes, pid: int, rate_hz: float, routes: RouteTable) -> ChunkProbe:
    """Parse one py-spy chunk (raises CorruptProfileError) into a ChunkProbe."""
    frames: list[Frame] = []
    stacks: list[tuple[int, ...]] = []
    threads = parse_chunk(data, Interner(frames, stacks), default_pid=pid, rate_hz=rate_hz)
    probe = Profile(
        TargetInfo(pids=(pid,), command=(), server="unknown"),
        SamplingInfo(max(1, round(rate_hz)), started_at=0.0, duration_s=0.0, samples=0, errors=0),
        frames=frames,
        stacks=stacks,
        routes=routes,
    )
    return ChunkProbe(probe, threads)
