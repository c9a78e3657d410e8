"""Target overhead: throughput and p50/p99 latency of a FastAPI app under wrk, unprofiled vs
profiled by asgiprof, bare py-spy, pyinstrument and asyncio debug mode.

    python bench/overhead.py --quick        # ~3 min: 4 A/B pairs of 2 s windows per variant
    python bench/overhead.py                # full: 2 rounds x 6 pairs of 3 s windows (~12 min)
    python bench/overhead.py --polling      # + asgiprof with 10 / 50 / 200 ms CPU polling
    python bench/overhead.py --no-pin       # let everything share all CPUs
    python bench/overhead.py --rounds 10 --pairs 1 --seconds 5 \
        --only "A/A,attach --blocking,attach --nonblocking,py-spy record"  # issue 16

Servers: uvicorn processes serving bench/apps/ref_app.py on 127.0.0.1: A (never profiled),
B (profiled by each profiler in turn), one with the pyinstrument middleware, one with
PYTHONASYNCIODEBUG=1. By default every server is pinned to CPU 0 and wrk, asgiprof and py-spy
to the other CPUs: the numbers are the cost paid by the target, not five processes fighting
over two cores (`--no-pin` shows that case).

For each variant the profiler attaches to B once, then wrk alternates between A and the
variant's server (A B, B A, A B, ...), window after window, so every ratio compares two
adjacent windows and the machine's noise (other jobs, frequency) cancels. The table shows
the median ratio over all pairs with min..max, and the interquartile mean (IQM: the mean of
the middle half of the ratios, as the Scalene paper reports overheads). "unprofiled (A/A)"
is B against A with no profiler: the noise floor and the difference between two server
processes.

On a shared machine other jobs steal the server's CPU in some windows and not others. The
kernel counts that time (/proc/PID/task/*/schedstat: waiting on a run queue), so besides the
raw ratio the table shows the "corrected" throughput ratio, requests / (window - time the
server waited for a CPU): the throughput on an otherwise idle CPU. A profiler's pauses are not
run-queue waits, so they still count against it. Server CPU per request is shown as well.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BENCH,
    NICE,
    PYTHON,
    Server,
    cpu_split,
    fmt,
    header,
    iqm,
    median,
    pinned,
    spread,
    stop_pid,
    table,
    tree_cpu_s,
    wait_for,
)

RATE_HZ = 100
PATH = "/items/42?detail=true"


@dataclass(frozen=True, slots=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    duration_s: float


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> WrkResult:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    m = re.search(r"(\d+) requests in (\S+),", out)
    if m is None:
        raise ValueError(f"unexpected wrk output:\n{out}")
    requests, duration_s = int(m.group(1)), _ms(m.group(2)) / 1000
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(g) for g in m.groups())
    return WrkResult(rps, p50, p99, requests, errors, duration_s)


def run_wrk(url: str, duration_s: float, connections: int, cpus: set[int] | None) -> WrkResult:
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError("wrk only ever targets 127.0.0.1")
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--latency", url]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=duration_s + 30,
        check=True,
        preexec_fn=pinned(cpus),
    )
    return parse_wrk(proc.stdout)


def schedstat(pid: int) -> tuple[float, float]:
    """(CPU seconds, seconds waited on a run queue) summed over the process's threads."""
    cpu = wait = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                run_ns, wait_ns, _ = f.read().split()
        except (OSError, ValueError):
            continue
        cpu += int(run_ns)
        wait += int(wait_ns)
    return cpu / 1e9, wait / 1e9


@dataclass(frozen=True, slots=True)
class Window:
    """One wrk window against one server, with the server's scheduler accounting."""

    wrk: WrkResult
    cpu_s: float  # server CPU during the window
    waited_s: float  # server time runnable but waiting for a CPU (other jobs)

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_s / max(self.wrk.requests, 1) * 1e6

    @property
    def corrected_rps(self) -> float:
        """Requests per second of the window minus the time other jobs held the CPU: the
        throughput on an otherwise idle CPU. Pauses by a profiler are not run-queue waits,
        so they still count against it."""
        return self.wrk.requests / max(self.wrk.duration_s - self.waited_s, 1e-3)


def measure(url: str, pid: int, seconds: float, connections: int, cpus: set[int] | None) -> Window:
    cpu0, wait0 = schedstat(pid)
    res = run_wrk(url, seconds, connections, cpus)
    cpu1, wait1 = schedstat(pid)
    return Window(res, cpu1 - cpu0, wait1 - wait0)


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    server: str  # key into the servers dict
    profiler: str | None = None  # "asgiprof", "py-spy"
    flags: tuple[str, ...] = ()
    poll_s: float | None = None  # asgiprof's CPU polling interval (None: its default)


