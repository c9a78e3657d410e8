"""The pipeline behind `run` and `attach`: record into OUT, then report (report.py).

record: target + sampler + resource monitor + route table -> OUT (raw files as they come)
report: OUT -> Profile -> Analysis -> summary.json, folded, speedscope, report.html

Signals while collecting: the first Ctrl-C (or SIGTERM, SIGHUP) stops sampling, stops a
launched server gracefully or detaches, then analyses and writes everything; a second
Ctrl-C kills py-spy and a launched server at once. Whatever happens, a launched server,
its workers and py-spy end with asgiprof, and an attached target runs on.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.live import Live
from rich.text import Text

from asgiprof import store
from asgiprof.analyze.loop import LoopClassifier
from asgiprof.analyze.result import Analysis, AnalysisParams
from asgiprof.errors import (
    AsgiprofError,
    CorruptProfileError,
    NotAsgiServerError,
    StartupInterrupted,
    UsageError,
)
from asgiprof.live import LiveView
from asgiprof.model import (
    Frame,
    Interner,
    LoadStop,
    Profile,
    RouteTable,
    SamplingInfo,
    TargetInfo,
)
from asgiprof.record.command import ServerCommand, find_target_python, parse_server_command
from asgiprof.record.gil_sampler import GilConfig, GilSampler
from asgiprof.record.load_run import LoadRunner, LoadSpec
from asgiprof.record.resources import ResourceMonitor
from asgiprof.record.routes import read_route_table_for
from asgiprof.record.sampler import (
    DEFAULT_MAX_PAUSE,
    MIN_RATE_HZ,
    Sampler,
    SamplerConfig,
    check_pyspy,
    find_pyspy,
)
from asgiprof.record.server_log import LogTail
from asgiprof.record.target import (
    Target,
    attach,
    kill_launched,
    launch,
    nonblocking_keeps_thread_ids,
    resume_if_stopped,
    runs_uvloop,
    startup_failure,
    stop_launched,
    stopped_pids,
)
from asgiprof.redact import redact
from asgiprof.report import render
from asgiprof.scout import ScoutPolicy
from asgiprof.store.pyspy import parse_chunk
from asgiprof.text import terminal_safe


@dataclass(frozen=True, slots=True)
class ProfileOptions:
    duration_s: float | None = None  # None: until Ctrl-C or the target exits
    out: Path | None = None
    rate_hz: int = 100
    open_browser: bool = False
    params: AnalysisParams = AnalysisParams()
    chunk_s: int = 2  # short chunks: less lost on a crash, sample times good to ~0.1 s
    # py-spy pauses the target for each sample: --nonblocking costs ~1% of throughput
    # instead of 5-35%, but on a saturated busy app py-spy then fails 20-30% of its reads
    # and tears up to half of the loop's samples, and blocked time and route costs read
    # measurably worse (bench/README.md "Sampling mode"): trust first.
    nonblocking: bool = False
    # The most of the time py-spy may hold the target paused (0: no limit; see SamplerConfig).
    max_pause: float = DEFAULT_MAX_PAUSE
    # --scout-rate: sample at this rate while the loop holds no line still, at `rate_hz`
    # while it does (0: always `rate_hz`; see analyze/scout.py).
    scout_hz: int = 0
    ready_timeout_s: float = 30.0
    # Stop with NotAsgiServerError when the first chunk shows no event-loop thread.
    require_event_loop: bool = True
    # Load to drive once the server listens; sampling stops when it ends (--load).
    load: LoadSpec | None = None
    # Short py-spy --gil windows beside the sampling: which thread held the GIL.
    gil_windows: bool = True
    # `--app module:attr`: the app whose route table to read, when the command line does
    # not name it (`python serve.py` calling `uvicorn.run(app)`) or names another.
    app_spec: str | None = None
    # The live panel while sampling; None: on when the terminal (stderr) is one.
    live: bool | None = None
    # attach: the server's access log file; None: its stdout/stderr when they are files.
    access_log: Path | None = None

    def check(self) -> None:
        """Raise UsageError for options that cannot go together."""
        if self.load is not None:
            self.load.check()
        if not self.scout_hz:
            return
        if self.scout_hz < MIN_RATE_HZ:
            raise UsageError(
                f"--scout-rate {self.scout_hz} is below the sampler's floor of "
                f"{MIN_RATE_HZ} Hz: give {MIN_RATE_HZ} or more (or 0: no scouting)"
            )
        if self.scout_hz >= self.rate_hz:
            raise UsageError(
                f"--scout-rate {self.scout_hz} is not below --rate {self.rate_hz}: the scout "
                "rate is the slow one, e.g. --rate 100 --scout-rate 20"
            )
        if self.nonblocking:
            raise UsageError(
                "--scout-rate lowers the rate to pause the target less; --nonblocking does "
                "not pause it: use one of them"
            )


class _Stop:
    """First Ctrl-C / SIGTERM / SIGHUP: stop gracefully. A second one, or one once sampling
    has ended (while stopping the server, analysing, writing): abort at once."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = "duration"
        self.abort: Callable[[], None] = lambda: None

    def request(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()

    @contextmanager
    def handlers(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if self.event.is_set():  # a second signal, or one after sampling ended
                self.abort()
                raise KeyboardInterrupt
            self.request("interrupt")

        caught = [signal.SIGINT, signal.SIGTERM]
        if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:
            caught.append(signal.SIGHUP)  # the terminal closed: still write the report
        old = {sig: signal.signal(sig, on_signal) for sig in caught}
        try:
            yield
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)


OnReady = Callable[[Target], Callable[[], None]]


def _usable_pyspy() -> str:
    """Find py-spy and check that it runs, before anything is started or written."""
    pyspy = find_pyspy()
    check_pyspy(pyspy)
    return pyspy


def run_server(
    argv: list[str],
    options: ProfileOptions,
    console: Console,
    *,
    cwd: Path | None = None,
    on_ready: OnReady | None = None,
) -> Analysis:
    """Launch `argv`, profile it, stop it. `on_ready(target)` runs once the server listens
    (the demo starts its load there) and returns what to call when sampling stops."""
    if not argv:
        raise UsageError("no server command given: asgiprof run -- uvicorn app:app")
    options.check()
    pyspy = _usable_pyspy()
    out = store.prepare_out_dir(options.out or store.default_out_dir())
    console.print(Text(terminal_safe(f"starting: {' '.join(redact(argv))}")), style="dim")
    try:
        target = launch(
            argv,
            log_path=out / store.SERVER_LOG,
            ready_timeout_s=options.ready_timeout_s,
            cwd=cwd,
        )
    except AsgiprofError:
        store.discard_if_empty(out)
        raise
    except KeyboardInterrupt:  # launch() has stopped the server already
        store.discard(out)
        raise StartupInterrupted(
            "interrupted while the server was starting: it was stopped and nothing was written"
        ) from None
    try:
        on_stop = on_ready(target) if on_ready is not None else None
        return _profile(target, out, options, console, pyspy, on_stop=on_stop)
    except AsgiprofError:
        store.discard_if_empty(out)
        raise
    finally:
        if target.alive():
            stop_launched(target)


def attach_server(pid: int, options: ProfileOptions, console: Console) -> Analysis:
    options.check()
    pyspy = _usable_pyspy()
    if options.access_log is not None:  # a bad --access-log fails before anything starts
        LogTail.open([], options.access_log).close()
    target = attach(pid)
    out = store.prepare_out_dir(options.out or store.default_out_dir())
    try:
        return _profile(target, out, options, console, pyspy)
    except AsgiprofError:
        store.discard_if_empty(out)
        raise


def _target_info(
    target: Target, mode: str, exit_status: int | None = None, app_spec: str | None = None
) -> TargetInfo:
    cmd = parse_server_command(target.server_argv)
    return TargetInfo(
        pids=tuple(target.pids() or [target.pid]),
        command=redact(target.cmdline),
        server=cmd.server,
        cwd=target.cwd,
        python=find_target_python(target.cmdline, target.exe, target.cwd),
        app_spec=app_spec or cmd.app_spec,
        mode="attach" if mode == "attach" else "run",
        exit_status=exit_status,
    )


def _forks(cmd: ServerCommand) -> bool:
    """Whether the server runs the app in forked worker processes (record/sampler.py's
    chunk_format: py-spy's chrometrace mixes up forked workers' threads)."""
    return cmd.reload or cmd.server in ("gunicorn", "granian") or (cmd.workers or 1) > 1


def _read_routes(target: Target, info: TargetInfo, out: Path, app_spec: str | None) -> None:
    """Runs in a thread while sampling: imports the app in the target's interpreter."""
    try:
        table = read_route_table_for(
            parse_server_command(target.server_argv),
            python=info.python,
            cwd=target.cwd,
            env=target.environ or None,
            app_spec=app_spec,
        )
    except AsgiprofError as exc:
        table = RouteTable((), "none", exc.message)
    store.write_routes(out, table)


class _LoopCheck:
    """on_chunk: decides from the first chunk with samples whether the target runs an
    event loop at all, and calls `on_missing` when it does not (not an ASGI server)."""

    def __init__(self, out: Path, pid: int, on_missing: Callable[[], None]) -> None:
        self.out = out
        self.pid = pid
        self.on_missing = on_missing
        self.found: bool | None = None
        self.threads = 0

    def __call__(self, index: int) -> None:
        if self.found is not None:
            return
        path = store.chunk_path(self.out, index)
        try:
            found, threads = event_loop_in_chunk(path.read_bytes(), self.pid)
        except (OSError, CorruptProfileError):
            return
        if threads == 0:
            return  # nothing sampled yet: decide on the next chunk
        self.found, self.threads = found, threads
        if not found:
            self.on_missing()


def event_loop_in_chunk(data: bytes, pid: int) -> tuple[bool, int]:
    """(whether any sampled thread runs an asyncio/uvloop loop, threads with samples)."""
    frames: list[Frame] = []
    stacks: list[tuple[int, ...]] = []
    threads = parse_chunk(data, Interner(frames, stacks), default_pid=pid)
    probe = Profile(
        TargetInfo(pids=(pid,), command=(), server="unknown"),
        SamplingInfo(rate_hz=1, started_at=0.0, duration_s=0.0, samples=0, errors=0),
        frames=frames,
        stacks=stacks,
    )
    classifier = LoopClassifier(probe)
    sampled = [t for t in threads if t.n_samples]
    return any(classifier.is_loop_thread(set(t.stacks)) for t in sampled), len(sampled)


def _not_asgi(target: Target, threads: int) -> NotAsgiServerError:
    command = terminal_safe(" ".join(redact(target.cmdline)))[:160] or "?"
    what = "the launched command" if target.launched else f"process {target.pid}"
    return NotAsgiServerError(
        f"{what} ({command}) runs no asyncio or uvloop event loop: py-spy sampled "
        f"{threads} thread(s) and none was inside one. asgiprof profiles ASGI servers "
        "(uvicorn, gunicorn with uvicorn workers, hypercorn, granian): give the PID of one "
        "(its master or a worker), or start it with `asgiprof run -- uvicorn app:app`"
    )


# How the load was stopped, by why sampling stopped ("load": it ended by itself).
_LOAD_STOPS: dict[str, LoadStop] = {
    "load": "exit",
    "duration": "duration",
    "interrupt": "interrupt",
    "target-exit": "target-exit",
}


def _blocking_because(options: ProfileOptions, python: str, pids: Sequence[int]) -> str | None:
    """Why a --nonblocking request is sampled --blocking after all; None when it is not."""
    if not options.nonblocking:
        return None
    if not nonblocking_keeps_thread_ids(python):
        return "py-spy needs to pause Pythons before 3.11 to read their threads' OS ids"
    if runs_uvloop(pids):
        return "on a uvloop server py-spy reads most busy samples torn unless it pauses it"
    return None


def _resource_monitor(out: Path, info: TargetInfo, t0: float, chunk_format: str) -> ResourceMonitor:
    # The loop thread's scheduler times every 10 ms need measured sample times to be lined
    # up with (analyze/starved.py).
    sched_interval_s = 0.01 if chunk_format == "chrometrace" else None
    return ResourceMonitor(
        out / store.RESOURCES, info.pids, t0=t0, sched_interval_s=sched_interval_s
    )


class _Recording:
    """The parts that record one target into OUT (sampler, GIL windows, resource monitor,
    route table, load), started and stopped together."""

    def __init__(self, target: Target, out: Path, options: ProfileOptions, pyspy: str) -> None:
        self.target = target
        self.out = out
        self.options = options
        self.t0 = time.time()
        mode = "run" if target.launched else "attach"
        self.info = _target_info(target, mode, app_spec=options.app_spec)
        # Targets py-spy cannot read well without pausing them (record/target.py): older
        # Pythons (threads lose their OS ids) and uvloop servers (most samples torn).
        self.downgraded = _blocking_because(options, self.info.python, target.pids())
        self.nonblocking = nonblocking = options.nonblocking and self.downgraded is None
        # --nonblocking never pauses the target: there is no pause to limit.
        max_pause = 0.0 if nonblocking else options.max_pause
        sampling = _sampling_so_far(options, self.t0, nonblocking, max_pause)
        store.write_meta(out, self.info, sampling)
        self.stop = _Stop()
        self.stop.abort = self.abort
        self.loop_check = _LoopCheck(out, target.pid, self._not_asgi)
        self.finished: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.sampler = Sampler(
            target.pid,
            out,
            self.t0,
            SamplerConfig(
                rate_hz=options.rate_hz,
                chunk_s=options.chunk_s,
                nonblocking=nonblocking,
                max_pause=max_pause,
                pyspy=pyspy,
                forks=_forks(parse_server_command(target.server_argv)),
                scout_hz=options.scout_hz,
            ),
            on_chunk=self._on_chunk,
            rate_policy=_scout_policy(out, target.pid, options),
        )
        # Who holds the GIL, in short windows beside the main sampler (gil-contention evidence).
        self.gil = GilSampler(target.pid, out, self.t0, GilConfig(pyspy=self.sampler.pyspy))
        self.monitor = _resource_monitor(out, self.info, self.t0, self.sampler.chunk_format)
        self.routes = threading.Thread(
            target=_read_routes,
            args=(target, self.info, out, options.app_spec),
            name="asgiprof-routes",
            daemon=True,
        )
        self.stopped_before = set() if target.launched else stopped_pids(target.pids())
        # attach: requests per route from the lines the server logs while sampled (run
        # has the launched server's whole output in OUT/server.log already).
        self.log_tail = None if target.launched else LogTail.open(target.pids(), options.access_log)
        self.load = LoadRunner(options.load, out, self.t0) if options.load is not None else None
        self.exit_status: int | None = None
        self.sampling_ended: float | None = None

    def _not_asgi(self) -> None:  # in the sampler thread, after the first chunk
        self.stop.request("not-asgi")
        self.sampler.stop()

    def _on_chunk(self, index: int) -> None:  # in the sampler thread: hand over, never wait
        if self.options.require_event_loop:
            self.loop_check(index)
        self.finished.put(index)

    def abort(self) -> None:
        # In a signal handler, while the main thread may be waiting on these very
        # processes: send signals and write one line, never wait for anything.
        self.sampler.kill()
        if self.load is not None:
            self.load.kill()
        kill_launched(self.target)
        saved = f"; the samples saved so far are in {self.out} (asgiprof report {self.out})"
        os.write(2, f"\naborted{saved if self.sampler.chunks else ''}\n".encode(errors="replace"))

    def record(self, console: Console, on_stop: Callable[[], None] | None) -> None:
        """Sample until a stop (see `_wait`), then stop every part."""
        if self.downgraded is not None:
            console.print(
                Text(f"sampling --blocking: {self.downgraded}"),
                style="dim",
            )
        if self.log_tail is not None:
            sources = ", ".join(self.log_tail.sources)
            console.print(
                Text(
                    terminal_safe(f"access log: {sources}")
                    if sources
                    else "no access log (the server's output is not a file; "
                    "--access-log FILE names one): routes are split by endpoint samples"
                ),
                style="dim",
            )
        self.monitor.start()
        self.routes.start()
        self.sampler.start()
        if self.options.gil_windows:
            self.gil.start()
        try:
            if self.load is not None:
                shown = self.load.start(
                    self.target.pids() or [self.target.pid], self.target.server_argv
                )
                console.print(Text(terminal_safe(f"load: {shown}")), style="dim")
            _wait(self, console)
        finally:
            self._stop_all(on_stop)

    def _stop_all(self, on_stop: Callable[[], None] | None) -> None:
        self.stop.request("duration")  # a no-op after a stop: from now on Ctrl-C aborts
        if on_stop is not None:
            on_stop()
        if self.load is not None:
            self.load.finish(_LOAD_STOPS.get(self.stop.reason, "error"))
        self.sampler.stop()
        self.gil.stop()
        self.sampler.join(self.options.chunk_s + 30)
        self.gil.join(30)
        # The profile's wall time ends with sampling, not after the server stopped:
        # coverage compares what was sampled with this.
        self.sampling_ended = time.time()
        if self.log_tail is not None:
            self.log_tail.save(self.out / store.SERVER_LOG)
        if self.target.launched:
            self.exit_status = self.target.exit_status()
            stop_launched(self.target)
        self.monitor.stop()
        self.routes.join(25)

    def write_final_meta(self) -> None:
        sampler, info = self.sampler, self.info
        final = SamplingInfo(
            self.options.rate_hz,
            self.t0,
            round((self.sampling_ended or time.time()) - self.t0, 3),
            sampler.samples,
            sampler.errors,
            stopped_by=self.stop.reason,
            nonblocking=self.nonblocking,
            rate_changes=tuple(sampler.rate_changes),
            watchdog=tuple(sampler.watchdog.report.events),
            max_pause=sampler.config.max_pause,
            scout_hz=sampler.config.scout_hz,
        )
        exit_status = self.exit_status if self.stop.reason == "target-exit" else None
        store.write_meta(self.out, replace(info, exit_status=exit_status), final)


def _sampling_so_far(
    options: ProfileOptions, t0: float, nonblocking: bool, max_pause: float
) -> SamplingInfo:
    """meta.json's sampling while sampling runs (the final one replaces it)."""
    return SamplingInfo(
        *(options.rate_hz, t0, 0.0, 0, 0),
        stopped_by="running",
        nonblocking=nonblocking,
        max_pause=max_pause,
        scout_hz=options.scout_hz,
    )


def _scout_policy(out: Path, pid: int, options: ProfileOptions) -> ScoutPolicy | None:
    if not options.scout_hz:
        return None
    return ScoutPolicy(out, pid, options.rate_hz, options.scout_hz)


def _profile(
    target: Target,
    out: Path,
    options: ProfileOptions,
    console: Console,
    pyspy: str,
    on_stop: Callable[[], None] | None = None,
) -> Analysis:
    rec = _Recording(target, out, options, pyspy)
    with rec.stop.handlers():
        rec.record(console, on_stop)
        if not target.launched:
            for pid in resume_if_stopped(target.pids(), rec.stopped_before):
                console.print(Text(f"warning: process {pid} was left stopped; resumed it"))
            if target.alive():
                console.print(Text(f"detached, PID {target.pid} still running"), style="dim")
        _raise_if_nothing_recorded(rec)
        if rec.sampler.target_exited or (
            rec.exit_status is not None and rec.stop.reason != "interrupt"
        ):
            rec.stop.reason = "target-exit"
        if rec.sampler.error is not None:
            console.print(
                Text(terminal_safe(f"warning: sampling stopped early: {rec.sampler.error}"))
            )
        for event in rec.sampler.watchdog.report.events:
            console.print(Text(terminal_safe(f"warning: watchdog: {event}")))
        rec.write_final_meta()
        return render(out, options.params, console, options.open_browser)


def _raise_if_nothing_recorded(rec: _Recording) -> None:
    """Not an ASGI server, or no chunk saved: say why (and leave no empty OUT behind)."""
    target, sampler, stop = rec.target, rec.sampler, rec.stop
    if stop.reason == "not-asgi":
        store.discard(rec.out)
        raise _not_asgi(target, rec.loop_check.threads)
    if sampler.chunks:
        return
    if stop.reason == "interrupt" and sampler.error is None:
        store.discard(rec.out)
        what = "the server was stopped" if target.launched else "the target runs on"
        raise StartupInterrupted(
            f"interrupted before the first samples were saved: {what} and nothing was written"
        )
    if sampler.error is not None:
        raise sampler.error
    if target.launched and rec.exit_status is not None:
        raise startup_failure(target.cmdline, rec.exit_status, target.log_path)
    raise AsgiprofError(f"no samples were taken before sampling stopped; see {rec.out}")


def _wait(rec: _Recording, console: Console) -> None:
    """Show progress until Ctrl-C, --duration, the target exiting, a sampler failure, or
    the end of the load: the live panel (each chunk read once, as it reaches OUT) or one
    line."""
    target, sampler, options = rec.target, rec.sampler, rec.options
    deadline = rec.t0 + options.duration_s if options.duration_s else None
    known = set(target.pids())
    progress = Console(stderr=True, force_terminal=console.is_terminal or None)
    show_live = progress.is_terminal if options.live is None else options.live
    view = LiveView(rec.out, target.pid, options.params.block_threshold_ms / 1000)
    with Live(console=progress, refresh_per_second=4, transient=True) as live:
        while not rec.stop.event.wait(0.25):
            now = time.time()
            reason = _stop_reason(rec, deadline, now)
            if reason is not None:
                rec.stop.request(reason)
                break
            for pid in set(target.pids()) - known:  # workers (re)started while sampling
                rec.monitor.add_pid(pid)
                known.add(pid)
            status, sampling = _progress(rec, deadline, now)
            if not show_live:
                live.update(Text(terminal_safe(f"{status}; {sampling}, target alive")))
                continue
            while True:
                try:
                    view.add_chunk(rec.finished.get_nowait())
                except queue.Empty:
                    break
            elapsed = now - rec.t0
            stale = f"; view {elapsed - sampler.last_end_s:.1f} s old" if sampler.chunks else ""
            live.update(view.render(status, sampling + stale))


def _stop_reason(rec: _Recording, deadline: float | None, now: float) -> str | None:
    """Why sampling must stop now, or None to go on."""
    if deadline is not None and now >= deadline:
        return "duration"
    if not rec.target.alive():
        return "target-exit"
    if rec.load is not None and rec.load.done():
        return "load"
    if not rec.sampler.running:
        return "target-exit" if rec.sampler.target_exited else "error"
    return None


def _progress(rec: _Recording, deadline: float | None, now: float) -> tuple[str, str]:
    """The progress lines: what is sampled and for how long, and how well py-spy keeps up."""
    sampler = rec.sampler
    left = (
        f", {deadline - now:.0f} s left"
        if deadline
        else ", until the load ends"
        if rec.load is not None
        else ", Ctrl-C to stop"
    )
    status = f"sampling PID {rec.target.pid}: {now - rec.t0:5.1f} s{left}"
    sampling = (
        f"{sampler.chunks} chunks, {sampler.sampled_s:.1f} s sampled "
        f"(coverage {sampler.coverage:.0%}), {sampler.rate_hz} Hz"
    )
    if sampler.max_lag_s:
        sampling += f", py-spy fell up to {sampler.max_lag_s:.1f} s behind"
    if sampler.pause_share is not None and not sampler.config.nonblocking:
        sampling += f", target paused {sampler.pause_share:.1%}"
    return status, sampling
