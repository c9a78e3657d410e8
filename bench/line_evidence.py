"""What the blocking rule weighed for each line of a profile (issue 12's stickiness test,
`asgiprof/analyze/episodes.py is_blocking`): samples, runs, share of the loop, stays,
excess over chance, share of long runs, and the verdict as a plain call and as an `await`.

    python bench/line_evidence.py OUT [OUT...] [--min-samples 5]

OUT is an output folder of `asgiprof run`/`attach` (e.g. a `--keep` folder's `r1/*/out` of
bench/busy_accuracy.py). For a rule change: the lines near the bar, on clean and on
planted runs, before and after.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _common import table  # noqa: E402

from asgiprof import analyze as analysis  # noqa: E402
from asgiprof.analyze.episodes import LineEvidence, is_blocking  # noqa: E402
from asgiprof.analyze.result import AnalysisParams  # noqa: E402
from asgiprof.store import load_profile  # noqa: E402

HEADERS = [
    "line", "samples", "runs", "share", "p(stay)", "excess", "long runs", "plain", "await",
]  # fmt: skip


def evidence(out: Path) -> dict[tuple[str, int], LineEvidence]:
    """The per-line evidence the analysis of OUT weighed (read off its episode step)."""
    seen: dict[tuple[str, int], LineEvidence] = {}
    find = analysis.find_episodes

    def keep(*args: object, **kwargs: object) -> object:
        result = find(*args, **kwargs)  # type: ignore[arg-type]
        seen.update(result[2])
        return result

    analysis.find_episodes = keep  # type: ignore[assignment]
    try:
        analysis.analyze(load_profile(out))
    finally:
        analysis.find_episodes = find
    return seen


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outs", nargs="+", type=Path)
    parser.add_argument("--min-samples", type=int, default=5)
    args = parser.parse_args(argv)
    params = AnalysisParams()
    for out in args.outs:
        rows = [
            [
                f"{Path(file).name}:{line}",
                ev.samples,
                ev.visits,
                f"{ev.share:.3f}",
                f"{ev.stays / ev.samples:.3f}",
                f"{ev.excess:.3f}",
                f"{ev.long_share:.2f}",
                "blocks" if is_blocking(ev, False, params) else "-",
                "blocks" if is_blocking(ev, True, params) else "-",
            ]
            for (file, line), ev in sorted(evidence(out).items(), key=lambda x: -x[1].samples)
            if ev.samples >= args.min_samples
        ]
        print(f"\n{out}")
        print(table(HEADERS, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