@dataclass(slots=True)
class Row:
    rps: list[float] = field(default_factory=list)
    corrected: list[float] = field(default_factory=list)  # corrected_rps ratio
    cpu_per_req: list[float] = field(default_factory=list)  # server CPU per request ratio
    waited: list[float] = field(default_factory=list)  # share of window lost to other jobs
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # profiler CPU, share of one core
    abs_rps: list[float] = field(default_factory=list)
    abs_p99: list[float] = field(default_factory=list)
    span_coverage: list[float] = field(default_factory=list)  # asgiprof's, per attach
    notes: list[str] = field(default_factory=list)


class Profiler:
    """A profiler process attached to server B for one variant's windows."""

    def __init__(
        self, variant: Variant, pid: int, work: Path, cpus: set[int] | None, index: int
    ) -> None:
        self.variant = variant
        self.out = work / f"{index:03d}-{re.sub(r'[^a-z0-9]+', '-', variant.name)}"
        self.log = work / f"{self.out.name}.log"
        assert variant.profiler is not None
        if variant.profiler == "asgiprof":
            cmd = [PYTHON, str(BENCH / "_asgiprof_with.py")]
            if variant.poll_s is not None:
                cmd += ["--cpu-interval", str(variant.poll_s)]
            cmd += ["attach", str(pid), "--rate", str(RATE_HZ), "--out", str(self.out)]
        else:
            self.out.mkdir(parents=True)
            pyspy = shutil.which("py-spy", path=str(Path(PYTHON).parent)) or "py-spy"
            cmd = [pyspy, "record", "--rate", str(RATE_HZ), "--idle", "--threads"]
            cmd += ["--subprocesses", "--format", "speedscope", "--pid", str(pid)]
            cmd += ["--output", str(self.out / "profile.speedscope.json")]
        cmd += list(variant.flags)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "COLUMNS": "120"},
                start_new_session=True,
                preexec_fn=pinned(cpus),
            )

    def wait_ready(self) -> None:
        """asgiprof: route table read and py-spy sampling; py-spy: attached. Then settle."""
        alive = self.proc.poll
        if self.variant.profiler == "asgiprof":
            import psutil

            def sampling() -> bool:
                if alive() is not None:
                    raise RuntimeError(f"asgiprof exited: {self.log.read_text()[-2000:]}")

                def is_pyspy(kid: psutil.Process) -> bool:
                    try:  # a py-spy handing over may have just ended (a zombie)
                        return "py-spy" in " ".join(kid.cmdline())
                    except psutil.Error:
                        return False

                kids = psutil.Process(self.proc.pid).children(recursive=True)
                return any(map(is_pyspy, kids)) and (self.out / "routes.json").exists()

            wait_for(sampling, 60, "asgiprof to start sampling")
        time.sleep(1.0)
        if alive() is not None:
            raise RuntimeError(f"{self.variant.name} exited: {self.log.read_text()[-2000:]}")

    def stop(self) -> tuple[str, float | None]:
        """Stop (SIGINT: asgiprof analyses and writes its outputs) and sanity-check; the
        note and asgiprof's span coverage (None for other profilers)."""
        rc = stop_pid(self.proc, timeout_s=120)
        if self.variant.profiler == "asgiprof":
            summary = self.out / "summary.json"
            if rc != 0 or not summary.exists():
                return f"asgiprof rc={rc}: {self.log.read_text()[-300:]}", None
            data = json.loads(summary.read_text())
            s = data["sampling"]
            mode = "nonblocking" if s["nonblocking"] else "blocking"
            note = f"{mode}, {s['samples']} samples, {s['errors']} errors"
            if s.get("pause_share") is not None:
                rates = [c["to_hz"] for c in s["rate_changes"]]
                first = s.get("scout_hz") or s["rate_hz"]  # --scout-rate starts slow
                note += f", paused {s['pause_share']:.1%}, rates {[first, *rates]}"
            return f"{note}, span coverage {s['span_coverage']:.3f}", s["span_coverage"]
        text = self.log.read_text(errors="replace")
        m = re.search(r"Samples: (\d+) Errors: (\d+)", text)
        return (f"{m.group(1)} samples, {m.group(2)} errors" if m else f"rc={rc}"), None


