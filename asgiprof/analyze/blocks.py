"""Lines of one synchronous block: culprits that are neighbouring lines of one function.

`open(...)`, `f.write(...)`, `f.flush()` and `os.fsync(...)` in a row block the loop one
after the other in every request; ranked line by line they read as three or four culprits,
one fix. A culprit whose line lies within `BLOCK_GAP` lines of another culprit of the same
function (and place on the request path) belongs to that block; the block is led by its
highest-ranked line. Every culprit stays in the ranking; reporters show a block as one.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from asgiprof.analyze.result import Culprit

BLOCK_GAP: Final = 3  # lines: `open`/`write`/`flush`/`fsync` with a line or two between


def group_blocks(culprits: list[Culprit]) -> list[Culprit]:
    """`culprits` (ranked) with `block_of` set to the leading culprit's rank for every
    line of a block but its leader."""
    by_function: dict[tuple[str, str, str, str | None], list[Culprit]] = {}
    for c in culprits:
        key = (c.file, c.function, c.context, c.context_name)
        by_function.setdefault(key, []).append(c)
    leader_of: dict[int, int] = {}
    for members in by_function.values():
        if len(members) < 2:
            continue
        members = sorted(members, key=lambda c: c.line)
        run = [members[0]]
        for c in members[1:]:
            if c.line - run[-1].line <= BLOCK_GAP:
                run.append(c)
                continue
            _lead(run, leader_of)
            run = [c]
        _lead(run, leader_of)
    return [replace(c, block_of=leader_of[c.rank]) if c.rank in leader_of else c for c in culprits]


def _lead(run: list[Culprit], leader_of: dict[int, int]) -> None:
    if len(run) < 2:
        return
    leader = min(c.rank for c in run)
    for c in run:
        if c.rank != leader:
            leader_of[c.rank] = leader
