"""The pipeline behind `run`, `attach` and `report`: collect into OUT, analyse, report.

collect: target + sampler + resource monitor + route table -> OUT (raw files as they come)
render:  OUT -> Profile -> Analysis -> summary.json, folded, speedscope, report.html

Signals while collecting: the first Ctrl-C (or SIGTERM, SIGHUP) stops sampling, stops a
launched server gracefully or detaches, then analyses and writes everything; a second
Ctrl-C kills py-spy and a launched server at once. Whatever happens, a launched server,
its workers and py-spy end with asgiprof, and an attached target runs on.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
import time
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.live import Live
from rich.text import Text

from asgiprof import store
from asgiprof.analyze import analyze
from asgiprof.analyze.loop import LoopClassifier
from asgiprof.analyze.result import Analysis, AnalysisParams
from asgiprof.collect.command import find_target_python, parse_server_command, redact
from asgiprof.collect.gil_sampler import GilConfig, GilSampler
from asgiprof.collect.load_run import LoadRunner, LoadSpec
from asgiprof.collect.pyspy_format import parse_chunk
from asgiprof.collect.resources import ResourceMonitor
from asgiprof.collect.routes import read_route_table
from asgiprof.collect.sampler import Sampler, SamplerConfig, check_pyspy, find_pyspy
from asgiprof.collect.target import (
    Target,
    attach,
    kill_launched,
    launch,
    resume_if_stopped,
    startup_failure,
    stop_launched,
    stopped_pids,
)
from asgiprof.errors import (
    AsgiprofError,
    CorruptProfileError,
    NotAsgiServerError,
    StartupInterrupted,
    UsageError,
)
from asgiprof.live import LiveView
from asgiprof.merge import is_merge, load_merged, load_runs, write_merge_file
from asgiprof.model import (
    Frame,
    Interner,
    LoadStop,
    Profile,
    RouteTable,
    SamplingInfo,
    TargetInfo,
)
from asgiprof.reporters import write_all
from asgiprof.reporters.terminal import print_summary
from asgiprof.sources import SourceCache
from asgiprof.text import terminal_safe


@dataclass(frozen=True, slots=True)
class ProfileOptions:
    duration_s: float | None = None  # None: until Ctrl-C or the target exits
    out: Path | None = None
    rate_hz: int = 100
    open_browser: bool = False
    params: AnalysisParams = AnalysisParams()
    chunk_s: int = 2  # short chunks: less lost on a crash, sample times good to ~0.1 s
    # py-spy --nonblocking: measured unbiased for blocked time and ~1% of throughput
    # against 5-10% paused (bench/nonblocking_bias.py, bench/README.md)
    nonblocking: bool = True
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
    if options.load is not None:
        options.load.check()
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
    if options.load is not None:
        options.load.check()
    pyspy = _usable_pyspy()
    target = attach(pid)
    out = store.prepare_out_dir(options.out or store.default_out_dir())
    try:
        return _profile(target, out, options, console, pyspy)
    except AsgiprofError:
        store.discard_if_empty(out)
        raise


def render(out: Path, params: AnalysisParams, console: Console, open_browser: bool) -> Analysis:
    """Analyse a saved output directory and (re)write every artifact."""
    profile = load_merged(out) if is_merge(out) else store.load_profile(out)
    sources = SourceCache.load(out)
    analysis = analyze(profile, params, sources.read_line)
    sources.save(out)
    write_all(analysis, out)
    print_summary(analysis, console)
    report = out / "report.html"
    console.print(
        Text(
            f"\nwrote {out}/: summary.json, report.html, profile.speedscope.json, stacks.folded, "
            "profile.pb.gz"
        )
    )
    if open_browser and report.exists():
        open_report(report.resolve().as_uri(), console)
    return analysis


def merge_runs(
    dirs: list[Path], out: Path | None, params: AnalysisParams, console: Console, open_: bool
) -> Analysis:
    """Merge saved runs of one app into a new output directory and report on them all."""
    named = load_runs(dirs)
    out = store.prepare_out_dir(out or store.default_out_dir())
    write_merge_file(out, named)
    return render(out, params, console, open_)


def _has_display() -> bool:
    """Whether a graphical browser could open: on Linux and the BSDs only with a display
    (without one, webbrowser may start a text browser in this terminal, or nothing)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_report(uri: str, console: Console) -> None:
    """Open the report in a browser, or say where it is when none can open here."""
    opened = False
    if _has_display():
        try:
            opened = webbrowser.open(uri)
        except webbrowser.Error:
            opened = False
    if not opened:
        # One unbroken line: a URL folded at the terminal width cannot be copied.
        console.print(Text(f"no browser to open here (no display): open {uri}"), soft_wrap=True)


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


