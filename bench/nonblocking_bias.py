"""Does py-spy's --nonblocking mode bias blocked time? Blocking and nonblocking side by side.

    python bench/nonblocking_bias.py                  # 4 rounds x 2 modes, 15 s of load each
    python bench/nonblocking_bias.py --rounds 2 --load-s 10 --keep /tmp/nb

py-spy --nonblocking reads the target's memory while it runs. A read that tears (a frame
freed or changed under the reader) fails and py-spy drops that sampling instant (counted in
`sampling.errors`), or, worse, returns a wrong stack. Drops are not random: a thread whose
stack changes while it is read is a thread running Python code, so they could fall more on
busy stretches (a CPU-bound block) than on blocked-in-a-syscall ones (time.sleep) or an idle
loop. asgiprof gives each sample of a chunk an equal share of the chunk's span, so samples
dropped on busy stretches would make CPU blocks read low and sleeps and idle time read high.

Each round runs bench/apps/planted.py (eight planted blocks: four time.sleep, four busy
loops, each BLOCK ms) under accuracy.py's paced load twice, once per mode, the order
alternating (A B, B A, ...), and scores each run three ways:

- accuracy.py's score (recall, line+route, kind, blocked-time error per line against
  requests x BLOCK ms, false culprits);
- asgiprof's blocked ms over the app-timed block time that fell inside py-spy's chunks,
  pooled per kind (io = sleep, cpu = busy loop): est/app, with its sampling sd
  1/sqrt(app seconds x rate); the bias of a mode is the gap between cpu and io in sd;
- the loop thread's samples by what the loop was doing (planted io, planted cpu, other
  busy, idle, and stacks outside the loop: torn or truncated), as a share of the instants
  py-spy took, next to the app-timed share of the two planted kinds; and py-spy's errors
  per chunk fitted against the chunk's app-timed io and cpu shares (least squares):
  where the dropped instants fell.

Every line states the load average beside it: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy as acc  # noqa: E402
from _common import header, median, table  # noqa: E402

from asgiprof.analyze.loop import STATE_BUSY, STATE_IDLE, LoopClassifier  # noqa: E402
from asgiprof.model import NO_STACK  # noqa: E402
from asgiprof.store import load_profile  # noqa: E402

MODES = ("blocking", "nonblocking")
CATEGORIES = ("io", "cpu", "busy", "idle", "off")


@dataclass(slots=True)
class ChunkFacts:
    instants: int
    errors: int
    io_share: float  # app-timed planted io time / chunk span
    cpu_share: float


@dataclass(slots=True)
class RunFacts:
    mode: str
    round: int
    load: float  # 1-min load average when the run ended
    score: acc.Score
    rate_hz: int
    instants: int = 0
    errors: int = 0
    span_s: float = 0.0
    span_coverage: float = 0.0
    samples: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    est_ms: dict[str, float] = field(default_factory=lambda: {"io": 0.0, "cpu": 0.0})
    app_ms: dict[str, float] = field(default_factory=lambda: {"io": 0.0, "cpu": 0.0})
    chunks: list[ChunkFacts] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        asked = self.instants + self.errors
        return self.errors / asked if asked else float("nan")


def _overlap(blocks: list[tuple[float, float]], a: float, b: float) -> float:
    return sum(max(0.0, min(end, b) - max(start, a)) for start, end in blocks)


def measure(
    cfg: acc.Config, planted: list[acc.Planted], load_s: float, work: Path, seed: int, rnd: int
) -> RunFacts:
    score = acc.run(cfg, planted, load_s, work, seed)
    load = os.getloadavg()[0]
    [out] = [p for p in work.iterdir() if p.is_dir()]
    [block_log] = list(work.glob("*-blocks.json"))
    kinds = {p.tag: p.kind for p in planted}
    by_kind: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for tag, start, end in json.loads(block_log.read_text()):
        by_kind[kinds[tag]].append((start, end))

    summary = json.loads((out / "summary.json").read_text())
    profile = load_profile(out)
    facts = RunFacts(
        "nonblocking" if cfg.nonblocking else "blocking", rnd, load, score, cfg.rate_hz
    )
    facts.span_coverage = float(summary["sampling"]["span_coverage"])
    by_line = {(Path(c["file"]).resolve(), c["line"]): c for c in summary["culprits"]}
    for p in planted:
        c = by_line.get((p.file, p.line))
        facts.est_ms[p.kind] += c["blocked_ms"] if c else 0.0

    # Where each planted line's frame sits: any frame of the stack at a planted line.
    planted_at = {(str(p.file), p.line): p.kind for p in planted}
    frame_kind: list[str | None] = []
    for f in profile.frames:
        key = (str(Path(f.file).resolve()) if f.file else "", f.line)
        frame_kind.append(planted_at.get(key))
    loop = LoopClassifier(profile)

    def category(stack_id: int) -> str:
        # A loop-thread stack outside the loop is torn (its root frames were not read):
        # the analysis cannot use it, whatever its leaf.
        state = loop.classify(stack_id).state
        if state not in (STATE_BUSY, STATE_IDLE):
            return "off"
        for fid in profile.stacks[stack_id]:
            if frame_kind[fid] is not None:
                return frame_kind[fid]  # type: ignore[return-value]
        return "busy" if state == STATE_BUSY else "idle"

    threads = [
        tl for tl in profile.threads if loop.is_loop_thread({s for s in tl.stack if s != NO_STACK})
    ]
    t0 = profile.sampling.started_at
    chunk_spans = [(c.start_s, c.end_s, c) for c in profile.sampling.chunks]
    for start, end, chunk in chunk_spans:
        span = max(end - start, 1e-9)
        facts.instants += chunk.intervals
        facts.errors += chunk.errors
        facts.span_s += span
        shares = {k: _overlap(by_kind[k], t0 + start, t0 + end) for k in ("io", "cpu")}
        for k in ("io", "cpu"):
            facts.app_ms[k] += shares[k] * 1000
        facts.chunks.append(
            ChunkFacts(chunk.intervals, chunk.errors, shares["io"] / span, shares["cpu"] / span)
        )
    for tl in threads:
        for _, _, sid, n in tl.runs():
            if sid != NO_STACK:
                facts.samples[category(sid)] += n
    return facts


def fit_errors(chunks: list[ChunkFacts]) -> tuple[float, float, float] | None:
    """Least squares: errors / asked instants = a + b x io share + c x cpu share, over
    chunks. b and c: the drop rate on planted io / cpu time, beyond the base rate a."""
    rows = [
        (1.0, c.io_share, c.cpu_share, c.errors / (c.instants + c.errors))
        for c in chunks
        if c.instants + c.errors > 0
    ]
    if len(rows) < 4:
        return None
    m = [[sum(r[i] * r[j] for r in rows) for j in range(3)] for i in range(3)]
    v = [sum(r[i] * r[3] for r in rows) for i in range(3)]
    # Gaussian elimination with partial pivoting on the 3x3 normal equations.
    for col in range(3):
        piv = max(range(col, 3), key=lambda r: abs(m[r][col]))
        if abs(m[piv][col]) < 1e-12:
            return None
        m[col], m[piv] = m[piv], m[col]
        v[col], v[piv] = v[piv], v[col]
        for r in range(col + 1, 3):
            f = m[r][col] / m[col][col]
            m[r] = [x - f * y for x, y in zip(m[r], m[col], strict=True)]
            v[r] -= f * v[col]
    x = [0.0, 0.0, 0.0]
    for r in (2, 1, 0):
        x[r] = (v[r] - sum(m[r][c] * x[c] for c in range(r + 1, 3))) / m[r][r]
    return x[0], x[1], x[2]


def _ratio(est: float, app: float, rate: int) -> tuple[float, float]:
    """est / app and its sampling sd, 1 / sqrt(app seconds x rate)."""
    if app <= 0:
        return float("nan"), float("nan")
    return est / app, 1 / math.sqrt(app / 1000 * rate)


def run_rows(runs: list[RunFacts]) -> list[list[object]]:
    rows = []
    for f in runs:
        s = f.score
        errs = list(s.errors.values())
        total = sum(f.samples.values()) or 1
        io, io_sd = _ratio(f.est_ms["io"], f.app_ms["io"], f.rate_hz)
        cpu, cpu_sd = _ratio(f.est_ms["cpu"], f.app_ms["cpu"], f.rate_hz)
        rows.append(
            [
                f.round,
                f.mode,
                f"{f.load:.1f}",
                f"{len(s.found)}/8",
                f"{len(s.line_route)}/8",
                f"{len(s.kind_ok)}/8",
                f"{median([abs(e) for e in errs]):.1%}" if errs else "-",
                f"{median(errs):+.1%}" if errs else "-",
                len(s.false_culprits),
                f"{f.errors} ({f.error_rate:.1%})",
                f"{f.span_coverage:.3f}",
                f"{io:.3f} ± {io_sd:.3f}",
                f"{cpu:.3f} ± {cpu_sd:.3f}",
                f"{(cpu - io) / math.hypot(io_sd, cpu_sd):+.1f}",
                " / ".join(f"{f.samples[c] / total:.1%}" for c in CATEGORIES),
            ]
        )
    return rows


def pooled_rows(runs: list[RunFacts]) -> list[list[object]]:
    rows = []
    for mode in MODES:
        mine = [f for f in runs if f.mode == mode]
        if not mine:
            continue
        rate = mine[0].rate_hz
        est = {k: sum(f.est_ms[k] for f in mine) for k in ("io", "cpu")}
        app = {k: sum(f.app_ms[k] for f in mine) for k in ("io", "cpu")}
        io, io_sd = _ratio(est["io"], app["io"], rate)
        cpu, cpu_sd = _ratio(est["cpu"], app["cpu"], rate)
        instants = sum(f.instants for f in mine)
        errors = sum(f.errors for f in mine)
        samples = {c: sum(f.samples[c] for f in mine) for c in CATEGORIES}
        loop_total = sum(samples.values()) or 1
        span = sum(f.span_s for f in mine)
        # Samples at planted lines per app-timed second at the rate: 1 when every instant
        # over the blocks was taken; below 1 by what was dropped there (and by lag).
        taken = {k: samples[k] / (app[k] / 1000 * rate) for k in ("io", "cpu")}
        fit = fit_errors([c for f in mine for c in f.chunks])
        errs = [e for f in mine for e in f.score.errors.values()]
        rows.append(
            [
                mode,
                len(mine),
                f"{median([f.load for f in mine]):.1f}",
                f"{median([abs(e) for e in errs]):.1%}" if errs else "-",
                f"{errors} / {instants + errors} ({errors / max(instants + errors, 1):.2%})",
                f"{io:.3f} ± {io_sd:.3f}",
                f"{cpu:.3f} ± {cpu_sd:.3f}",
                f"{(cpu - io) / math.hypot(io_sd, cpu_sd):+.1f}",
                f"{samples['io'] / loop_total:.2%} / {app['io'] / 1000 / span:.2%}",
                f"{samples['cpu'] / loop_total:.2%} / {app['cpu'] / 1000 / span:.2%}",
                f"{taken['io']:.3f} / {taken['cpu']:.3f}",
                f"{samples['off'] / loop_total:.2%}",
                "-" if fit is None else f"{fit[0]:+.3f} / {fit[1]:+.3f} / {fit[2]:+.3f}",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="A B pairs (order alternates)")
    parser.add_argument("--load-s", type=float, default=15.0, help="paced load per run")
    parser.add_argument("--block-ms", type=int, default=100, help="each planted block")
    parser.add_argument(
        "--utilization", type=float, default=0.5, help="share of time the blocks hold the loop"
    )
    parser.add_argument("--rate", type=int, default=100, help="asgiprof --rate")
    parser.add_argument(
        "--background",
        type=int,
        default=0,
        metavar="N",
        help="wrk -cN saturating GET /ok beside the planted load: fast steps around the "
        "blocks, where torn reads and drops happen",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="keep every run's files under this folder")
    args = parser.parse_args()
    if args.load_s > 20:
        sys.exit("--load-s above 20 s: keep load runs short on a shared machine")
    planted = acc.planted_lines()
    header("py-spy --nonblocking vs blocking: blocked-time bias (planted app)")
    print(
        f"{args.rounds} rounds x (blocking, nonblocking), order alternating; "
        f"{args.load_s:g} s of paced load per run; 8 planted lines (4 time.sleep, 4 busy "
        f"loops) of {args.block_ms} ms holding the loop {args.utilization:.0%} of the time; "
        f"{args.rate} Hz; uvicorn --loop asyncio"
        + (f"; wrk -c{args.background} on GET /ok beside them" if args.background else "")
        + ".\n"
    )
    work = args.keep or Path(tempfile.mkdtemp(prefix="asgiprof-bench-nonblocking-"))
    runs: list[RunFacts] = []
    try:
        for r in range(args.rounds):
            order = MODES if r % 2 == 0 else MODES[::-1]
            for mode in order:
                cfg = acc.Config(
                    args.block_ms,
                    rate_hz=args.rate,
                    utilization=args.utilization,
                    nonblocking=mode == "nonblocking",
                    background=args.background,
                )
                run_dir = work / f"r{r + 1}-{mode}"
                run_dir.mkdir(parents=True, exist_ok=True)
                t = time.monotonic()
                facts = measure(cfg, planted, args.load_s, run_dir, args.seed + r, r + 1)
                runs.append(facts)
                print(
                    f"  round {r + 1} {mode}: {time.monotonic() - t:.0f} s, load "
                    f"{facts.load:.1f}, {facts.errors} py-spy errors",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(
        table(
            [
                "round",
                "mode",
                "load avg",
                "recall",
                "line+route",
                "kind",
                "blocked err (median)",
                "signed (median)",
                "false",
                "py-spy errors (rate)",
                "span coverage",
                "io est/app",
                "cpu est/app",
                "cpu - io (sd)",
                "loop samples io / cpu / busy / idle / off",
            ],
            run_rows(runs),
        )
    )
    print()
    print(
        table(
            [
                "mode",
                "runs",
                "load avg (median)",
                "blocked err (median)",
                "py-spy errors / instants asked",
                "io est/app (pooled)",
                "cpu est/app (pooled)",
                "cpu - io (sd)",
                "io: sample share / app share",
                "cpu: sample share / app share",
                "instants taken on io / cpu blocks",
                "loop samples off the loop (torn)",
                "error fit: base / per io share / per cpu share",
            ],
            pooled_rows(runs),
        )
    )
    print(
        "\nest/app: asgiprof's culprit ms over the app-timed block ms inside py-spy's chunks, "
        "± its sampling sd; cpu - io: their gap in sd (a mode whose drops fall on busy code "
        "reads cpu low and io high). Instants taken: samples at the planted lines / (app "
        "seconds x rate). Error fit: errors / instants asked per chunk = base + b x io share "
        "+ c x cpu share."
    )


if __name__ == "__main__":
    main()
