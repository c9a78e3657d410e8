"""How long one py-spy sample holds the target stopped, by stack depth, idle threads and
py-spy's flags (issue 16: why ">= 0.99 of throughput at 100 Hz, blocking" cannot hold).

The target is a Python process that spins in a call `depth` frames deep, reading the
clock in a tight loop and noting every gap over 100 us (a sample stopping it), with
`threads` idle threads beside it (each blocked in queue.get). Target pinned to CPU 0,
py-spy to CPU 1 (when there are two), `py-spy record` for 4 s. Per variant: the samples'
stops (median gap, their total over the window), and py-spy's CPU time (its busiest
thread: the one that samples).

    python bench/pyspy_pause.py                   # ~1 min
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PYTHON, header, pinned, stop_pid, table  # noqa: E402

SPINNER = r"""
import json, queue, sys, threading, time
depth, threads, secs, out = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
for _ in range(threads):
    threading.Thread(target=queue.Queue().get, daemon=True).start()
def spin(n):
    if n:
        return spin(n - 1)
    gaps = []
    pc = time.perf_counter
    start = last = pc()
    while last - start < secs:
        t = pc()
        if t - last > 100e-6:
            gaps.append((t - start, t - last))
        last = t
    json.dump(gaps, open(out, "w"))
time.sleep(0.5)
spin(depth)
"""
# (name, stack depth, idle threads, extra py-spy flags)
VARIANTS = [
    ("5 frames", 5, 0, ()),
    ("40 frames", 40, 0, ()),
    ("100 frames", 100, 0, ()),
    ("40 frames, 10 idle threads", 40, 10, ()),
    ("40 frames, 40 idle threads", 40, 40, ()),
    ("40 frames, --nolineno", 40, 0, ("--nolineno",)),
    ("40 frames, --gil", 40, 0, ("--gil",)),
    ("40 frames, --nonblocking", 40, 0, ("--nonblocking",)),
]
SECONDS = 6.0


def _busiest_cpu_s(pid: int) -> float:
    busiest = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                busiest = max(busiest, int(f.read().split()[0]))
        except (OSError, ValueError, IndexError):
            continue
    return busiest / 1e9


def run(
    name: str, depth: int, threads: int, flags: tuple[str, ...], rate: int, tmp: Path
) -> list[str]:
    pyspy = shutil.which("py-spy", path=str(Path(PYTHON).parent)) or "py-spy"
    two = (os.cpu_count() or 1) >= 2
    gaps_file = tmp / "gaps.json"
    target = subprocess.Popen(
        [PYTHON, "-c", SPINNER, str(depth), str(threads), str(SECONDS), str(gaps_file)],
        preexec_fn=pinned({0}) if two else None,
        stdin=subprocess.DEVNULL,
    )
    time.sleep(0.7)  # its threads started, spinning
    cmd = [pyspy, "record", "--pid", str(target.pid), "--rate", str(rate), "--duration", "4"]
    cmd += ["--idle", "--threads", "--format", "speedscope", "-o", str(tmp / "out.json")]
    sampler = subprocess.Popen(
        [*cmd, *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        preexec_fn=pinned({1}) if two else None,
    )
    try:
        time.sleep(1.0)  # py-spy attached and sampling
        cpu0, t0 = _busiest_cpu_s(sampler.pid), time.monotonic()
        time.sleep(2.0)
        cpu1, t1 = _busiest_cpu_s(sampler.pid), time.monotonic()
        target.wait(timeout=SECONDS + 30)
        sampler.wait(timeout=30)
    finally:
        stop_pid(sampler)
        stop_pid(target)
    gaps = json.loads(gaps_file.read_text())
    # The same 2 s window in the spinner's clock: it started spinning 0.5 s after launch.
    lo = 1.0 + 0.7 - 0.5
    stops = [d for t, d in gaps if lo <= t <= lo + 2.0]
    return [
        name,
        str(rate),
        f"{statistics.median(stops) * 1e6:.0f}" if stops else "-",
        f"{sum(stops) / 2.0:.1%}",
        f"{(cpu1 - cpu0) / (t1 - t0):.1%}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=100)
    args = parser.parse_args()
    header("What one py-spy sample holds the target stopped")
    rows = []
    with tempfile.TemporaryDirectory(prefix="asgiprof-pyspy-pause-") as tmp:
        for name, depth, threads, flags in VARIANTS:
            rows.append(run(name, depth, threads, flags, args.rate, Path(tmp)))
            print("  ", *rows[-1], file=sys.stderr)
    print(
        table(
            ["target", "rate Hz", "median stop us", "time stopped", "py-spy sampler CPU"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