def variants(polling: bool) -> list[Variant]:
    vs = [
        Variant("unprofiled (A/A)", "plain"),
        Variant("asgiprof attach", "plain", "asgiprof"),  # its default mode
        Variant("asgiprof attach --blocking", "plain", "asgiprof", ("--blocking",)),
        Variant("asgiprof attach --nonblocking", "plain", "asgiprof", ("--nonblocking",)),
        Variant("asgiprof attach --max-pause 1", "plain", "asgiprof", ("--max-pause", "1")),
        Variant("asgiprof attach --max-pause 0", "plain", "asgiprof", ("--max-pause", "0")),
        Variant("asgiprof attach --scout-rate 20", "plain", "asgiprof", ("--scout-rate", "20")),
        Variant("asgiprof attach --scout-rate 10", "plain", "asgiprof", ("--scout-rate", "10")),
        # --scout-rate's healthy case without the scout: the last --rate given counts.
        Variant("asgiprof attach --rate 20", "plain", "asgiprof", ("--rate", "20")),
        # The live view reads each chunk in asgiprof while py-spy samples the next one.
        Variant("asgiprof attach --live", "plain", "asgiprof", ("--live",)),
        Variant("py-spy record", "plain", "py-spy"),
        Variant("py-spy record --nonblocking", "plain", "py-spy", ("--nonblocking",)),
        Variant("pyinstrument middleware", "pyinstrument"),
        Variant("PYTHONASYNCIODEBUG=1", "debug"),
    ]
    if polling:
        vs += [
            Variant(f"asgiprof, CPU poll {int(p * 1000)} ms", "plain", "asgiprof", poll_s=p)
            for p in (0.01, 0.05, 0.2)
        ]
    return vs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 4 pairs, 2 s windows")
    parser.add_argument("--rounds", type=int, help="passes over all variants")
    parser.add_argument("--pairs", type=int, help="A/B window pairs per variant and round")
    parser.add_argument("--seconds", type=float, help="wrk window per measurement")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--polling", action="store_true", help="add CPU polling variants")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the server to CPU 0")
    parser.add_argument("--only", help="comma-separated substrings of variant names to keep")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of servers, wrk and profilers (negative needs root): shields the "
        "windows from other jobs on a shared machine",
    )
    args = parser.parse_args()
    NICE[0] = args.nice
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    rounds = args.rounds or (1 if args.quick else 2)
    pairs = args.pairs or (4 if args.quick else 6)
    seconds = args.seconds or (2.0 if args.quick else 3.0)
    target_cpus, other_cpus = cpu_split(not args.no_pin)
    vs = variants(args.polling)
    if args.only:
        keep = [k.strip() for k in args.only.split(",")]
        vs = [v for v in vs if any(k in v.name for k in keep)]

    header("Target overhead (reference FastAPI app under wrk)")
    pin = "servers on CPU 0, wrk and profilers on the others" if target_cpus else "unpinned"
    print(
        f"wrk -t1 -c{args.connections} -d{seconds:g}s GET {PATH}; {rounds} round(s) x {pairs} "
        f"A/B pairs per variant; uvicorn --loop asyncio, 1 process; {RATE_HZ} Hz; {pin}.\n"
    )
    work = Path(tempfile.mkdtemp(prefix="asgiprof-bench-overhead-"))
    envs = {
        "A": {},
        "plain": {},
        "pyinstrument": {"BENCH_PYINSTRUMENT": "1"},
        "debug": {"PYTHONASYNCIODEBUG": "1"},
    }
    needed = {"A"} | {v.server for v in vs}
    servers = {
        k: Server("ref_app", work / f"server-{k}.log", env=envs[k], cpus=target_cpus)
        for k in sorted(needed)
    }
    rows = {v.name: Row() for v in vs}
    index = 0
    try:
        for s in servers.values():
            s.start()
        for s in servers.values():  # warm up: imports, pydantic caches, connection setup
            run_wrk(s.url + PATH, 2, args.connections, other_cpus)

        for r in range(rounds):
            for v in vs[r % len(vs) :] + vs[: r % len(vs)]:
                index += 1
                server = servers[v.server]
                prof = None
                if v.profiler is not None:
                    prof = Profiler(v, server.pid, work, other_cpus, index)
                    prof.wait_ready()
                row = rows[v.name]
                cpu_s = busy_s = 0.0
                try:
                    for p in range(pairs):
                        got: dict[str, Window] = {}
                        for which in ("A", "B") if (r + p) % 2 == 0 else ("B", "A"):
                            srv = servers["A"] if which == "A" else server
                            cpu0 = tree_cpu_s(prof.proc.pid) if prof else 0.0
                            t0 = time.monotonic()
                            got[which] = measure(
                                srv.url + PATH, srv.pid, seconds, args.connections, other_cpus
                            )
                            if prof and which == "B":
                                cpu_s += tree_cpu_s(prof.proc.pid) - cpu0
                                busy_s += time.monotonic() - t0
                        wa, wb = got["A"], got["B"]
                        a, b = wa.wrk, wb.wrk
                        row.rps.append(b.rps / a.rps)
                        row.corrected.append(wb.corrected_rps / wa.corrected_rps)
                        row.cpu_per_req.append(wb.cpu_us_per_request / wa.cpu_us_per_request)
                        row.waited.append(
                            (wa.waited_s + wb.waited_s) / (a.duration_s + b.duration_s)
                        )
                        row.p50.append(b.p50_ms / a.p50_ms)
                        row.p99.append(b.p99_ms / a.p99_ms)
                        row.abs_rps.append(b.rps)
                        row.abs_p99.append(b.p99_ms)
                        if a.errors or b.errors:
                            row.notes.append(f"wrk errors A {a.errors} B {b.errors}")
                finally:
                    note, span = prof.stop() if prof else ("", None)
                if span is not None:
                    row.span_coverage.append(span)
                if prof and busy_s:
                    row.cpu.append(cpu_s / busy_s)
                if note:
                    row.notes.append(note)
                last = row.rps[-pairs:]
                print(
                    f"  round {r + 1} {v.name}: throughput x{median(last):.3f} "
                    f"({spread(last)}) corrected x{median(row.corrected[-pairs:]):.3f} "
                    f"p99 x{median(row.p99[-pairs:]):.3f} "
                    f"lost to other jobs {median(row.waited[-pairs:]):.0%} {note}",
                    file=sys.stderr,
                )
    finally:
        for s in servers.values():
            s.stop()

    # Servers A and B are two processes of one app, yet differ by a few percent (memory
    # layout): "÷ A/A" divides a server-B variant's ratios by the A/A ratios to cancel that.
    aa = rows.get("unprofiled (A/A)")
    aa_rps = median(aa.corrected) if aa and aa.corrected else None
    aa_p99 = median(aa.p99) if aa and aa.p99 else None
    aa_iqm = iqm(aa.corrected) if aa and aa.corrected else None
    aa_p99_iqm = iqm(aa.p99) if aa and aa.p99 else None
    out_rows = []
    for v in vs:
        row = rows[v.name]
        on_b = v.server == "plain" and v.profiler is not None
        out_rows.append(
            [
                v.name,
                f"{median(row.corrected) / aa_rps:.3f}" if on_b and aa_rps else "-",
                f"{iqm(row.corrected) / aa_iqm:.3f}" if on_b and aa_iqm else "-",
                f"{median(row.p99) / aa_p99:.3f}" if on_b and aa_p99 else "-",
                f"{iqm(row.p99) / aa_p99_iqm:.3f}" if on_b and aa_p99_iqm else "-",
                f"{iqm(row.corrected):.3f}",
                f"{median(row.rps):.3f} ({spread(row.rps)})",
                f"{median(row.corrected):.3f} ({spread(row.corrected)})",
                f"{median(row.p50):.3f} ({spread(row.p50)})",
                f"{median(row.p99):.3f} ({spread(row.p99)})",
                f"{median(row.abs_rps):.0f}",
                f"{median(row.abs_p99):.1f}",
                f"{median(row.cpu_per_req):.3f}",
                f"{median(row.cpu) * 100:.1f}%" if row.cpu else "-",
                f"{median(row.waited):.0%}",
                f"{min(row.span_coverage):.3f}" if row.span_coverage else "-",
                row.notes[-1] if row.notes else "",
            ]
        )
    print(
        table(
            [
                "variant",
                "corrected throughput ÷ A/A",
                "IQM ÷ A/A IQM",
                "p99 ÷ A/A",
                "p99 IQM ÷ A/A IQM",
                "corrected throughput ratio, IQM",
                "throughput ratio, median (min..max)",
                "corrected throughput ratio",
                "p50 ratio",
                "p99 ratio",
                "req/s (B)",
                "p99 ms (B)",
                "server CPU/request ratio",
                "profiler CPU",
                "lost to other jobs",
                "span coverage (min)",
                "last run",
            ],
            out_rows,
        )
    )
    ratios = {v.name: iqm(rows[v.name].corrected) for v in vs}
    print()
    for mode, pyspy in (
        ("--blocking", "py-spy record"),
        ("--nonblocking", "py-spy record --nonblocking"),
    ):
        ours = f"asgiprof attach {mode}"
        if ours in ratios and pyspy in ratios:
            gap = (ratios[pyspy] - ratios[ours]) * 100
            print(
                f"asgiprof vs bare py-spy ({mode}): {gap:+.1f} points of corrected throughput (IQM)"
            )
    n = rounds * pairs
    print(f"({n} pairs of {fmt(seconds, 0)} s windows per variant; latency ratios > 1: slower)")
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} (1, 5, 15 min)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
