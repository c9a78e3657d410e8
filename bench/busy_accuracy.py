"""Trust on busy apps (issue 12): does asgiprof invent culprits on a healthy busy app, and
does it find every real block with the time, kind and route the app measured itself?

Runs tests/busy/app.py (async SQLAlchemy + aiosqlite, shared httpx.AsyncClient to a local
upstream, pydantic, pure-ASGI + BaseHTTPMiddleware, an async dependency shared by 3
routes) CLEAN and PLANTED (7 planted blocks: json.dumps(default=user fn), sorted(key=user
fn), pbkdf2, bcrypt, argon2, time.sleep in the shared dependency, a sync sqlite3 query)
under `asgiprof run` and `asgiprof attach`, on asyncio and uvloop, with saturating wrk
load (and the clean app on asyncpg + PostgreSQL, run/asyncio and attach/uvloop);
tests/busy/truth.py records inside the app every loop step and planted call, and
tests/busy/harness.py scores asgiprof's summary.json against that truth.

    python bench/busy_accuracy.py                   # 10 scenarios, 10 s of load each (~5 min)
    python bench/busy_accuracy.py --only clean --load-s 8 --keep /tmp/busy
    python bench/busy_accuracy.py --only planted-run --formats chrometrace,speedscope --hog 2

`--formats` records each scenario once per py-spy chunk format, interleaved (chrometrace:
measured sample times; speedscope: the format before 0.2, times spread evenly over each
chunk); `--hog N` runs N busy-looping processes beside everything (a CPU-starved machine),
each bounded by `timeout` and killed by PID at the end.

Columns: recall = planted lines found at their line and route / planted lines that ran
while sampled; false = culprits at no planted line; await = culprits at an `await` /
`async with` / `async for` line; share = culprits' blocked ms / sampled loop time;
blocked err = |asgiprof - truth| / truth per planted line (median, worst) with z = error in
sampling sd (Poisson, 1/sqrt(truth s x rate)); kind = right kinds / lines found (the
per-line table shows the loop thread's (CPU + run-queue wait) / wall over the calls beside
it: below 1 where the call waited for the GIL or slept); routes = routes
that served requests missing from the routes table; route err = median |loop_ms +
threadpool_ms - oracle step time| / oracle; long = oracle steps >= 20 ms (count, and the
loop thread's CPU share of them); py-spy coverage = sampling instants / what the rate asks
for (summary.json `sampling.coverage`: below 1 when py-spy falls behind a starved machine).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: make `tests` importable
sys.path.insert(0, str(REPO / "bench"))

from _common import fmt, header, table  # noqa: E402

from tests.busy.harness import Scenario, Score, run_scenario  # noqa: E402

SCENARIOS = [
    *(
        Scenario(variant, mode, loop)
        for variant in ("clean", "planted")
        for mode in ("run", "attach")
        for loop in ("asyncio", "uvloop")
    ),
    # the clean app on asyncpg and a throwaway PostgreSQL (tests/postgres.py)
    Scenario("clean", "run", "asyncio", db="postgres"),
    Scenario("clean", "attach", "uvloop", db="postgres"),
]


def _pct(x: float) -> str:
    return "-" if x != x else f"{x:.1%}"


def row(s: Score) -> list[object]:
    found, total = s.recall
    right, judged = s.kind_accuracy
    errors = sorted((abs(line.error), line) for line in s.lines if line.found)
    worst = errors[-1][1] if errors else None
    route_errors = [abs(r.error) for r in s.routes if r.loop_ms is not None]
    long_ms = sum(step["ms"] for step in s.long_steps)
    long_cpu = sum(step["cpu_ms"] for step in s.long_steps)
    return [
        LABELS.get(id(s), s.scenario.name),
        s.requests,
        f"{s.utilization:.2f} / {s.truth_utilization:.2f}",
        f"{found}/{total}" if total else "-",
        len(s.false_culprits),
        len(s.await_culprits),
        _pct(s.culprit_share),
        _pct(statistics.median(e for e, _ in errors)) if errors else "-",
        f"{worst.error:+.1%} ({worst.tag}, z {worst.z:+.1f})" if worst else "-",
        f"{right}/{judged}" if judged else "-",
        len(s.missing_routes),
        _pct(statistics.median(route_errors)) if route_errors else "-",
        f"{len(s.long_steps)} ({_pct(long_cpu / long_ms) if long_ms else '-'} CPU)",
        f"{s.summary['sampling']['coverage']:.0%}",
    ]


HEADERS = [
    "scenario",
    "requests",
    "loop util (asgiprof / oracle)",
    "recall",
    "false",
    "await",
    "share",
    "blocked err (median)",
    "worst",
    "kind",
    "routes missing",
    "route err (median)",
    "oracle steps >= 20 ms",
    "py-spy coverage",
]


def line_rows(scores: list[Score]) -> list[list[object]]:
    rows: list[list[object]] = []
    for s in scores:
        rows.extend(
            [
                LABELS.get(id(s), s.scenario.name),
                line.tag,
                line.calls,
                fmt(line.truth_ms, 0),
                fmt(line.blocked_ms, 0) if line.found else "not found",
                f"{line.error:+.1%}" if line.found else "-",
                f"{line.z:+.1f}" if line.found else "-",
                f"{line.kind or '-'} / {line.truth_kind} ({line.runnable_ratio:.2f})",
                "ok" if line.route_ok else f"{line.culprit_route} vs {list(line.routes)}",
            ]
            for line in s.lines
        )
    return rows


FORMAT_ENV = "ASGIPROF_PYSPY_FORMAT"  # asgiprof/record/sampler.py
LABELS: dict[int, str] = {}  # id(score) -> scenario name with its chunk format


@contextlib.contextmanager
def cpu_hogs(n: int, bound_s: float) -> Iterator[None]:
    """`n` processes spinning on the CPU for at most `bound_s` seconds."""
    hogs = [
        subprocess.Popen(
            ["timeout", f"{bound_s:g}", sys.executable, "-c", "while True: pass"],
            stdin=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]
    try:
        yield
    finally:
        for hog in hogs:
            hog.terminate()  # timeout forwards it to its child
        for hog in hogs:
            try:
                hog.wait(10)
            except subprocess.TimeoutExpired:
                hog.kill()
                hog.wait(10)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load-s", type=float, default=10.0, help="wrk load per scenario")
    parser.add_argument("--connections", type=int, default=12, help="wrk -c")
    parser.add_argument("--rate", type=int, default=100, help="asgiprof --rate")
    parser.add_argument(
        "--only", default="", help="comma-separated substrings of scenario names to run"
    )
    parser.add_argument("--keep", type=Path, help="keep every run's files under this folder")
    parser.add_argument("--details", action="store_true", help="print every culprit and line")
    parser.add_argument(
        "--formats", default="", help="py-spy chunk formats to compare, e.g. chrometrace,speedscope"
    )
    parser.add_argument("--hog", type=int, default=0, help="busy-looping processes beside")
    args = parser.parse_args(argv)
    formats = [f for f in args.formats.split(",") if f] or [""]
    wanted = [w for w in args.only.split(",") if w]
    chosen = [
        Scenario(s.variant, s.mode, s.loop, args.load_s, args.connections, args.rate, s.db)
        for s in SCENARIOS
        if not wanted or any(w in s.name for w in wanted)
    ]
    work = args.keep or Path(tempfile.mkdtemp(prefix="asgiprof-busy-"))
    header("Trust on busy apps (tests/busy/app.py against its own truth)")
    if args.hog:
        print(f"beside {args.hog} CPU hog(s)")
    scores = []
    bound_s = len(chosen) * len(formats) * (args.load_s + 120) + 60
    with cpu_hogs(args.hog, bound_s):
        for scenario in chosen:
            for fmt_name in formats:
                name = f"{scenario.name}-{fmt_name}" if fmt_name else scenario.name
                print(f"- {name} ...", file=sys.stderr, flush=True)
                if fmt_name:
                    os.environ[FORMAT_ENV] = fmt_name
                score = run_scenario(scenario, work / name)
                LABELS[id(score)] = name
                scores.append(score)
                if args.details:
                    print(score.explain(), file=sys.stderr)
    print(table(HEADERS, [row(s) for s in scores]))
    planted = [s for s in scores if s.lines]
    if planted:
        print()
        columns = ["scenario", "line", "calls", "truth ms", "asgiprof ms", "error", "z"]
        print(table([*columns, "kind (asgiprof / truth)", "route"], line_rows(planted)))
    print(f"\nfiles: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
