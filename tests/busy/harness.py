"""Profile the busy app (tests/busy/app.py) with asgiprof under saturating wrk load and
score asgiprof's summary.json against the truth the app measured itself (truth.py).

`run_scenario(Scenario(...), work_dir)` serves the upstream and the app, profiles the app
with `python -m asgiprof run ... -- python -m uvicorn ...` or `asgiprof attach PID`
(`--loop asyncio|uvloop`), drives `wrk -t1 -cN` with a Lua script rotating over the
routes, stops everything by PID and returns a `Score`. Sampling is bounded by `--duration`
and ended with one Ctrl-C (SIGINT) once the load is over, so the sampled time is the load
window plus startup, not idle tail. Truth is restricted to what py-spy sampled: a planted
call counts by its overlap with the chunks' spans, a route's time by the requests that
ended inside the sampled window.
"""

from __future__ import annotations

import ast
import functools
import linecache
import math
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from asgiprof.record.loadgen import free_port
from tests.postgres import PostgresServer
from tests.profiling import Finished, finish, start_asgiprof, wait_until_serving
from tests.servers import HOST, ServerProcess
from tests.targets import wait_for_pyspy

REPO = Path(__file__).resolve().parents[2]
APP_FILE = REPO / "tests" / "busy" / "app.py"
APP_MODULE = "tests.busy.app"
WRK = shutil.which("wrk") or "/usr/bin/wrk"

# The routes wrk rotates over (one request each per turn, in this order).
CLEAN_PATHS = (
    "/items/7",
    "/items?page=3",
    "/me",
    "/categories/books",
    "/quotes/11",
    "/health",
    "/items/42",
    "/categories/tools",
    "/quotes/5",
    "/items?page=1",
)
PLANTED_PATHS = (
    "/export/books",
    "/ranking",
    "/login/pbkdf2",
    "/login/bcrypt",
    "/login/argon2",
    "/reports/toys",
)
# A culprit at such a line is at an `await`, `async with` or `async for`: a coroutine
# suspending there runs nothing synchronous of its own.
AWAIT_LINE = re.compile(r"\bawait\b|^\s*async\s+(?:with|for)\b")
BLOCKING_FINDING = "blocks the event loop"
LONG_STEP_MS = 20.0  # asgiprof's default block threshold

Variant = Literal["clean", "planted"]
Mode = Literal["run", "attach"]
LoopName = Literal["asyncio", "uvloop"]
Database = Literal["sqlite", "postgres"]


@dataclass(frozen=True, slots=True)
class Scenario:
    variant: Variant
    mode: Mode
    loop: LoopName
    load_s: float = 10.0
    connections: int = 12
    rate_hz: int = 100
    # postgres: asyncpg on a throwaway PostgreSQL (tests/postgres.py), clean variant only
    db: Database = "sqlite"
    # more asgiprof options, e.g. ("--nonblocking",) (bench/busy_accuracy.py --modes)
    flags: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        suffix = "-asyncpg" if self.db == "postgres" else ""
        flags = "".join(f"-{f.lstrip('-')}" for f in self.flags)
        return f"{self.variant}-{self.mode}-{self.loop}{suffix}{flags}"


# ------------------------------------------------------------------------------ scoring


