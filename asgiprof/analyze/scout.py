"""Whether the event loop holds a line still, as a slow sampler would see it: the signal
of `--scout-rate` (sample slowly while the loop only runs short steps, at the full rate
while it shows a line held across consecutive samples; asgiprof/scout.py decides).

A blocked call holds the loop still: the same innermost frame, under the same line of the
user's code, across consecutive samples. A healthy busy loop runs many short callbacks, so
two samples a scout interval apart rarely hold both (the saturated clean busy app: 0-5.5%
of the scout intervals of a 2 s chunk, at 20 Hz and at 100 Hz taken 5 apart; the planted
one 12-50%; bench/README.md "--scout-rate"). The user's line alone is not enough: under an
`await` in a middleware (`await call_next(request)`) the library runs many different short
steps, and that line read as held in 12% of the clean app's intervals. Stacks with no
frame of the user's code do not count: on a tiny saturated app (bench/apps/ref_app.py)
FastAPI's and asyncio's few hot lines read as held in 9-12% of the intervals by chance,
and the culprits the scout is there for are the user's lines. The signal is
measured at the scout's spacing whatever rate the chunk was taken at, so one rule decides
when to speed up (a scout chunk) and when to slow down again (a full-rate chunk): at 100 Hz
with a 20 Hz scout every pair of samples 5 apart is counted (the five 20 Hz phases
together), over all such pairs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from asgiprof.analyze.frames import app_roots, is_user
from asgiprof.analyze.loop import STATE_BUSY, LoopClassifier
from asgiprof.analyze.torn import is_torn, loop_roots
from asgiprof.model import Profile

Line = tuple[str, int]
# What two samples must share to hold a line: the innermost frame's line, and the innermost
# line of the user's code.
HeldKey = tuple[Line, Line]


@dataclass(frozen=True, slots=True)
class Held:
    """The share of the chunk's scout intervals over which the loop held a line (of the
    pairs of samples one interval apart, those holding it; the busiest loop thread's, for
    a server with workers), and the line most held."""

    share: float
    line: Line | None  # the user's line


# One thread's samples in order, run-length encoded: (stack ids, counts).
ThreadRuns = tuple[Sequence[int], Sequence[int]]


def held_lines(
    profile: Profile, threads: Sequence[ThreadRuns], rate_hz: float, scout_hz: float
) -> Held:
    """How often the loop held a line across one scout interval in one chunk (`profile`:
    the chunk's frame table, `threads`: its threads' samples)."""
    stacks, frames = profile.stacks, profile.frames
    classifier = LoopClassifier(profile)
    roots_of_app = app_roots(profile.routes.routes)
    step = max(1, round(rate_hz / scout_hz))
    best = Held(0.0, None)
    for sids, counts in threads:
        if not classifier.is_loop_thread(set(sids)):
            continue
        roots = loop_roots(sids, stacks, classifier)
        keys: dict[int, HeldKey | None] = {}
        for sid in set(sids):
            if classifier.classify(sid).state != STATE_BUSY or is_torn(
                sid, stacks, roots, classifier
            ):
                keys[sid] = None
                continue
            leaf = frames[stacks[sid][-1]]
            user = [frames[f] for f in stacks[sid] if is_user(frames[f], roots_of_app)]
            keys[sid] = ((leaf.file, leaf.line), (user[-1].file, user[-1].line)) if user else None
        seq = [keys[sid] for sid, n in zip(sids, counts, strict=True) for _ in range(n)]
        same: Counter[HeldKey] = Counter(
            a for a, b in zip(seq, seq[step:], strict=False) if a is not None and a == b
        )
        pairs = len(seq) - step  # samples one scout interval apart, over all phases
        share = sum(same.values()) / pairs if pairs > 0 else 0.0
        if share > best.share:
            best = Held(share, same.most_common(1)[0][0][1])
    return best
