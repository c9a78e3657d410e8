"""What a sample costs the target, and how well asgiprof measures it (issue 16).

Blocking py-spy stops every thread of the target, reads all their stacks and lets them go:
the pause per sample grows with the frames of every thread. tests/pause_app.py measures
how long it was held stopped (a thread that never sleeps: the time it neither ran nor
waited for a CPU, from its own /proc schedstat), with PAUSE_APP_THREADS idle pool threads
5 calls deep beside it. For each thread count and rate, `asgiprof attach --max-pause 0`
(no limit, so the rate stays put) samples it; each chunk's pause as asgiprof measured it
(py-spy's sampling thread's CPU time) is set beside the app's own figure for that chunk's
span. Then the same app with `--max-pause LIMIT` (default 5): where the rate settled and
what the app measured.

    python bench/pause_cost.py                    # ~3 min
    python bench/pause_cost.py --threads 0,20 --rates 100 --seconds 6
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import subprocess  # noqa: E402

from _common import PYTHON, REPO, Server, header, stop_pid, table  # noqa: E402

sys.path.insert(0, str(REPO))  # run as a script: make `tests` importable
from tests.pause_probe import stopped  # noqa: E402


def _profile(pid: int, out: Path, seconds: float, *flags: str) -> None:
    cmd = [PYTHON, "-m", "asgiprof", "attach", str(pid), "--duration", str(seconds)]
    proc = subprocess.Popen(
        [*cmd, "--out", str(out), "--no-live", *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        proc.wait(timeout=seconds + 90)
    finally:
        if proc.poll() is None:
            stop_pid(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"asgiprof attach exited {proc.returncode}")


def _rows(url: str, out: Path) -> list[tuple[dict[str, float], float]]:
    t0 = json.loads((out / "meta.json").read_text())["sampling"]["started_at"]
    rows = []
    for path in sorted((out / "raw").glob("chunk-*[0-9].json")):
        c = json.loads(path.read_text())
        if c["end_s"] - c["start_s"] < 0.3 or c.get("pause_s") is None:
            continue
        _pid, share = stopped(url, t0 + c["start_s"], t0 + c["end_s"])
        if share >= 0:
            rows.append((c, share))
    return rows


def _pooled(rows: list[tuple[dict[str, float], float]]) -> tuple[float, float, float, float]:
    """(app share, asgiprof share, span s, instants) over the chunks."""
    span = sum(c["end_s"] - c["start_s"] for c, _ in rows)
    app = sum(share * (c["end_s"] - c["start_s"]) for c, share in rows) / span
    est = sum(c["pause_s"] for c, _ in rows) / span
    return app, est, span, sum(c["intervals"] for c, _ in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="0,10,20,40", help="idle pool threads to try")
    parser.add_argument("--rates", default="100,25", help="rates (Hz) to try")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--limit", default="5", help="--max-pause of the second part")
    args = parser.parse_args()
    header("What a sample costs the target: asgiprof's measure against the app's own")
    measured, limited = [], []
    with tempfile.TemporaryDirectory(prefix="asgiprof-pause-") as tmp:
        for threads in (int(t) for t in args.threads.split(",")):
            server = Server(
                "pause_app",
                Path(tmp) / f"server-{threads}.log",
                env={"PAUSE_APP_THREADS": str(threads)},
                ready_path="/",
                cwd=REPO / "tests",
            )
            with server:
                time.sleep(1.0)
                for rate in (int(r) for r in args.rates.split(",")):
                    out = Path(tmp) / f"t{threads}-r{rate}"
                    _profile(server.pid, out, args.seconds, "--rate", str(rate), "--max-pause", "0")
                    time.sleep(0.1)
                    app, est, span, instants = _pooled(_rows(server.url, out))
                    per_sample_ms = app * span / instants * 1000 if instants else float("nan")
                    measured.append(
                        [threads, rate, f"{app:.2%}", f"{est:.2%}", f"{est / app:.2f}",
                         f"{per_sample_ms:.2f}"]
                    )  # fmt: skip
                    print("  ", *measured[-1], file=sys.stderr)
                out = Path(tmp) / f"t{threads}-limited"
                _profile(server.pid, out, args.seconds, "--max-pause", args.limit)
                time.sleep(0.1)
                rows = _rows(server.url, out)
                summary = json.loads((out / "summary.json").read_text())["sampling"]
                rates = [100, *(c["to_hz"] for c in summary["rate_changes"])]
                settled = [(c, s) for c, s in rows if c["rate_hz"] == rates[-1]]
                app, est, _, _ = _pooled(rows)
                app_settled = _pooled(settled)[0] if settled else float("nan")
                limited.append(
                    [threads, " -> ".join(map(str, rates)), f"{app:.2%}", f"{est:.2%}",
                     f"{app_settled:.2%}"]
                )  # fmt: skip
                print("  ", *limited[-1], file=sys.stderr)
    print(
        table(
            [
                "idle threads",
                "rate Hz",
                "app: stopped",
                "asgiprof: paused",
                "ratio",
                "ms stopped per sample (app)",
            ],
            measured,
        )  # fmt: skip
    )
    print()
    print(
        table(
            [
                "idle threads",
                f"--max-pause {args.limit}: rates",
                "app: stopped (run)",
                "asgiprof: paused (run)",
                "app: stopped at the last rate",
            ],
            limited,
        )  # fmt: skip
    )


if __name__ == "__main__":
    main()