@dataclass(frozen=True, slots=True)
class LineScore:
    """One planted line: the truth the app timed beside what asgiprof says about it."""

    tag: str
    file: str
    line: int
    code: str
    stated_kind: str  # what the app says it is
    cpu_ratio: float  # thread CPU time / wall time over its calls, measured by the app
    runnable_ratio: float  # (CPU + waiting for a CPU) / wall time: kind despite starvation
    routes: tuple[str, ...]  # routes whose requests ran it, most calls first
    calls: int
    truth_ms: float  # summed call time inside the sampled chunks
    rate_hz: int
    found: bool
    culprit_route: str | None = None
    culprit_routes: tuple[str, ...] = ()
    blocked_ms: float = 0.0
    kind: str | None = None  # asgiprof's

    @property
    def truth_kind(self) -> str:
        """What the planted call is (the app says; `runnable_ratio` is shown beside it,
        not used: pure-Python CPU work waiting for the GIL held by the app's other threads
        sleeps, so on a busy app it can read as low as 0.35 though it never waits on I/O)."""
        return self.stated_kind

    @property
    def sd_ms(self) -> float:
        """Sampling sd of a blocked-time estimate: Poisson count of samples in truth_ms."""
        return math.sqrt(max(self.truth_ms, 1e-9) / 1000 * self.rate_hz) / self.rate_hz * 1000

    @property
    def error(self) -> float:
        return self.blocked_ms / self.truth_ms - 1.0 if self.truth_ms > 0 else float("nan")

    @property
    def z(self) -> float:
        return (self.blocked_ms - self.truth_ms) / self.sd_ms

    @property
    def route_ok(self) -> bool:
        """Its culprit names a route that ran it, and lists every route that did."""
        if not self.found or self.culprit_route not in self.routes:
            return False
        return set(self.routes) <= set(self.culprit_routes) | {self.culprit_route}

    @property
    def kind_ok(self) -> bool:
        return self.found and self.kind == self.truth_kind


@dataclass(frozen=True, slots=True)
class RouteCost:
    route: str
    requests: int
    truth_ms: float  # loop time of the route's requests (the oracle's step sums)
    loop_ms: float | None  # asgiprof's loop_ms + threadpool_ms, None when not listed

    @property
    def error(self) -> float:
        if self.loop_ms is None or self.truth_ms <= 0:
            return float("nan")
        return self.loop_ms / self.truth_ms - 1.0


