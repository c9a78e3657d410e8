"""Detection accuracy: planted blocking calls of known duration and kind, found or not.

    python bench/accuracy.py --quick     # ~3 min: 100 Hz, 12 s of load per run
    python bench/accuracy.py             # full: 50/100/200 Hz, heavier load, --blocking,
                                         # uvloop, asyncio debug; 40 s of load per run (~25 min)
    python bench/accuracy.py --lines     # + every planted line's numbers
    python bench/accuracy.py --low-rates --load-seconds 60   # 10 and 20 Hz (--max-pause's)
    python bench/accuracy.py --scout-rate 20 --load-seconds 30  # without and with scouting

bench/apps/planted.py plants eight blocking calls (io: time.sleep, cpu: a busy loop; in an
`async def` route, an `async def` dependency, a helper in another module, a pure ASGI
middleware), each `BENCH_BLOCK_MS` long (10, 30, 100, 300), plus healthy twins where each
becomes its non-blocking equivalent. For each configuration a fresh uvicorn serves the app
on 127.0.0.1, `asgiprof attach` samples it, and a paced load driver requests every planted
route with exponential think times such that the planted blocks hold the loop 30% of the
time ("load" 70% in the full run: blocks often queue back to back, as under heavy load),
plus healthy background traffic.

Ground truth per planted line: requests served to its route (counted by the load driver)
x the planted duration. Scored from summary.json: recall (the planted line is a culprit),
line+route (and the culprit's route is the request's route), kind (io/cpu as planted),
blocked-time error (|culprit blocked_ms / truth - 1|, median and max over lines), and false
culprits (culprits at any other line; in the healthy twin every culprit is false).
`stat 1σ` is the sampling floor of the error: py-spy samples at exponential intervals, so a
line blocked T seconds gets Poisson(T x rate) samples, relative error 1/sqrt(T x rate).
The app also logs every block's start and end; `sampled share` is the part of the planted
block time that fell inside py-spy's sampled windows (asgiprof restarts py-spy every 2 s,
and nothing is sampled while it restarts), and `err vs sampled blocks` compares asgiprof's
estimate with the blocks inside those windows only: the analysis's own error, without the
time lost between chunks.

asyncio debug mode (PYTHONASYNCIODEBUG=1, slow_callback_duration = asgiprof's threshold) is
scored on the same load from its "Executing ... took N seconds" log: it times slow callbacks
well but names the task (uvicorn's run_asgi), never the line or the route.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import APPS, PYTHON, Server, header, median, stop_pid, table, wait_for  # noqa: E402

from asgiprof.analyze.result import AnalysisParams  # noqa: E402
from asgiprof.record.loadgen import check_loopback  # noqa: E402

THRESHOLD_MS = AnalysisParams().block_threshold_ms
_MARK = re.compile(r"#\s*planted:\s*([a-z]+-(?:io|cpu))\s*$")


@dataclass(frozen=True, slots=True)
class Planted:
    tag: str  # "route-io"
    file: Path
    line: int
    kind: str  # "io" / "cpu"
    path: str  # request path
    route: str  # the route asgiprof should name


def planted_lines() -> list[Planted]:
    found: list[Planted] = []
    for file in (APPS / "planted.py", APPS / "planted_helpers.py"):
        for number, text in enumerate(file.read_text().splitlines(), start=1):
            m = _MARK.search(text)
            if m:
                tag = m.group(1)
                where, kind = tag.split("-")
                found.append(
                    Planted(
                        tag,
                        file.resolve(),
                        number,
                        kind,
                        f"/{where}/{kind}/7",
                        f"GET /{where}/{kind}/{{item_id}}",
                    )
                )
    if len(found) != 8:
        raise RuntimeError(f"expected 8 planted lines in bench/apps, found {len(found)}")
    return found


# ------------------------------------------------------------------------------ load


async def _paced_load(
    base_url: str,
    planted: list[str],
    background: list[str],
    duration_s: float,
    think_s: float,
    timeout_s: float,
    seed: int,
) -> dict[str, list[int]]:
    """Each planted path: one client, exponential think time, until the deadline; two
    clients loop over the background paths. Returns {path: [ok, failed]}."""
    check_loopback(base_url)
    rng = random.Random(seed)
    counts: dict[str, list[int]] = {p: [0, 0] for p in planted + background}
    deadline = time.monotonic() + duration_s

    async def get(client: httpx.AsyncClient, path: str) -> None:
        try:
            r = await client.get(base_url + path)
            counts[path][0 if r.status_code < 400 else 1] += 1
        except httpx.HTTPError:
            counts[path][1] += 1

    async def paced(client: httpx.AsyncClient, path: str) -> None:
        await asyncio.sleep(rng.uniform(0, think_s))
        while time.monotonic() < deadline:
            await get(client, path)
            await asyncio.sleep(min(rng.expovariate(1 / think_s), duration_s))

    async def looping(client: httpx.AsyncClient, k: int) -> None:
        i = k
        while time.monotonic() < deadline:
            await get(client, background[i % len(background)])
            i += 1
            await asyncio.sleep(0.02)

    limits = httpx.Limits(max_connections=len(planted) + 4)
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s), limits=limits, trust_env=False
    ) as client:
        tasks = [asyncio.create_task(paced(client, p)) for p in planted]
        tasks += [asyncio.create_task(looping(client, k)) for k in range(2)]
        done, pending = await asyncio.wait(tasks, timeout=duration_s + 2 * timeout_s)
        for t in pending:
            t.cancel()
        for t in done:
            if t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
    return counts


def paced_load(
    base_url: str,
    planted: list[str],
    duration_s: float,
    block_ms: float,
    utilization: float,
    seed: int,
) -> dict[str, list[int]]:
    # Each of K clients blocks the loop block_ms per cycle of block + think time.
    think_s = max(0.02, len(planted) * block_ms / 1000 / utilization - block_ms / 1000)
    return asyncio.run(
        _paced_load(
            base_url, planted, ["/ok", "/ok", "/threadpool"], duration_s, think_s, 30.0, seed
        )
    )


# ------------------------------------------------------------------------------ runs


@dataclass(frozen=True, slots=True)
class Config:
    block_ms: int
    rate_hz: int = 100
    utilization: float = 0.3  # share of time the planted blocks hold the loop
    healthy: bool = False
    nonblocking: bool = True  # --nonblocking; False: --blocking (asgiprof's default)
    loop: str = "asyncio"
    debug_mode: bool = False  # PYTHONASYNCIODEBUG instead of asgiprof
    load_s: float | None = None  # this run's load, instead of --load-seconds
    # wrk connections saturating GET /ok beside the paced load: fast steps all around the
    # blocks (0: none)
    background: int = 0
    scout_hz: int = 0  # --scout-rate (0: not given)

    @property
    def name(self) -> str:
        if self.debug_mode:
            return "asyncio debug"
        mode = "asgiprof" + (" --nonblocking" if self.nonblocking else " --blocking")
        mode += f" --scout-rate {self.scout_hz}" if self.scout_hz else ""
        return f"{mode} {self.rate_hz} Hz" + (" uvloop" if self.loop == "uvloop" else "")


@dataclass(slots=True)
class Score:
    config: Config
    served: dict[str, int]
    failed: int
    found: list[str] = field(default_factory=list)
    line_route: list[str] = field(default_factory=list)
    no_route: list[str] = field(default_factory=list)  # found, route null (not a wrong one)
    kind_ok: list[str] = field(default_factory=list)
    errors: dict[str, float] = field(default_factory=dict)
    sampled_errors: dict[str, float] = field(default_factory=dict)  # vs blocks in sampled time
    coverage: float = 0.0  # share of planted block time inside py-spy's sampled windows
    stat_sigma: float = 0.0
    false_culprits: list[str] = field(default_factory=list)
    false_ms: float = 0.0
    misses: list[str] = field(default_factory=list)
    lines: list[list[object]] = field(default_factory=list)  # per planted line
    extra: str = ""


def _asgiprof(server: Server, cfg: Config, out: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [PYTHON, "-m", "asgiprof", "attach", str(server.pid), "--rate", str(cfg.rate_hz)]
    cmd += ["--out", str(out), "--nonblocking" if cfg.nonblocking else "--blocking"]
    cmd += ["--scout-rate", str(cfg.scout_hz)] if cfg.scout_hz else []
    with log.open("wb") as f:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "120"},
            start_new_session=True,
        )
    import psutil

    def sampling() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"asgiprof exited: {log.read_text()[-2000:]}")
        kids = psutil.Process(proc.pid).children(recursive=True)
        return (out / "routes.json").exists() and any(
            "py-spy" in " ".join(k.cmdline()) for k in kids
        )

    wait_for(sampling, 60, "asgiprof to start sampling")
    return proc


def run(cfg: Config, planted: list[Planted], load_s: float, work: Path, seed: int) -> Score:
    name = f"{cfg.name} {cfg.block_ms} {cfg.utilization} {cfg.healthy}"
    tag = re.sub(r"[^a-z0-9]+", "-", name.lower())
    block_log = work / f"{tag}-blocks.json"
    env = {"BENCH_BLOCK_MS": str(cfg.block_ms), "BENCH_BLOCK_LOG": str(block_log)}
    if cfg.healthy:
        env["BENCH_HEALTHY"] = "1"
    if cfg.debug_mode:
        env |= {"PYTHONASYNCIODEBUG": "1", "BENCH_SLOW_CALLBACK_MS": f"{THRESHOLD_MS:g}"}
    out = work / tag
    server = Server("planted", work / f"{tag}-server.log", env=env, loop=cfg.loop)
    prof = None
    try:
        server.start()
        if not cfg.debug_mode:
            prof = _asgiprof(server, cfg, out, work / f"{tag}-asgiprof.log")
        time.sleep(0.5)
        paths = [p.path for p in planted]
        wrk = None
        if cfg.background:
            cmd = ["wrk", "-t1", f"-c{cfg.background}", f"-d{load_s + 2:g}s", server.url + "/ok"]
            wrk = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            counts = paced_load(server.url, paths, load_s, cfg.block_ms, cfg.utilization, seed)
        finally:
            if wrk is not None:
                stop_pid(wrk, timeout_s=10)
        time.sleep(0.5)
        if prof is not None:
            rc = stop_pid(prof, timeout_s=120)
            if rc != 0 or not (out / "summary.json").exists():
                text = (work / f"{tag}-asgiprof.log").read_text()[-2000:]
                raise RuntimeError(f"asgiprof failed (rc {rc}):\n{text}")
    finally:
        if prof is not None:
            stop_pid(prof, timeout_s=10)
        server.stop()
    served = {p.tag: counts[p.path][0] for p in planted}
    failed = sum(counts[p.path][1] for p in planted)
    if cfg.debug_mode:
        return score_debug(cfg, planted, served, failed, server.log.read_text(errors="replace"))
    summary = json.loads((out / "summary.json").read_text())
    blocks = json.loads(block_log.read_text()) if block_log.exists() else []
    sampled = sampled_ms(blocks, sampled_windows(out))
    return score(cfg, planted, served, failed, summary, sampled)


def sampled_windows(out: Path) -> list[tuple[float, float]]:
    """Unix-time spans py-spy sampled: each chunk's measured span, in which
    store.load_profile places its samples (nothing between chunks)."""
    meta = json.loads((out / "meta.json").read_text())
    t0 = meta["sampling"]["started_at"]
    spans: list[tuple[float, float]] = []
    for path in sorted((out / "raw").glob("chunk-*[0-9].json")):  # metas, not py-spy's files
        cm = json.loads(path.read_text())
        start = t0 + cm["start_s"]
        # Chunks overlap by a few ms at each handover and the store cuts the overlap from
        # the newer one: count that time once.
        if spans and start < spans[-1][1]:
            start = spans[-1][1]
        spans.append((start, max(start, t0 + cm["end_s"])))
    return spans


def sampled_ms(
    blocks: list[tuple[str, float, float]], spans: list[tuple[float, float]]
) -> dict[str, float]:
    """Per tag: milliseconds of planted blocks that fell inside sampled spans."""
    out: dict[str, float] = {}
    for tag, start, end in blocks:
        inside = sum(max(0.0, min(end, b) - max(start, a)) for a, b in spans)
        out[tag] = out.get(tag, 0.0) + inside * 1000
    return out


def score(
    cfg: Config,
    planted: list[Planted],
    served: dict[str, int],
    failed: int,
    summary: dict[str, Any],
    sampled: dict[str, float],
) -> Score:
    s = Score(cfg, served, failed)
    by_line = {(Path(c["file"]).resolve(), c["line"]): c for c in summary["culprits"]}
    truths = []
    for p in planted:
        truth_ms = served[p.tag] * cfg.block_ms
        c = by_line.pop((p.file, p.line), None)
        if cfg.healthy:
            if c is not None:  # the twin's planted line runs in the threadpool, if at all
                by_line[(p.file, p.line)] = c
            continue
        truths.append(truth_ms)
        s.lines.append(
            [
                p.tag,
                served[p.tag],
                f"{truth_ms:.0f}",
                f"{sampled.get(p.tag, 0):.0f}",
                f"{c['blocked_ms']:.0f}" if c else "-",
                c["episodes"] if c else "-",
                f"{c['max_ms']:.0f}" if c else "-",
                c["kind"] if c else "-",
                c["route"] if c else "-",
            ]
        )
        if c is None:
            s.misses.append(f"{p.tag}: not a culprit ({served[p.tag]} x {cfg.block_ms} ms)")
            continue
        s.found.append(p.tag)
        if c["route"] == p.route:
            s.line_route.append(p.tag)
        elif c["route"] is None:
            s.no_route.append(p.tag)
            s.misses.append(f"{p.tag}: no route (blocked before routing), expected {p.route!r}")
        else:
            s.misses.append(f"{p.tag}: route {c['route']!r}, expected {p.route!r}")
        if c["kind"] == p.kind:
            s.kind_ok.append(p.tag)
        if truth_ms > 0:
            s.errors[p.tag] = c["blocked_ms"] / truth_ms - 1
        if sampled.get(p.tag):
            s.sampled_errors[p.tag] = c["blocked_ms"] / sampled[p.tag] - 1
    for c in by_line.values():
        s.false_culprits.append(f"{Path(c['file']).name}:{c['line']} ({c['blocked_ms']:.0f} ms)")
        s.false_ms += c["blocked_ms"]
    total_truth = sum(served[p.tag] * cfg.block_ms for p in planted)
    if total_truth and not cfg.healthy:
        s.coverage = sum(sampled.get(p.tag, 0.0) for p in planted) / total_truth
    if truths:
        per_line_s = median(truths) / 1000
        s.stat_sigma = 1 / (per_line_s * cfg.rate_hz) ** 0.5 if per_line_s > 0 else 0.0
    s.extra = (
        f"loop blocked {summary['event_loop']['blocked_ms'] / 1000:.1f} s, "
        f"{summary['event_loop']['episodes']} episodes, "
        f"{summary['sampling']['errors']} py-spy errors"
    )
    return s


_SLOW = re.compile(r"Executing (.*) took ([\d.]+) seconds")


def score_debug(
    cfg: Config, planted: list[Planted], served: dict[str, int], failed: int, log: str
) -> Score:
    """asyncio debug mode: its slow-callback warnings, against the same ground truth."""
    s = Score(cfg, served, failed)
    found = _SLOW.findall(log)
    total_s = sum(float(t) for _, t in found)
    truth_s = sum(served.values()) * cfg.block_ms / 1000
    for p in planted:  # does any message name the planted line or the route's path?
        if any(f"{p.file.name}:{p.line}" in msg for msg, _ in found):
            s.found.append(p.tag)
        if any(p.path.rsplit("/", 1)[0] in msg for msg, _ in found):
            s.line_route.append(p.tag)
    s.errors["all"] = total_s / truth_s - 1 if truth_s else 0.0
    where = sorted({re.sub(r"name='Task-\d+'", "", m)[:90] for m, _ in found})[:2]
    s.extra = f"{len(found)} slow-callback warnings, {total_s:.1f} s; e.g. {where[:1]}"
    return s


def load_for_samples(samples_per_line: int, rate_hz: int, utilization: float) -> float:
    """Seconds of load that give each planted line `samples_per_line` samples on average:
    py-spy samples at exponential intervals, so a line's blocked-time estimate has a
    relative error of 1/sqrt(samples); 700 samples make 2.6 sigma = 10%."""
    per_line_share = utilization / 8
    return samples_per_line / rate_hz / per_line_share


def precision_configs(samples_per_line: int) -> list[Config]:
    """Blocked time at default settings, with runs long enough for the +-10% target to
    be measurable at all, and the healthy twins of the same lengths."""
    load_s = load_for_samples(samples_per_line, 100, 0.3)
    out = [Config(d, load_s=load_s) for d in (30, 100, 300)]
    out += [Config(d, healthy=True, load_s=load_s) for d in (30, 100, 300)]
    return out


def low_rate_configs(load_s: float) -> list[Config]:
    """Blocked time at the rates --max-pause lowers to (10-20 Hz), asgiprof's default mode:
    300 ms blocks (a few samples each) holding the loop 70% of the time."""
    return [Config(300, rate, 0.7, nonblocking=False, load_s=load_s) for rate in (10, 20)]


def scout_configs(scout_hz: int) -> list[Config]:
    """Each planted duration and a healthy twin at 100 Hz --blocking, without and with
    --scout-rate, side by side: what scouting costs in recall and blocked-time error."""
    out = []
    for d, healthy in ((10, False), (30, False), (100, False), (300, False), (100, True)):
        plain = Config(d, healthy=healthy, nonblocking=False)
        out += [plain, replace(plain, scout_hz=scout_hz)]
    return out


def configs(quick: bool) -> list[Config]:
    durations = (10, 30, 100, 300)
    if quick:
        out = [Config(d) for d in durations]
        out += [Config(100, healthy=True)]
        out += [Config(d, nonblocking=False) for d in (30, 100)]
        out += [Config(100, debug_mode=True)]
        return out
    out = [Config(d, rate) for rate in (100, 50, 200) for d in durations]
    out += [Config(d, utilization=0.7) for d in durations]
    out += [Config(d, healthy=True) for d in (30, 300)]
    out += [Config(100, rate, healthy=True) for rate in (50, 200)]
    out += [Config(d, nonblocking=False) for d in durations]
    out += [Config(d, utilization=0.7, nonblocking=False) for d in (30, 100)]
    out += [Config(100, nonblocking=False, healthy=True)]
    out += [Config(d, loop="uvloop") for d in (30, 100)]
    out += [Config(d, debug_mode=True) for d in durations]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 Hz, 12 s of load per run")
    parser.add_argument("--load-seconds", type=float, help="load per run (12 quick, 40 full)")
    parser.add_argument("--lines", action="store_true", help="print every planted line's numbers")
    parser.add_argument("--only", help="comma-separated substrings of run names to keep")
    parser.add_argument(
        "--precision",
        type=int,
        metavar="SAMPLES",
        help="instead: 100 Hz, 30/100/300 ms and healthy twins, each run long enough for "
        "SAMPLES samples per planted line (700: about 3 min per run)",
    )
    parser.add_argument(
        "--low-rates",
        action="store_true",
        help="instead: 300 ms blocks at 10 and 20 Hz, --blocking, 70%% of the time",
    )
    parser.add_argument(
        "--scout-rate",
        type=int,
        metavar="HZ",
        help="instead: 10-300 ms blocks and a healthy twin, --blocking at 100 Hz, each "
        "without and with --scout-rate HZ",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="keep every run's output directory here")
    args = parser.parse_args()
    load_s = args.load_seconds or (12.0 if args.quick else 40.0)
    planted = planted_lines()
    cfgs = precision_configs(args.precision) if args.precision else configs(args.quick)
    if args.low_rates:
        cfgs = low_rate_configs(load_s)
    if args.scout_rate:
        cfgs = scout_configs(args.scout_rate)
    if args.only:
        keep = [k.strip() for k in args.only.split(",")]
        cfgs = [c for c in cfgs if any(k in f"{c.name} {c.block_ms} ms" for k in keep)]
    header("Detection accuracy (planted blocking calls)")
    if args.precision:
        load_s = cfgs[0].load_s or load_s
    print(
        f"{load_s:g} s of paced load per run, 8 planted lines "
        f"(route, dependency, helper module, middleware x io, cpu), threshold "
        f"{THRESHOLD_MS:g} ms, uvicorn --loop asyncio unless noted.\n"
    )
    work = args.keep or Path(tempfile.mkdtemp(prefix="asgiprof-bench-accuracy-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    details: list[str] = []
    line_rows: list[list[object]] = []
    try:
        for i, cfg in enumerate(cfgs):
            t0 = time.monotonic()
            # a config and its --scout-rate twin get the same load (seed)
            seed = args.seed + (i // 2 if args.scout_rate else i)
            s = run(cfg, planted, cfg.load_s or load_s, work, seed)
            errs = [abs(e) for e in s.errors.values()]
            sampled_errs = [abs(e) for e in s.sampled_errors.values()]
            signed = list(s.errors.values())
            twin = f"healthy twin ({cfg.block_ms} ms)" if cfg.healthy else f"{cfg.block_ms} ms"
            n = len(planted)
            rows.append(
                [
                    cfg.name,
                    twin,
                    f"{cfg.utilization:.0%}",
                    f"{median(list(s.served.values())):.0f}",
                    "-" if cfg.healthy else f"{len(s.found)}/{n}",
                    "-"
                    if cfg.healthy
                    else f"{len(s.line_route)}/{n}"
                    + (f" ({len(s.no_route)} null)" if s.no_route else ""),
                    "-" if cfg.healthy or cfg.debug_mode else f"{len(s.kind_ok)}/{n}",
                    f"{median(errs):.1%}" if errs else "-",
                    f"{max(errs):.1%}" if errs else "-",
                    f"{median(signed):+.1%}" if signed else "-",
                    f"{s.coverage:.1%}" if s.coverage else "-",
                    f"{median(sampled_errs):.1%} / {max(sampled_errs):.1%}"
                    if sampled_errs
                    else "-",
                    f"{s.stat_sigma:.1%}" if s.stat_sigma else "-",
                    f"{len(s.false_culprits)} ({s.false_ms:.0f} ms)",
                ]
            )
            label = f"{cfg.name}, {twin}, load {cfg.utilization:.0%}"
            line_rows.extend([label, *row] for row in s.lines)
            details.extend(f"- {label}: {m}" for m in s.misses)
            details.extend(f"- {label}: false culprit {f}" for f in s.false_culprits)
            if s.failed:
                details.append(f"- {label}: {s.failed} planted requests failed")
            details.append(f"- {label}: {s.extra}")
            print(f"  {label}: done in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(
        table(
            [
                "profiler",
                "planted",
                "load",
                "requests/line",
                "recall",
                "line+route",
                "kind",
                "blocked err (median)",
                "blocked err (max)",
                "bias (median signed err)",
                "sampled share",
                "err vs sampled blocks (med / max)",
                "stat 1σ",
                "false culprits",
            ],
            rows,
        )
    )
    print("\nDetails (misses, wrong routes, false culprits, per-run facts):\n")
    print("\n".join(details))
    if args.lines:
        print("\nPer planted line (truth = requests x planted duration):\n")
        heads = ["run", "line", "requests", "truth ms", "in sampled time", "blocked ms"]
        heads += ["episodes", "max ms"]
        print(table([*heads, "kind", "route"], line_rows))


if __name__ == "__main__":
    main()
