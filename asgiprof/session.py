"""The pipeline behind `run`, `attach` and `report`: collect into OUT, analyse, report.

collect: target + sampler + resource monitor + route table -> OUT (raw files as they come)
render:  OUT -> Profile -> Analysis -> summary.json, folded, speedscope, report.html
"""

from __future__ import annotations

import signal
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
from asgiprof.analyze.result import Analysis, AnalysisParams
from asgiprof.collect.command import find_target_python, parse_server_command, redact
from asgiprof.collect.resources import ResourceMonitor
from asgiprof.collect.routes import read_route_table
from asgiprof.collect.sampler import Sampler, SamplerConfig
from asgiprof.collect.target import Target, attach, launch, stop_launched
from asgiprof.errors import AppImportError, AsgiprofError
from asgiprof.model import RouteTable, SamplingInfo, TargetInfo
from asgiprof.reporters import write_all
from asgiprof.reporters.terminal import print_summary
from asgiprof.sources import SourceCache


@dataclass(frozen=True, slots=True)
class ProfileOptions:
    duration_s: float | None = None  # None: until Ctrl-C or the target exits
    out: Path | None = None
    rate_hz: int = 100
    open_browser: bool = False
    params: AnalysisParams = AnalysisParams()
    chunk_s: int = 2  # short chunks: less lost on a crash, sample times good to ~0.1 s
    nonblocking: bool = False
    ready_timeout_s: float = 30.0


class _Stop:
    """First Ctrl-C / SIGTERM: stop gracefully. Second Ctrl-C: abort at once."""

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
            if self.event.is_set() and signum == signal.SIGINT:
                self.abort()
                raise KeyboardInterrupt
            self.request("interrupt")

        old_int = signal.signal(signal.SIGINT, on_signal)
        old_term = signal.signal(signal.SIGTERM, on_signal)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)


OnReady = Callable[[Target], Callable[[], None]]


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
    out = store.prepare_out_dir(options.out or store.default_out_dir())
    console.print(Text(f"starting: {' '.join(redact(argv))}"), style="dim")
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
    try:
        on_stop = on_ready(target) if on_ready is not None else None
        return _profile(target, out, options, console, on_stop=on_stop)
    finally:
        if target.alive():
            stop_launched(target)


def attach_server(pid: int, options: ProfileOptions, console: Console) -> Analysis:
    target = attach(pid)
    out = store.prepare_out_dir(options.out or store.default_out_dir())
    try:
        return _profile(target, out, options, console)
    except AsgiprofError:
        store.discard_if_empty(out)
        raise


def render(out: Path, params: AnalysisParams, console: Console, open_browser: bool) -> Analysis:
    """Analyse a saved output directory and (re)write every artifact."""
    profile = store.load_profile(out)
    sources = SourceCache.load(out)
    analysis = analyze(profile, params, sources.read_line)
    sources.save(out)
    write_all(analysis, out)
    print_summary(analysis, console)
    report = out / "report.html"
    console.print(
        Text(f"\nwrote {out}/: summary.json, report.html, profile.speedscope.json, stacks.folded")
    )
    if open_browser and report.exists():
        webbrowser.open(report.resolve().as_uri())
    return analysis


def _target_info(target: Target, mode: str, exit_status: int | None = None) -> TargetInfo:
    cmd = parse_server_command(target.cmdline)
    return TargetInfo(
        pids=tuple(target.pids() or [target.pid]),
        command=redact(target.cmdline),
        server=cmd.server,
        cwd=target.cwd,
        python=find_target_python(target.cmdline, target.exe, target.cwd),
        app_spec=cmd.app_spec,
        mode="attach" if mode == "attach" else "run",
        exit_status=exit_status,
    )