@dataclass(slots=True)
class Score:
    scenario: Scenario
    out: Path
    summary: dict[str, Any]
    requests: int  # wrk's count
    sampled_ms: float  # the loop's sampled time (busy + idle)
    lines: list[LineScore] = field(default_factory=list)
    # Lines the app times that are real work, not planted (`# timed: TAG`): a culprit there
    # is no invention; shown beside the planted ones, not in recall.
    timed_lines: list[LineScore] = field(default_factory=list)
    false_culprits: list[dict[str, Any]] = field(default_factory=list)
    await_culprits: list[dict[str, Any]] = field(default_factory=list)
    blocking_findings: list[str] = field(default_factory=list)
    routes: list[RouteCost] = field(default_factory=list)
    long_steps: list[dict[str, Any]] = field(default_factory=list)  # truth, >= 20 ms
    truth_busy_ms: float = 0.0  # the oracle's step time in the sampled window
    loop_cpu_ms: float = 0.0  # the loop thread's CPU time in the window (schedstat)
    loop_runq_ms: float = 0.0  # ... and its time waiting for a CPU
    window_ms: float = 0.0  # first chunk start to last chunk end

    @property
    def culprits(self) -> list[dict[str, Any]]:
        return list(self.summary["culprits"])

    @property
    def culprit_share(self) -> float:
        total = sum(c["blocked_ms"] for c in self.culprits)
        return total / self.sampled_ms if self.sampled_ms > 0 else float("nan")

    @property
    def truth_utilization(self) -> float:
        """The oracle's busy share of the sampled window (task steps only on uvloop)."""
        return self.truth_busy_ms / self.window_ms if self.window_ms > 0 else float("nan")

    @property
    def utilization(self) -> float:
        return float(self.summary["event_loop"]["utilization"])

    @property
    def recall(self) -> tuple[int, int]:
        """(planted lines found at their line and route, planted lines that ran)."""
        return sum(1 for s in self.lines if s.route_ok), len(self.lines)

    @property
    def kind_accuracy(self) -> tuple[int, int]:
        found = [s for s in self.lines if s.found]
        return sum(1 for s in found if s.kind_ok), len(found)

    @property
    def missing_routes(self) -> list[str]:
        return [r.route for r in self.routes if r.loop_ms is None]

    def explain(self) -> str:
        """Everything a failing assertion needs, one line per fact."""
        loop = self.summary["event_loop"]
        lines = [
            f"{self.scenario.name}: {self.requests} requests, utilization "
            f"{loop['utilization']:.2f} (oracle {self.truth_utilization:.2f}), sampled "
            f"{self.sampled_ms:.0f} ms, culprits "
            f"{len(self.culprits)} = {self.culprit_share:.1%} of sampled time, "
            f"{loop['episodes']} episodes, truth long steps (>= {LONG_STEP_MS:.0f} ms) "
            f"{len(self.long_steps)}",
        ]
        lines.extend(
            f"  culprit #{c['rank']} {c['file']}:{c['line']} {c['blocked_ms']:.0f} ms "
            f"{c['episodes']} ep kind {c['kind']} route {c['route']} | {source(c)}"
            for c in self.culprits
        )
        long_ms = sum(step["ms"] for step in self.long_steps)
        long_cpu = sum(step["cpu_ms"] for step in self.long_steps)
        lines.append(
            f"  oracle: loop steps {self.truth_busy_ms:.0f} ms, loop thread CPU "
            f"{self.loop_cpu_ms:.0f} ms, waiting for a CPU {self.loop_runq_ms:.0f} ms; "
            f"{len(self.long_steps)} steps >= {LONG_STEP_MS:.0f} ms: {long_ms:.0f} ms, "
            f"of it CPU {long_cpu:.0f} ms"
        )
        lines.extend(_line_text(s) for s in self.lines)
        lines.extend(_line_text(s, "timed") for s in self.timed_lines)
        lines.extend(f"  finding: {f}" for f in self.blocking_findings)
        lines.extend(
            f"  route {r.route}: {r.requests} req, truth {r.truth_ms:.0f} ms, "
            + ("MISSING" if r.loop_ms is None else f"{r.loop_ms:.0f} ms ({r.error:+.1%})")
            for r in self.routes
        )
        lines.extend(
            f"  long step {step['ms']:.0f} ms (cpu {step['cpu_ms']:.0f}) {step['route']} "
            f"{step['what']}"
            for step in self.long_steps[:8]
        )
        return "\n".join(lines)


def _line_text(s: LineScore, what: str = "planted") -> str:
    truth = (
        f"  {what} {s.tag} line {s.line}: truth {s.truth_ms:.0f} ms ({s.calls} calls, "
        f"{s.truth_kind}, cpu {s.cpu_ratio:.2f}, runnable {s.runnable_ratio:.2f}) asgiprof "
    )
    if not s.found:
        return truth + "NOT FOUND"
    return truth + (
        f"{s.blocked_ms:.0f} ms ({s.error:+.1%}, z {s.z:+.1f}) kind {s.kind} route "
        f"{s.culprit_route} {'ok' if s.route_ok else 'WRONG'} (truth {list(s.routes)})"
    )


def source(culprit: dict[str, Any]) -> str:
    """The culprit's source line, read from its file (the summary's `code` as fallback)."""
    text = linecache.getline(str(culprit["file"]), int(culprit["line"]))
    return (text or culprit.get("code") or "").strip()


