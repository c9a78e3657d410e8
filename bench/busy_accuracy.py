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
    python bench/busy_accuracy.py --only attach-asyncio --modes blocking,nonblocking --rounds 2

`--modes` runs each scenario once per py-spy mode (`--blocking`, `--nonblocking`), the
order alternating, and adds a side-by-side table: the loop's busy share by asgiprof against
the oracle's (samples py-spy drops on busy stretches would make the loop read idler),
blocked-time error and bias per planted kind, py-spy's errors, and the load average.

    python bench/busy_accuracy.py --only planted-run --formats chrometrace,speedscope --hog 2

`--rescore KEEP` records nothing: it re-analyses the runs a `--keep KEEP` run kept with the
code as it is now and scores them again against their own truth (the same samples, for a
rule change).

    python bench/busy_accuracy.py --keep /tmp/ba0    # before the change
    python bench/busy_accuracy.py --rescore /tmp/ba0 # after it

`--formats` records each scenario once per py-spy chunk format, interleaved (chrometrace:
measured sample times; speedscope: the format before 0.2, times spread evenly over each
chunk); `--hog N` runs N busy-looping processes beside everything (a CPU-starved machine),
each bounded by `timeout` and killed by PID at the end.

Columns: recall = planted lines found at their line and route / planted lines that ran
while sampled; false = culprits at no planted line and no line the app times as real work
(`# timed:`, the planted app's 4,000-object list built in json.dumps' step, shown in the
per-line table); await = culprits at an `await` / `async with` / `async for` line;
share = culprits' blocked ms / sampled loop time;
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
import math
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: make `tests` importable
sys.path.insert(0, str(REPO / "bench"))

from _common import fmt, header, table  # noqa: E402

from asgiprof.analyze.loop import STATE_OFF, LoopClassifier  # noqa: E402
from asgiprof.model import NO_STACK  # noqa: E402
from asgiprof.store import load_profile  # noqa: E402
from tests.busy.harness import Scenario, Score, read_truth, run_scenario, score  # noqa: E402

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
                line.tag if line in s.lines else f"{line.tag} (timed, not planted)",
                line.calls,
                fmt(line.truth_ms, 0),
                fmt(line.blocked_ms, 0) if line.found else "not found",
                f"{line.error:+.1%}" if line.found else "-",
                f"{line.z:+.1f}" if line.found else "-",
                f"{line.kind or '-'} / {line.truth_kind} ({line.runnable_ratio:.2f})",
                "ok" if line.route_ok else f"{line.culprit_route} vs {list(line.routes)}",
            ]
            for line in [*s.lines, *s.timed_lines]
        )
    return rows


def _signed(s: Score, kind: str) -> str:
    """Pooled blocked-time error of the planted lines of one kind, in sampling sd."""
    lines = [line for line in s.lines if line.truth_kind == kind]
    truth = sum(line.truth_ms for line in lines)
    if not lines or truth <= 0:
        return "-"
    est = sum(line.blocked_ms for line in lines)
    sd = math.sqrt(truth / 1000 * s.scenario.rate_hz) / s.scenario.rate_hz * 1000
    return f"{est / truth - 1:+.1%} (z {(est - truth) / sd:+.1f})"


def torn_share(out: Path) -> float:
    """Share of the loop threads' samples whose stack is not inside the loop: stacks torn
    or cut short while py-spy read them (the analysis can use them neither as busy nor as
    idle)."""
    profile = load_profile(out)
    loop = LoopClassifier(profile)
    off = total = 0
    for tl in profile.threads:
        if not loop.is_loop_thread({sid for sid in tl.stack if sid != NO_STACK}):
            continue
        for _, _, sid, n in tl.runs():
            if sid != NO_STACK:
                total += n
                off += n if loop.classify(sid).state == STATE_OFF else 0
    return off / total if total else float("nan")


def mode_rows(scores: list[tuple[Score, str, float]]) -> list[list[object]]:
    rows: list[list[object]] = []
    for s, mode, load in scores:
        sampling = s.summary["sampling"]
        asked = sampling["intervals"] + sampling["errors"]
        found, total = s.recall
        errors = [abs(line.error) for line in s.lines if line.found]
        rows.append(
            [
                replace(s.scenario, flags=()).name,
                mode,
                f"{load:.1f}",
                s.requests,
                f"{s.utilization:.3f} / {s.truth_utilization:.3f}",
                f"{s.utilization / s.truth_utilization:.3f}" if s.truth_utilization else "-",
                f"{found}/{total}" if total else "-",
                len(s.false_culprits),
                _pct(statistics.median(errors)) if errors else "-",
                _signed(s, "io"),
                _signed(s, "cpu"),
                f"{sampling['errors']} ({sampling['errors'] / max(asked, 1):.1%})",
                _pct(torn_share(s.out)),
                f"{sampling['coverage']:.0%} / {sampling['span_coverage']:.3f}",
            ]
        )
    return rows


