"""Does py-spy's chrometrace time a thread's runs right? (issue 12)

    python bench/pyspy_times.py --hog 2

bench/apps/cpu_sleep.py alternates 100 ms of pure-Python CPU and a 100 ms sleep and times
both itself; py-spy records it (`--format chrometrace`, asgiprof's flags, 100 Hz, 8 s),
store/pyspy.py parses it, and the time in runs whose innermost frame is `cpu` and the time
in runs at the sleep line are compared with the app's own times, as a ratio (cpu / sleep:
the sampled window need not hold whole phases), beside `--hog N` processes spinning on the
CPU (bounded by `timeout`, stopped by PID). This measures py-spy's clock alone, without
asgiprof's analysis.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from asgiprof.model import Frame, Interner  # noqa: E402
from asgiprof.record.sampler import find_pyspy  # noqa: E402
from asgiprof.store.pyspy import parse_chunk  # noqa: E402

APP = REPO / "bench" / "apps" / "cpu_sleep.py"


def record(work: Path, hogs: int) -> tuple[bytes, list[list[float]]]:
    spinning = [
        subprocess.Popen(["timeout", "60", sys.executable, "-c", "while True: pass"])
        for _ in range(hogs)
    ]
    truth = work / "truth.jsonl"
    try:
        app = subprocess.Popen([sys.executable, str(APP), str(truth), "12"])
        try:
            time.sleep(1.0)
            output = work / "trace.json"
            cmd = [find_pyspy(), "record", "--idle", "--threads", "--subprocesses"]
            cmd += ["--nonblocking", "--format", "chrometrace", "--rate", "100"]
            cmd += ["--duration", "8", "--pid", str(app.pid), "--output", str(output)]
            subprocess.run(cmd, capture_output=True, timeout=40, check=True)
            app.wait(30)
        finally:
            if app.poll() is None:
                app.kill()
                app.wait(10)
    finally:
        for hog in spinning:
            hog.terminate()
            hog.wait(10)
    lines = truth.read_text(encoding="utf-8").splitlines()
    return output.read_bytes(), [json.loads(line) for line in lines]


def run_times(data: bytes) -> tuple[float, float, dict[str, float]]:
    """Seconds in runs at `cpu` and at the sleep line of the app's main thread, and in
    runs at its other lines."""
    frames: list[Frame] = []
    stacks: list[tuple[int, ...]] = []
    threads = parse_chunk(data, Interner(frames, stacks), default_pid=0)
    cpu_s = sleep_s = 0.0
    other: dict[str, float] = {}
    for t in threads:
        for sid, start, end in zip(t.stacks, t.starts or (), t.ends or (), strict=True):
            leaf = frames[stacks[sid][-1]] if stacks[sid] else None
            if leaf is not None and leaf.function == "cpu":
                cpu_s += end - start
            elif leaf is not None and leaf.function == "main" and "sleep" in _line(leaf):
                sleep_s += end - start
            elif leaf is not None and leaf.function == "main":
                key = f"{leaf.line}: {_line(leaf).strip()}"
                other[key] = other.get(key, 0.0) + end - start
    return cpu_s, sleep_s, other


def _line(frame: Frame) -> str:
    lines = APP.read_text(encoding="utf-8").splitlines()
    return lines[frame.line - 1] if 0 < frame.line <= len(lines) else ""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hog", type=int, default=0, help="busy-looping processes beside")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="asgiprof-times-") as tmp:
        data, truth = record(Path(tmp), args.hog)
    cpu_s, sleep_s, other = run_times(data)
    true_cpu = statistics.mean(b - a for a, b, _ in truth)
    true_sleep = statistics.mean(c - b for _, b, c in truth)
    ratio, true_ratio = cpu_s / sleep_s, true_cpu / true_sleep
    print(
        f"hogs {args.hog}: app-timed cpu {true_cpu * 1e3:.1f} ms / sleep "
        f"{true_sleep * 1e3:.1f} ms = {true_ratio:.3f}; chrometrace runs cpu {cpu_s:.2f} s / "
        f"sleep {sleep_s:.2f} s = {ratio:.3f} ({ratio / true_ratio - 1:+.1%}); other lines "
        + ", ".join(
            f"{k} {v * 1e3:.0f} ms" for k, v in sorted(other.items(), key=lambda kv: -kv[1])
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
