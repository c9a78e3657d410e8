"""--scout-rate's decisions while sampling: the full rate once a chunk shows the event loop
holding a line across samples (`analyze.scout.held_lines`), the scout rate again after
QUIET_CHUNKS chunks without. The sampler asks after each chunk (`Sampler.rate_policy`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from asgiprof import store
from asgiprof.analyze.scout import Line, held_lines
from asgiprof.chunk_probe import read_chunk
from asgiprof.errors import CorruptProfileError

# The share of a chunk's scout intervals held on a line from which the loop counts as
# holding one: 3 of the 40 intervals of a 2 s chunk at 20 Hz. Measured (bench/README.md,
# "--scout-rate"): the saturated clean busy app 0-5.5% per chunk (12% once, its warm-up),
# the planted one 12-50%. A chance pair needs two samples on one line, so healthy loops
# stay far below at any scout rate; slower scouts see fewer blocks held (at 10 Hz only
# those over ~0.1 s).
HELD_SHARE = 0.075
# Chunks in a row with no line held before the sampler slows down to scout again.
QUIET_CHUNKS = 3


@dataclass(slots=True)
class ScoutPolicy:
    """--scout-rate's decisions, one per chunk (`Sampler.rate_policy`): the full rate once
    a chunk shows the loop holding a line, the scout rate after QUIET_CHUNKS without."""

    out: Path
    pid: int
    full_hz: int
    scout_hz: int
    fast: bool = False
    quiet: int = 0
    problems: int = 0  # chunks that could not be read (they change nothing)
    routes: store.RoutesSoFar = field(init=False)

    def __post_init__(self) -> None:
        self.routes = store.RoutesSoFar(self.out)

    def __call__(self, index: int) -> tuple[int, str] | None:
        try:
            meta = store.read_chunk_meta(store.chunk_meta_path(self.out, index))
            data = store.chunk_path(self.out, index).read_bytes()
            rate = meta.rate_hz or self.full_hz
            chunk = read_chunk(data, self.pid, rate, self.routes.table())
            runs = [(t.stacks, t.counts) for t in chunk.threads]
            held = held_lines(chunk.profile, runs, rate, self.scout_hz)
        except (OSError, CorruptProfileError):
            self.problems += 1
            return None
        if held.share >= HELD_SHARE:
            self.quiet = 0
            if self.fast:
                return None
            self.fast = True
            where = _where(held.line)
            return self.full_hz, (
                f"the loop held {where} across samples {1000 / self.scout_hz:.0f} ms apart "
                f"({held.share:.0%} of them)"
            )
        if not self.fast:
            return None
        self.quiet += 1
        if self.quiet < QUIET_CHUNKS:
            return None
        self.fast = False
        self.quiet = 0
        return self.scout_hz, f"no line held for {QUIET_CHUNKS} chunks"


def _where(line: Line | None) -> str:
    return "a line" if line is None else f"{Path(line[0]).name}:{line[1]}"