MODE_HEADERS = [
    "scenario",
    "mode",
    "load avg",
    "requests",
    "loop util (asgiprof / oracle)",
    "ratio",
    "recall",
    "false",
    "blocked err (median)",
    "io lines (pooled err, z)",
    "cpu lines (pooled err, z)",
    "py-spy errors (of instants asked)",
    "torn loop samples",
    "coverage / span",
]
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


def rescore(keep: Path) -> int:
    """Re-analyse every kept run (`asgiprof report OUT`) and score it against its truth."""
    by_name = {s.name: s for s in SCENARIOS}
    scores = []
    for work in sorted(keep.glob("r*/*")):
        scenario = by_name.get(work.name)
        if scenario is None or not (work / "out" / "meta.json").exists():
            continue
        report = [sys.executable, "-m", "asgiprof", "report", str(work / "out")]
        subprocess.run(report, check=True, capture_output=True, timeout=300)
        found = score(scenario, work / "out", read_truth(work / "truth.jsonl"), 0)
        LABELS[id(found)] = f"{work.parent.name}/{work.name}"
        scores.append(found)
    header(f"Trust on busy apps, re-analysed: {keep} (requests: not re-counted)")
    print(table(HEADERS, [row(s) for s in scores]))
    return 0 if scores else 1


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
        "--modes",
        default="",
        help="comma-separated sampling modes to run each scenario in (blocking, nonblocking, "
        "scout: --scout-rate), alternating; default: asgiprof's default only",
    )
    parser.add_argument("--scout-rate", type=int, default=20, help="the scout mode's rate")
    parser.add_argument("--rounds", type=int, default=1, help="passes over the scenarios")
    parser.add_argument(
        "--formats", default="", help="py-spy chunk formats to compare, e.g. chrometrace,speedscope"
    )
    parser.add_argument("--hog", type=int, default=0, help="busy-looping processes beside")
    parser.add_argument(
        "--rescore", type=Path, help="re-analyse and score the runs a --keep folder holds"
    )
    args = parser.parse_args(argv)
    if args.rescore:
        return rescore(args.rescore)
    formats = [f for f in args.formats.split(",") if f] or [""]
    if args.load_s > 20:
        parser.error("--load-s above 20 s: keep load runs short on a shared machine")
    wanted = [w for w in args.only.split(",") if w]
    modes = [m for m in args.modes.split(",") if m]
    mode_flags = {
        "blocking": ("--blocking",),
        "nonblocking": ("--nonblocking",),
        "scout": (f"--scout-rate={args.scout_rate}",),
    }
    if any(m not in mode_flags for m in modes):
        parser.error(f"--modes takes {', '.join(mode_flags)}, got {args.modes!r}")
    base = [
        Scenario(s.variant, s.mode, s.loop, args.load_s, args.connections, args.rate, s.db)
        for s in SCENARIOS
        if not wanted or any(w in s.name for w in wanted)
    ]
    work = args.keep or Path(tempfile.mkdtemp(prefix="asgiprof-busy-"))
    header("Trust on busy apps (tests/busy/app.py against its own truth)")
    if args.hog:
        print(f"beside {args.hog} CPU hog(s)")
    scores = []
    by_mode: list[tuple[Score, str, float]] = []
    turn = 0
    runs = args.rounds * len(base) * max(len(modes), 1) * len(formats)
    bound_s = runs * (args.load_s + 120) + 60
    with cpu_hogs(args.hog, bound_s):
        for r in range(args.rounds):
            for scenario in base:
                order = modes if turn % 2 == 0 else modes[::-1]
                turn += 1
                for mode in order or [""]:
                    chosen = replace(scenario, flags=mode_flags[mode]) if mode else scenario
                    for fmt_name in formats:
                        name = chosen.name + (f"-{fmt_name}" if fmt_name else "")
                        print(f"- {name} ...", file=sys.stderr, flush=True)
                        if fmt_name:
                            os.environ[FORMAT_ENV] = fmt_name
                        score = run_scenario(chosen, work / f"r{r + 1}" / name)
                        LABELS[id(score)] = name
                        scores.append(score)
                        if mode:
                            by_mode.append((score, mode, os.getloadavg()[0]))
                        if args.details:
                            print(score.explain(), file=sys.stderr)
    print(table(HEADERS, [row(s) for s in scores]))
    if by_mode:
        print()
        print(table(MODE_HEADERS, mode_rows(by_mode)))
    planted = [s for s in scores if s.lines]
    if planted:
        print()
        columns = ["scenario", "line", "calls", "truth ms", "asgiprof ms", "error", "z"]
        print(table([*columns, "kind (asgiprof / truth)", "route"], line_rows(planted)))
    print(f"\nfiles: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