def _read_routes(target: Target, info: TargetInfo, out: Path) -> None:
    """Runs in a thread while sampling: imports the app in the target's interpreter."""
    cmd = parse_server_command(target.cmdline)
    if not cmd.app_spec:
        table = RouteTable((), "none", "no app spec found in the server command line")
    else:
        try:
            table = read_route_table(
                cmd.app_spec,
                python=info.python,
                cwd=target.cwd,
                env=target.environ or None,
                factory=cmd.factory,
                app_dir=cmd.app_dir,
            )
        except AppImportError as exc:
            table = RouteTable((), "none", exc.message)
        except AsgiprofError as exc:
            table = RouteTable((), "none", exc.message)
    store.write_routes(out, table)


def _profile(
    target: Target,
    out: Path,
    options: ProfileOptions,
    console: Console,
    on_stop: Callable[[], None] | None = None,
) -> Analysis:
    t0 = time.time()
    mode = "run" if target.launched else "attach"
    info = _target_info(target, mode)
    sampling = SamplingInfo(options.rate_hz, t0, 0.0, 0, 0, stopped_by="running")
    store.write_meta(out, info, sampling)

    stop = _Stop()
    sampler = Sampler(
        target.pid,
        out,
        t0,
        SamplerConfig(
            rate_hz=options.rate_hz, chunk_s=options.chunk_s, nonblocking=options.nonblocking
        ),
    )
    monitor = ResourceMonitor(out / store.RESOURCES, info.pids, t0=t0)
    routes = threading.Thread(
        target=_read_routes, args=(target, info, out), name="asgiprof-routes", daemon=True
    )

    def abort() -> None:
        sampler.kill()
        if target.launched:
            stop_launched(target, timeout_s=0.5)

    stop.abort = abort
    with stop.handlers():
        monitor.start()
        routes.start()
        sampler.start()
        try:
            _wait(target, sampler, monitor, stop, options, console, t0)
        finally:
            if on_stop is not None:
                on_stop()
            sampler.stop()
            sampler.join(options.chunk_s + 30)
            exit_status: int | None = None
            if target.launched:
                exit_status = target.exit_status()
                stop_launched(target)
            elif not target.alive():
                exit_status = -1
            monitor.stop()
            routes.join(25)
    if sampler.error is not None and sampler.chunks == 0:
        raise sampler.error
    if sampler.target_exited or (exit_status is not None and stop.reason == "target-exit"):
        stop.reason = "target-exit"
    final = SamplingInfo(
        options.rate_hz,
        t0,
        round(time.time() - t0, 3),
        sampler.samples,
        sampler.errors,
        stopped_by=stop.reason,
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
    if sampler.chunks == 0:
        raise AsgiprofError(f"no samples were taken before sampling stopped; see {out}")
    return render(out, options.params, console, options.open_browser)


def _wait(
    target: Target,
    sampler: Sampler,
    monitor: ResourceMonitor,
    stop: _Stop,
    options: ProfileOptions,
    console: Console,
    t0: float,
) -> None:
    """Show progress until Ctrl-C, --duration, the target exiting, or a sampler failure."""
    deadline = t0 + options.duration_s if options.duration_s else None
    known = set(target.pids())
    progress = Console(stderr=True, force_terminal=console.is_terminal or None)
    with Live(console=progress, refresh_per_second=4, transient=True) as live:
        while not stop.event.wait(0.25):
            now = time.time()
            if deadline is not None and now >= deadline:
                stop.request("duration")
                break
            if not target.alive():
                stop.request("target-exit")
                break
            if not sampler.running:
                stop.request("target-exit" if sampler.target_exited else "error")
                break
            for pid in set(target.pids()) - known:  # workers (re)started while sampling
                monitor.add_pid(pid)
                known.add(pid)
            elapsed = now - t0
            est = sampler.samples + int(
                (now - t0 - (sampler.current_chunk_started or elapsed)) * options.rate_hz
            )
            left = f", {deadline - now:.0f} s left" if deadline else ", Ctrl-C to stop"
            live.update(
                Text(
                    f"sampling PID {target.pid}: {elapsed:5.1f} s, ~{est} samples, "
                    f"{sampler.chunks} chunks saved, target alive{left}"
                )
            )
