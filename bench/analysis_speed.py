"""Analysis speed and memory: `asgiprof report OUT` on synthetic profiles of growing size.

    python bench/analysis_speed.py --quick      # ~1-2 min: 1-10 min x 1-64 threads
    python bench/analysis_speed.py              # full: up to 30 min x 64 threads, 5 rounds

For each profile shape (generated once by bench/synth.py into --cache), alternates in one
run, round after round, two fresh subprocesses:

  A  the report path from "sampling stopped" to all outputs written: store.load_profile,
     analyze (with the source cache), every file reporter of asgiprof.reporters.write_all
     and the terminal summary, exactly what `report.render` does;
  B  the floor: read every py-spy chunk and orjson.loads it, nothing else.

and prints time and peak RSS (median over rounds, min..max), A/B, per-stage times and the
cost per million samples (flat when cost grows linearly). Imports happen before the clock
starts (a live session has them loaded). Target: 10 min, 100 Hz, 40 threads in <= 5 s with
peak memory < 500 MB.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PYTHON, fmt, header, least_squares, median, spread, table  # noqa: E402
from synth import Shape, generate  # noqa: E402

OUTPUTS = (
    "summary.json",
    "report.html",
    "profile.speedscope.json",
    "stacks.folded",
    "profile.pb.gz",
    "sources.json",
)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 1e6


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # KiB on Linux


def worker_report(out: Path) -> dict[str, Any]:
    import io

    from rich.console import Console

    from asgiprof import store
    from asgiprof.analyze import analyze
    from asgiprof.analyze.result import AnalysisParams
    from asgiprof.reporters import FILE_REPORTERS, get_reporter
    from asgiprof.reporters.terminal import print_summary
    from asgiprof.store.sources import SourceCache

    reporters = [(name, get_reporter(name)) for name in FILE_REPORTERS]  # imports them
    console = Console(file=io.StringIO(), width=120)
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
    base = _rss_mb()
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    profile = store.load_profile(out)
    t1 = time.perf_counter()
    stages["load"] = t1 - t0
    sources = SourceCache.load(out)
    analysis = analyze(profile, AnalysisParams(), sources.read_line)
    sources.save(out)
    t2 = time.perf_counter()
    stages["analyze"] = t2 - t1
    for name, reporter in reporters:
        t = time.perf_counter()
        reporter.render(analysis, out)
        stages[name] = time.perf_counter() - t
    t = time.perf_counter()
    print_summary(analysis, console)
    stages["terminal"] = time.perf_counter() - t
    total = time.perf_counter() - t0
    runs = sum(len(tl) for tl in profile.threads)
    return {
        "total_s": total,
        "stages": stages,
        "peak_mb": _peak_mb(),
        "base_mb": base,
        "runs": runs,
        "stacks": len(profile.stacks),
        "samples": profile.sampling.samples,
    }


def worker_floor(out: Path) -> dict[str, Any]:
    import orjson

    base = _rss_mb()
    t0 = time.perf_counter()
    n = 0
    for path in sorted((out / "raw").glob("chunk-*.speedscope.json")):
        doc = orjson.loads(path.read_bytes())
        n += len(doc["profiles"])
        del doc
    return {"total_s": time.perf_counter() - t0, "peak_mb": _peak_mb(), "base_mb": base}


def run_worker(kind: str, out: Path, timeout_s: float) -> dict[str, Any]:
    proc = subprocess.run(
        [PYTHON, __file__, "--worker", kind, str(out)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker failed on {out}:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def shape_name(s: Shape) -> str:
    return f"{s.minutes:g}min-{s.threads}t-{s.rate_hz}hz{'-busy' if s.busy else ''}"


def ensure(cache: Path, shape: Shape) -> tuple[Path, dict[str, Any]]:
    """Generate the profile unless the cache already holds a complete one."""
    out = cache / shape_name(shape)
    done = out / "synth.json"
    if done.exists():
        return out, json.loads(done.read_text())
    if out.exists():
        shutil.rmtree(out)
    t = time.perf_counter()
    info: dict[str, Any] = dict(generate(out, shape))
    info["generate_s"] = time.perf_counter() - t
    info["shape"] = asdict(shape)
    done.write_text(json.dumps(info))
    return out, info


def shapes(quick: bool) -> list[Shape]:
    if quick:
        grid = [(1, 40), (5, 40), (10, 40), (10, 1), (10, 8), (10, 64)]
        busy = [(10, 40)]
    else:
        grid = [(1, 40), (2, 40), (5, 40), (10, 40), (20, 40), (30, 40)]
        grid += [(10, 1), (10, 8), (10, 16), (10, 64), (30, 64)]
        busy = [(1, 40), (5, 40), (10, 40), (30, 40)]
    out = [Shape(m, t) for m, t in grid]
    out += [Shape(m, t, busy=True) for m, t in busy]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid, 3 rounds (~1-2 min)")
    parser.add_argument("--rounds", type=int, help="A/B rounds per shape (default 3 quick, 5)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "asgiprof-bench-synth",
        help="where synthetic profiles are generated and kept between runs",
    )
    parser.add_argument("--clean", action="store_true", help="delete --cache at the end")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, out = args.worker
        fn = worker_report if kind == "report" else worker_floor
        print(json.dumps(fn(Path(out))))
        return

    rounds = args.rounds or (3 if args.quick else 5)
    header("Analysis speed and memory (`asgiprof report` path vs. orjson floor)")
    args.cache.mkdir(parents=True, exist_ok=True)
    rows = []
    stage_rows = []
    linear: list[tuple[float, float, float]] = []  # samples, report s, floor s (typical)
    for shape in shapes(args.quick):
        out, info = ensure(args.cache, shape)
        timeout_s = 60 + shape.minutes * shape.threads * 0.5
        a_runs: list[dict[str, Any]] = []
        b_runs: list[dict[str, Any]] = []
        for r in range(rounds):
            # Alternate which goes first, so drift over the run hits A and B alike.
            order = ("report", "floor") if r % 2 == 0 else ("floor", "report")
            for kind in order:
                res = run_worker(kind, out, timeout_s)
                (a_runs if kind == "report" else b_runs).append(res)
        a_s = [x["total_s"] for x in a_runs]
        b_s = [x["total_s"] for x in b_runs]
        ratios = [a / b for a, b in zip(a_s, b_s, strict=True)]
        a_mem = [x["peak_mb"] for x in a_runs]
        b_mem = [x["peak_mb"] for x in b_runs]
        samples = a_runs[0]["samples"]
        rows.append(
            [
                shape_name(shape),
                f"{info['raw_mb']:.0f}",
                f"{samples / 1e6:.2f}",
                a_runs[0]["runs"],
                a_runs[0]["stacks"],
                f"{median(a_s):.2f} ({spread(a_s)})",
                f"{median(b_s):.2f}",
                f"{median(ratios):.1f} ({spread(ratios)})",
                f"{median(a_s) / samples * 1e6:.2f}",
                f"{median(a_mem):.0f} ({median(a_mem) - a_runs[0]['base_mb']:.0f})",
                f"{median(b_mem):.0f}",
            ]
        )
        st = a_runs[0]["stages"]
        stage_names = list(st)
        stage_rows.append(
            [shape_name(shape)]
            + [fmt(median([x["stages"][k] for x in a_runs]), 2) for k in stage_names]
        )
        if not shape.busy and shape.threads == 40:
            linear.append((samples, median(a_s), median(b_s)))
        print(f"  done {shape_name(shape)}: report {median(a_s):.2f} s", file=sys.stderr)

    print(
        table(
            [
                "profile",
                "py-spy MB",
                "Msamples",
                "runs",
                "stacks",
                "report s (min..max)",
                "floor s",
                "report/floor",
                "report s per Msample",
                "report peak MB (over base)",
                "floor peak MB",
            ],
            rows,
        )
    )
    print()
    print("Stages of the report path (median seconds):\n")
    print(table(["profile", *stage_names], stage_rows))
    if len(linear) >= 3:
        xs = [s / 1e6 for s, _, _ in linear]
        a0, a1, r2 = least_squares(xs, [a for _, a, _ in linear])
        b0, b1, rb = least_squares(xs, [b for _, _, b in linear])
        print(
            f"\nLinear fit over duration at 40 threads: report = {a0:.2f} s + {a1:.2f} s/Msample "
            f"(R^2 {r2:.3f}); floor = {b0:.2f} s + {b1:.2f} s/Msample (R^2 {rb:.3f})"
        )
    if args.clean:
        shutil.rmtree(args.cache, ignore_errors=True)


if __name__ == "__main__":
    main()