def _read_routes(target: Target, info: TargetInfo, out: Path, app_spec: str | None) -> None:
    """Runs in a thread while sampling: imports the app in the target's interpreter."""
    cmd = parse_server_command(target.server_argv)
    spec = app_spec or cmd.app_spec
    try:
        if spec:
            app_dir = cmd.app_dir
            if app_spec and cmd.script and not app_dir:
                app_dir = os.path.dirname(cmd.script) or None  # `python src/serve.py`
            table = read_route_table(
                spec,
                python=info.python,
                cwd=target.cwd,
                env=target.environ or None,
                factory=cmd.factory and not app_spec,
                app_dir=app_dir,
            )
        elif cmd.script:
            # Started from code: import the script without its __main__ block, find the app.
            table = read_route_table(
                cmd.script,
                python=info.python,
                cwd=target.cwd,
                env=target.environ or None,
                script=True,
            )
        else:
            table = RouteTable(
                (),
                "none",
                "no app spec found in the server command line: name the app with --app module:attr",
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
        path = self.out / store.RAW_DIR / f"{store.chunk_name(index)}.speedscope.json"
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


def _profile(
    target: Target,
    out: Path,
    options: ProfileOptions,
    console: Console,
    pyspy: str,
    on_stop: Callable[[], None] | None = None,
) -> Analysis:
    t0 = time.time()
    mode = "run" if target.launched else "attach"
    info = _target_info(target, mode, app_spec=options.app_spec)
    sampling = SamplingInfo(
        options.rate_hz, t0, 0.0, 0, 0, stopped_by="running", nonblocking=options.nonblocking
    )
    store.write_meta(out, info, sampling)

    stop = _Stop()

    def not_asgi() -> None:  # in the sampler thread, after the first chunk
        stop.request("not-asgi")
        sampler.stop()

    loop_check = _LoopCheck(out, target.pid, not_asgi)
    finished: queue.SimpleQueue[int] = queue.SimpleQueue()

    def on_chunk(index: int) -> None:  # in the sampler thread: hand over, never wait
        if options.require_event_loop:
            loop_check(index)
        finished.put(index)

    sampler = Sampler(
        target.pid,
        out,
        t0,
        SamplerConfig(
            rate_hz=options.rate_hz,
            chunk_s=options.chunk_s,
            nonblocking=options.nonblocking,
            pyspy=pyspy,
        ),
        on_chunk=on_chunk,
    )
    # Who holds the GIL, in short windows beside the main sampler (gil-contention evidence).
    gil = GilSampler(target.pid, out, t0, GilConfig(pyspy=sampler.pyspy))
    monitor = ResourceMonitor(out / store.RESOURCES, info.pids, t0=t0)
    routes = threading.Thread(
        target=_read_routes,
        args=(target, info, out, options.app_spec),
        name="asgiprof-routes",
        daemon=True,
    )
    stopped_before = set() if target.launched else stopped_pids(target.pids())
    load = LoadRunner(options.load, out, t0) if options.load is not None else None

    def abort() -> None:
        # In a signal handler, while the main thread may be waiting on these very
        # processes: send signals and write one line, never wait for anything.
        sampler.kill()
        if load is not None:
            load.kill()
        kill_launched(target)
        saved = f"; the samples saved so far are in {out} (asgiprof report {out})"
        os.write(2, f"\naborted{saved if sampler.chunks else ''}\n".encode(errors="replace"))

    stop.abort = abort
    exit_status: int | None = None
    sampling_ended: float | None = None
    with stop.handlers():
        monitor.start()
        routes.start()
        sampler.start()
        if options.gil_windows:
            gil.start()
        try:
            if load is not None:
                shown = load.start(target.pids() or [target.pid], target.server_argv)
                console.print(Text(terminal_safe(f"load: {shown}")), style="dim")
            _wait(target, sampler, monitor, stop, options, console, t0, out, finished, load)
        finally:
            stop.request("duration")  # a no-op after a stop: from now on Ctrl-C aborts
            if on_stop is not None:
                on_stop()
            if load is not None:
                load.finish(_LOAD_STOPS.get(stop.reason, "error"))
            sampler.stop()
            gil.stop()
            sampler.join(options.chunk_s + 30)
            gil.join(30)
            # The profile's wall time ends with sampling, not after the server stopped:
            # coverage compares what was sampled with this.
            sampling_ended = time.time()
            if target.launched:
                exit_status = target.exit_status()
                stop_launched(target)
            monitor.stop()
            routes.join(25)
        if not target.launched:
            for pid in resume_if_stopped(target.pids(), stopped_before):
                console.print(Text(f"warning: process {pid} was left stopped; resumed it"))
            if target.alive():
                console.print(Text(f"detached, PID {target.pid} still running"), style="dim")
        if stop.reason == "not-asgi":
            store.discard(out)
            raise _not_asgi(target, loop_check.threads)
        if sampler.chunks == 0:
            if stop.reason == "interrupt" and sampler.error is None:
                store.discard(out)
                what = "the server was stopped" if target.launched else "the target runs on"
                raise StartupInterrupted(
                    f"interrupted before the first samples were saved: {what} and nothing "
                    "was written"
                )
            if sampler.error is not None:
                raise sampler.error
            if target.launched and exit_status is not None:
                raise startup_failure(target.cmdline, exit_status, target.log_path)
            raise AsgiprofError(f"no samples were taken before sampling stopped; see {out}")
        if sampler.target_exited or (exit_status is not None and stop.reason != "interrupt"):
            stop.reason = "target-exit"
        if sampler.error is not None:
            console.print(Text(terminal_safe(f"warning: sampling stopped early: {sampler.error}")))
        for event in sampler.watchdog.report.events:
            console.print(Text(terminal_safe(f"warning: watchdog: {event}")))
        final = SamplingInfo(
            options.rate_hz,
            t0,
            round((sampling_ended or time.time()) - t0, 3),
            sampler.samples,
            sampler.errors,
            stopped_by=stop.reason,
            nonblocking=options.nonblocking,
            rate_changes=tuple(sampler.rate_changes),
            watchdog=tuple(sampler.watchdog.report.events),
        )
        store.write_meta(
            out,
            TargetInfo(
                pids=info.pids,
                command=info.command,
                server=info.server,
                cwd=info.cwd,
                python=info.python,
                app_spec=info.app_spec,
                mode=info.mode,
                exit_status=exit_status if stop.reason == "target-exit" else None,
            ),
            final,
        )
        return render(out, options.params, console, options.open_browser)


# How the load was stopped, by why sampling stopped ("load": it ended by itself).
_LOAD_STOPS: dict[str, LoadStop] = {
    "load": "exit",
    "duration": "duration",
    "interrupt": "interrupt",
    "target-exit": "target-exit",
}


def _wait(
    target: Target,
    sampler: Sampler,
    monitor: ResourceMonitor,
    stop: _Stop,
    options: ProfileOptions,
    console: Console,
    t0: float,
    out: Path,
    finished: queue.SimpleQueue[int],
    load: LoadRunner | None = None,
) -> None:
    """Show progress until Ctrl-C, --duration, the target exiting, a sampler failure, or
    the end of the load: the live panel (each chunk read once, as it reaches OUT) or one
    line."""
    deadline = t0 + options.duration_s if options.duration_s else None
    known = set(target.pids())
    progress = Console(stderr=True, force_terminal=console.is_terminal or None)
    show_live = progress.is_terminal if options.live is None else options.live
    view = LiveView(out, target.pid, options.params.block_threshold_ms / 1000)
    with Live(console=progress, refresh_per_second=4, transient=True) as live:
        while not stop.event.wait(0.25):
            now = time.time()
            if deadline is not None and now >= deadline:
                stop.request("duration")
                break
            if not target.alive():
                stop.request("target-exit")
                break
            if load is not None and load.done():
                stop.request("load")
                break
            if not sampler.running:
                stop.request("target-exit" if sampler.target_exited else "error")
                break
            for pid in set(target.pids()) - known:  # workers (re)started while sampling
                monitor.add_pid(pid)
                known.add(pid)
            elapsed = now - t0
            left = (
                f", {deadline - now:.0f} s left"
                if deadline
                else ", until the load ends"
                if load is not None
                else ", Ctrl-C to stop"
            )
            status = f"sampling PID {target.pid}: {elapsed:5.1f} s{left}"
            sampling = (
                f"{sampler.chunks} chunks, {sampler.sampled_s:.1f} s sampled "
                f"(coverage {sampler.coverage:.0%}), {sampler.rate_hz} Hz"
            )
            if sampler.max_lag_s:
                sampling += f", py-spy fell up to {sampler.max_lag_s:.1f} s behind"
            if not show_live:
                live.update(Text(terminal_safe(f"{status}; {sampling}, target alive")))
                continue
            while True:
                try:
                    view.add_chunk(finished.get_nowait())
                except queue.Empty:
                    break
            stale = f"; view {elapsed - sampler.last_end_s:.1f} s old" if sampler.chunks else ""
            live.update(view.render(status, sampling + stale))
