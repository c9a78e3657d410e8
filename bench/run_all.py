"""Run every benchmark, one after the other, and print their markdown tables.

    python bench/run_all.py             # quick mode of each (~10 min in all)
    python bench/run_all.py --full      # full mode of each (~50 min)
    python bench/run_all.py --only overhead,accuracy [--out results.md]

Each script also runs on its own (see bench/README.md); this only chains them, each in its
own process with a time limit, and keeps going when one fails.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

# name -> (quick args, full args, time limit in seconds for quick, full)
SCRIPTS: dict[str, tuple[list[str], list[str], tuple[int, int]]] = {
    "analysis_speed": (["--quick"], [], (600, 2400)),
    "overhead": (["--quick"], ["--polling"], (600, 2400)),
    "accuracy": (["--quick"], [], (600, 3600)),
    "busy_accuracy": (["--only", "asyncio", "--load-s", "8"], [], (600, 1200)),
    "report_bench": (["--runs", "1"], ["--runs", "3"], (300, 900)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full mode of every script")
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(SCRIPTS)}")
    parser.add_argument("--out", type=Path, help="also write everything printed to this file")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",")] if args.only else list(SCRIPTS)
    unknown = [n for n in names if n not in SCRIPTS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    sink = args.out.open("w") if args.out else None
    failed = []
    try:
        for name in names:
            quick, full, limits = SCRIPTS[name]
            cmd = [sys.executable, str(BENCH / f"{name}.py"), *(full if args.full else quick)]
            limit = limits[1] if args.full else limits[0]
            print(f"\n<!-- {' '.join(cmd[1:])} -->", flush=True)
            start = time.monotonic()
            try:
                proc = subprocess.run(
                    cmd, stdout=subprocess.PIPE, text=True, timeout=limit, check=False
                )
                output, rc = proc.stdout, proc.returncode
            except subprocess.TimeoutExpired as exc:  # run() kills the child by its PID
                output = exc.stdout if isinstance(exc.stdout, str) else ""
                rc = -1
                output += f"\n{name}: timed out after {limit} s\n"
            took = time.monotonic() - start
            if name == "report_bench":
                output = "## HTML report (bench/report_bench.py)\n\n```\n" + output + "```\n"
            output += f"\n({name}: {took:.0f} s, exit status {rc})\n"
            print(output, flush=True)
            if sink:
                sink.write(output + "\n")
                sink.flush()
            if rc != 0:
                failed.append(name)
    finally:
        if sink:
            sink.close()
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
