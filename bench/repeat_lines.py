"""At a low rate, how often do two consecutive loop samples hold the same line of the app?

A lead for an adaptive rate (issue 16): sample slowly, and speed up only when the loop
shows a line held across consecutive samples. That only saves anything if a healthy busy
app seldom shows such repeats by chance at the slow rate. This reads profiles recorded at
100 Hz (e.g. `python bench/busy_accuracy.py --only clean-attach,planted-attach --keep DIR`),
keeps every k-th sample of the server's main thread (its event loop) to mimic 100/k Hz, and
counts consecutive kept samples whose innermost frame of the app (a file under --app-path,
not in site-packages) is the same line.

    python bench/repeat_lines.py DIR/r1/*/out
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import table  # noqa: E402

from asgiprof import store  # noqa: E402
from asgiprof.model import NO_STACK, Profile  # noqa: E402

Line = tuple[str, int] | None


def loop_lines(profile: Profile, app_path: str) -> list[Line]:
    """The app line innermost in each sample of the main thread (None: no app frame)."""
    main = [t for t in profile.threads if t.thread.tid == t.thread.pid and t.total_samples]
    loop = max(main, key=lambda t: t.total_samples)
    lines: list[Line] = []
    for _start, _dur, sid, n in loop.runs():
        frames = [] if sid == NO_STACK else [profile.frames[f] for f in profile.stacks[sid]]
        app = [f for f in frames if app_path in f.file and "site-packages" not in f.file]
        lines += [(app[-1].file, app[-1].line) if app else None] * n
    return lines


def repeats(lines: list[Line], every: int) -> tuple[int, int]:
    """(pairs of consecutive kept samples on the same app line, samples kept)."""
    kept = lines[::every]
    same = sum(1 for a, b in zip(kept, kept[1:], strict=False) if a is not None and a == b)
    return same, len(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outs", nargs="+", type=Path, help="asgiprof output folders (100 Hz)")
    parser.add_argument("--app-path", default="tests/busy/", help="what marks the app's files")
    args = parser.parse_args()
    rows = []
    for out in args.outs:
        lines = loop_lines(store.load_profile(out), args.app_path)
        cells: list[object] = [out.parent.name if out.name == "out" else out.name]
        for every in (1, 5, 10):
            same, kept = repeats(lines, every)
            cells.append(f"{same}/{kept} ({same / kept:.1%})" if kept else "-")
        rows.append(cells)
    print(table(["profile", "100 Hz", "20 Hz (every 5th)", "10 Hz (every 10th)"], rows))


if __name__ == "__main__":
    main()