@functools.lru_cache(maxsize=64)
def _statements(file: str) -> tuple[ast.stmt, ...]:
    try:
        tree = ast.parse(Path(file).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return ()
    return tuple(node for node in ast.walk(tree) if isinstance(node, ast.stmt))


_BODIES = ("body", "orelse", "finalbody", "handlers", "cases")


def _header_nodes(stmt: ast.stmt) -> list[ast.AST]:
    """The statement without the statements nested in it (a compound's header)."""
    return [
        child
        for name, value in ast.iter_fields(stmt)
        if name not in _BODIES
        for child in (value if isinstance(value, list) else [value])
        if isinstance(child, ast.AST)
    ]


def is_await_line(culprit: dict[str, Any]) -> bool:
    """Is the culprit's line part of a statement that awaits (`await` anywhere in it, also
    when py-spy names a continuation line of a multi-line call) or the header of an
    `async with` / `async for`? Falls back to the line's text when the file won't parse."""
    file, line = str(culprit["file"]), int(culprit["line"])
    around = [
        s
        for s in _statements(file)
        if s.lineno <= line <= (s.end_lineno or s.lineno)
        and not any(line >= b.lineno for b in getattr(s, "body", [])[:1])
    ]
    if not around:
        return AWAIT_LINE.search(source(culprit)) is not None
    stmt = min(around, key=lambda s: (s.end_lineno or s.lineno) - s.lineno)
    if isinstance(stmt, (ast.AsyncWith, ast.AsyncFor)):
        return True
    return any(
        isinstance(node, ast.Await) for part in _header_nodes(stmt) for node in ast.walk(part)
    )


def read_truth(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def chunk_spans(out: Path, started_at: float) -> list[tuple[float, float]]:
    """(start, end) unix seconds of every py-spy chunk, in order."""
    spans = []
    for meta_file in (out / "raw").glob("chunk-*[0-9].json"):
        meta = orjson.loads(meta_file.read_bytes())
        spans.append((started_at + float(meta["start_s"]), started_at + float(meta["end_s"])))
    return sorted(spans)


def _overlap(start: float, end: float, spans: Sequence[tuple[float, float]]) -> float:
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in spans)


def planted_marks(path: Path = APP_FILE, mark: str = "planted") -> dict[str, int]:
    """tag -> line of every `# planted: TAG` mark in the app (`mark="timed"`: the lines
    the app times that are real work but no planted mistake)."""
    marks = {}
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        found = re.search(rf"# {mark}: (\S+)\s*$", text)
        if found:
            marks[found.group(1)] = number
    return marks


def score(scenario: Scenario, out: Path, truth: list[dict[str, Any]], requests: int) -> Score:
    summary: dict[str, Any] = orjson.loads((out / "summary.json").read_bytes())
    meta = orjson.loads((out / "meta.json").read_bytes())
    spans = chunk_spans(out, float(meta["sampling"]["started_at"]))
    window = (spans[0][0], spans[-1][1]) if spans else (0.0, 0.0)
    loop = summary["event_loop"]
    rate = int(summary["sampling"]["rate_hz"])
    result = Score(scenario, out, summary, requests, float(loop["busy_ms"] + loop["idle_ms"]))

    # planted lines
    marks = planted_marks()
    timed = planted_marks(mark="timed")
    calls: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in truth:
        if rec["type"] == "planted":
            calls[rec["tag"]].append(rec)
    culprit_by_line = {(Path(c["file"]).resolve(), c["line"]): c for c in summary["culprits"]}
    planted_at = {(APP_FILE.resolve(), line) for line in marks.values()}
    timed_at = {(APP_FILE.resolve(), line) for line in timed.values()}
    for tag, recs in sorted(calls.items()):
        inside = [
            (r, _overlap(r["t"], r["t"] + r["ms"] / 1000, spans) * 1000)
            for r in recs
            if _overlap(r["t"], r["t"] + r["ms"] / 1000, spans) > 0
        ]
        if not inside:
            continue
        line = marks.get(tag) or timed[tag]
        per_route: dict[str, int] = defaultdict(int)
        for r, _ in inside:
            per_route[str(r["route"])] += 1
        wall = sum(r["ms"] for r, _ in inside)
        c = culprit_by_line.get((APP_FILE.resolve(), line))
        (result.lines if tag in marks else result.timed_lines).append(
            LineScore(
                tag=tag,
                file=str(APP_FILE),
                line=line,
                code=linecache.getline(str(APP_FILE), line).strip(),
                stated_kind=str(inside[0][0]["kind"]),
                cpu_ratio=sum(r["cpu_ms"] for r, _ in inside) / wall if wall else 0.0,
                runnable_ratio=sum(r["runnable_ms"] for r, _ in inside) / wall if wall else 0.0,
                routes=tuple(sorted(per_route, key=lambda k: -per_route[k])),
                calls=len(inside),
                truth_ms=sum(ms for _, ms in inside),
                rate_hz=rate,
                found=c is not None,
                culprit_route=None if c is None else c["route"],
                culprit_routes=() if c is None else tuple(c.get("routes") or ()),
                blocked_ms=0.0 if c is None else float(c["blocked_ms"]),
                kind=None if c is None else c["kind"],
            )
        )
    for c in summary["culprits"]:
        if (Path(c["file"]).resolve(), c["line"]) not in planted_at | timed_at:
            result.false_culprits.append(c)
        if is_await_line(c):
            result.await_culprits.append(c)
    result.blocking_findings = [
        f"{f['kind']}: {f['title']}"
        for f in summary.get("findings", [])
        if BLOCKING_FINDING in f["title"].lower() or f["kind"] == "blocking-dependency"
    ]

    # routes: requests that ended inside the sampled window
    truth_routes: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    result.window_ms = (window[1] - window[0]) * 1000
    for rec in truth:
        if rec["type"] != "routes" or rec["t1"] <= window[0] or rec["t0"] >= window[1]:
            continue
        result.truth_busy_ms += rec["other"][0] + sum(v[0] for v in rec["routes"].values())
        result.loop_cpu_ms += rec.get("loop_cpu_ms", 0.0)
        result.loop_runq_ms += rec.get("loop_runq_ms", 0.0)
        for route, (ms, _steps, n) in rec["routes"].items():
            truth_routes[route][0] += ms
            truth_routes[route][1] += n
    listed = {r["route"]: r for r in summary["routes"]}
    for route, (ms, n) in sorted(truth_routes.items(), key=lambda kv: -kv[1][0]):
        if route == "unrouted" or n == 0:
            continue
        row = listed.get(route)
        est = None if row is None else float(row["loop_ms"] + row["threadpool_ms"])
        result.routes.append(RouteCost(route, int(n), ms, est))

    result.long_steps = sorted(
        (
            rec
            for rec in truth
            if rec["type"] == "step"
            and rec["ms"] >= LONG_STEP_MS
            and _overlap(rec["t"], rec["t"] + rec["ms"] / 1000, spans) > 0
        ),
        key=lambda rec: -rec["ms"],
    )
    return result


def median_abs_error(lines: Sequence[LineScore]) -> float:
    errors = [abs(s.error) for s in lines if s.found]
    return statistics.median(errors) if errors else float("nan")


# ------------------------------------------------------------------------------ processes


def wrk_script(paths: Sequence[str], path: Path) -> Path:
    """A Lua script sending `paths` in turn, per wrk thread."""
    quoted = ", ".join(f'"{p}"' for p in paths)
    path.write_text(
        f"local paths = {{{quoted}}}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i % #paths + 1\n"
        '  return wrk.format("GET", paths[i])\n'
        "end\n",
        encoding="utf-8",
    )
    return path


def run_wrk(url: str, paths: Sequence[str], seconds: float, connections: int, work: Path) -> int:
    """Saturating load for `seconds`; the number of requests wrk completed."""
    if not url.startswith(f"http://{HOST}:"):
        raise ValueError("wrk only ever targets 127.0.0.1")
    script = wrk_script(paths, work / "rotate.lua")
    cmd = [WRK, "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script), url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=seconds + 20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)
        raise AssertionError(f"wrk did not end within {seconds + 20} s") from None
    (work / "wrk.txt").write_text(out, encoding="utf-8")
    found = re.search(r"(\d+) requests in", out)
    if proc.returncode != 0 or found is None:
        raise AssertionError(f"wrk failed ({proc.returncode}):\n{out}")
    return int(found.group(1))


def _seed(url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"from {APP_MODULE} import seed; seed({url!r})"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise AssertionError(f"seeding the database failed:\n{done.stderr}")


def _stop_asgiprof(proc: subprocess.Popen[str], timeout_s: float) -> Finished:
    """One Ctrl-C: asgiprof stops sampling, analyses and writes everything."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    return finish(proc, timeout_s)


def run_scenario(scenario: Scenario, work: Path) -> Score:
    """Serve, profile under load, stop by PID, score. `work` holds every file made."""
    if scenario.db == "sqlite":
        return _run_scenario(scenario, work, {})
    if scenario.variant != "clean":
        raise ValueError("the asyncpg variant is clean only (its planted sqlite query)")
    with PostgresServer() as pg:
        return _run_scenario(scenario, work, {"postgres": pg.dsn.removeprefix("postgresql://")})


def _run_scenario(scenario: Scenario, work: Path, pg: dict[str, str]) -> Score:
    work.mkdir(parents=True, exist_ok=True)
    out = work / "out"
    truth_file = work / "truth.jsonl"
    db = work / "busy.sqlite"
    if pg:
        _seed(f"postgresql+psycopg2://{pg['postgres']}")
    else:
        _seed(f"sqlite:///{db}")
    paths = CLEAN_PATHS + (PLANTED_PATHS if scenario.variant == "planted" else ())
    bound_s = scenario.load_s + 40.0  # --duration: a bound; Ctrl-C ends sampling sooner
    upstream = ServerProcess(
        "tests.busy.upstream",
        cwd=REPO,
        log_dir=work,
        ready_path="/health",
        extra_args=("--log-level", "warning"),
    ).start()
    try:
        env = {
            "ASGIPROF_TRUTH": str(truth_file),
            "BUSY_DB": str(db),
            **({"BUSY_DB_URL": f"postgresql+asyncpg://{pg['postgres']}"} if pg else {}),
            "BUSY_UPSTREAM": upstream.url,
            "BUSY_PLANTED": "1" if scenario.variant == "planted" else "0",
        }
        if scenario.mode == "run":
            port = free_port()
            command = [
                *(sys.executable, "-m", "uvicorn", f"{APP_MODULE}:app"),
                *("--host", HOST, "--port", str(port), "--loop", scenario.loop),
            ]
            proc = start_asgiprof(
                *("run", "--duration", f"{bound_s:g}", "--rate", str(scenario.rate_hz)),
                *scenario.flags,
                *("--out", str(out), "--", *command),
                cwd=REPO,
                env=env,
            )
            try:
                wait_for_pyspy(proc, 60.0)
                wait_until_serving(port, timeout_s=60.0, path="/health")
                requests = run_wrk(
                    f"http://{HOST}:{port}", paths, scenario.load_s, scenario.connections, work
                )
                done = _stop_asgiprof(proc, 180.0)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate(timeout=10)
        else:
            server = ServerProcess(
                APP_MODULE,
                cwd=REPO,
                log_dir=work,
                loop=scenario.loop,
                env=env,
                ready_path="/health",
                start_timeout_s=60.0,
            ).start()
            try:
                proc = start_asgiprof(
                    *("attach", str(server.pid), "--duration", f"{bound_s:g}"),
                    *("--rate", str(scenario.rate_hz), "--out", str(out)),
                    *scenario.flags,
                    cwd=REPO,
                )
                try:
                    wait_for_pyspy(proc, 60.0)
                    requests = run_wrk(
                        server.url, paths, scenario.load_s, scenario.connections, work
                    )
                    time.sleep(0.3)  # the last responses leave the loop
                    done = _stop_asgiprof(proc, 180.0)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.communicate(timeout=10)
            finally:
                server.stop()
    finally:
        upstream.stop()
    (work / "asgiprof.txt").write_text(done.stdout + "\n" + done.stderr, encoding="utf-8")
    if done.returncode != 0:
        raise AssertionError(f"asgiprof exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return score(scenario, out, read_truth(truth_file), requests)
