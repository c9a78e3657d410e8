"""The asgiprof command line: options in, one pipeline call, exit code out."""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console

from asgiprof import __version__
from asgiprof.analyze.result import AnalysisParams
from asgiprof.errors import AsgiprofError, UsageError
from asgiprof.gate import FailOn, Rules
from asgiprof.record.load_run import LoadSpec
from asgiprof.report import render
from asgiprof.session import ProfileOptions, attach_server, run_server

app = typer.Typer(
    name="asgiprof",
    help="Find the lines that block your ASGI server's event loop, per route (py-spy based).",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help: typer's rich panels print `<bool>` after flags, as if they took a
    # value (`--open <bool>`); click shows flags bare and values by name (`--duration FLOAT`).
    rich_markup_mode=None,
)

Duration = Annotated[
    float | None,
    typer.Option(
        "--duration", "-d", help="Seconds to sample (default: until Ctrl-C or exit).", min=0.5
    ),
]
Out = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Output directory (default: ./asgiprof-out-<time>)."),
]
Rate = Annotated[int, typer.Option("--rate", "-r", help="Samples per second.", min=1, max=1000)]
Open = Annotated[bool, typer.Option("--open", help="Open the HTML report when done.")]
Threshold = Annotated[
    float,
    typer.Option(
        "--threshold-ms",
        help="A synchronous stretch this long on the event loop is a blocking episode.",
        min=1.0,
    ),
]
Nonblocking = Annotated[
    bool,
    typer.Option(
        "--nonblocking/--blocking",
        help="--blocking (default): pause the target for each sample, as py-spy does "
        "(within --max-pause); --nonblocking: read it while it runs (~1%), at some "
        "accuracy on busy apps (py-spy fails 20-30% of reads and tears up to half of the "
        "loop's samples there). uvloop servers and Pythons before 3.11 are always sampled "
        "--blocking.",
    ),
]
MaxPause = Annotated[
    float,
    typer.Option(
        "--max-pause",
        metavar="PERCENT",
        help="Hold the target paused at most this share of the time: py-spy's pause per "
        "sample grows with the frames of every thread (~15 us each; 6-23% of the time at "
        "100 Hz on FastAPI apps), and the rate is lowered when a chunk paused it longer. "
        "0: no limit; 1: ~99% of a saturated server's throughput, at 10-20 Hz, where blocks "
        "shorter than ~0.1 s are missed: sample longer.",
        min=0.0,
        max=100.0,
    ),
]
ScoutRate = Annotated[
    int,
    typer.Option(
        "--scout-rate",
        metavar="HZ",
        help="Sample at HZ while the event loop holds no line across samples, at --rate "
        "while it does and for 3 chunks after (0: always --rate). Pauses a healthy server "
        "less; blocks under ~2 scout intervals are missed while scouting, e.g. 20.",
        min=0,
        max=1000,
    ),
]
Load = Annotated[
    str | None,
    typer.Option(
        "--load",
        help="Shell command to drive load once the server listens ({url}, {host}, {port} "
        "filled in); sampling stops when it exits, e.g. --load 'wrk -d10s {url}/'.",
    ),
]
LoadUrl = Annotated[
    list[str] | None,
    typer.Option(
        "--load-url",
        help="GET this URL with asgiprof's own load generator (repeat for more paths; "
        "{url} is the server's base URL), for --duration or 10 s.",
    ),
]
Concurrency = Annotated[
    int, typer.Option("--concurrency", help="Clients of --load-url.", min=1, max=1000)
]
LiveOption = Annotated[
    bool | None,
    typer.Option(
        "--live/--no-live",
        help="Show the event loop live while sampling (default: on in a terminal).",
        show_default=False,
    ),
]
DEFAULT_THRESHOLD = AnalysisParams().block_threshold_ms
CheckFormat = Literal["text", "json"]
App = Annotated[
    str | None,
    typer.Option(
        "--app",
        metavar="MODULE:ATTR",
        help="The ASGI app whose route table to read, when the command does not name it "
        "(e.g. `python serve.py` calling uvicorn.run(app)).",
    ),
]
AccessLog = Annotated[
    Path | None,
    typer.Option(
        "--access-log",
        metavar="FILE",
        help="The server's access log file: requests per route while sampling "
        "(default: the server's stdout/stderr when they are files).",
    ),
]
_APP_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def _app_spec(value: str | None) -> str | None:
    if value is not None and not _APP_SPEC.fullmatch(value):
        raise UsageError(
            f"--app {value!r} is not MODULE:ATTR: give the module and the app's name in it, "
            "e.g. --app serve:app or --app mypkg.main:app"
        )
    return value


_DEFAULTS = ProfileOptions()
DEFAULT_MAX_PAUSE_PCT = round(_DEFAULTS.max_pause * 100, 6)
_LOAD = LoadSpec()


def _options(params: Mapping[str, Any]) -> ProfileOptions:
    """The ProfileOptions of `run`, `attach` and `demo` from click's parsed values by
    parameter name (`ctx.params`): each command declares its options once, for typer, and
    they are read here in one place. Options a command lacks take their defaults."""
    duration: float | None = params.get("duration")
    load: str | None = params.get("load")
    load_url: list[str] | None = params.get("load_url")
    spec = (
        LoadSpec(
            load, tuple(load_url or ()), params.get("concurrency", _LOAD.concurrency), duration
        )
        if load is not None or load_url
        else None
    )
    return ProfileOptions(
        duration_s=duration,
        out=params.get("out"),
        rate_hz=params.get("rate", _DEFAULTS.rate_hz),
        open_browser=params.get("open_", False),
        params=AnalysisParams(block_threshold_ms=params.get("threshold_ms", DEFAULT_THRESHOLD)),
        nonblocking=params.get("nonblocking", _DEFAULTS.nonblocking),  # demo: the default
        max_pause=params.get("max_pause", DEFAULT_MAX_PAUSE_PCT) / 100,
        scout_hz=params.get("scout_rate", 0),
        load=spec,
        app_spec=_app_spec(params.get("app_spec")),
        live=params.get("live"),
        access_log=params.get("access_log"),
    )


def _version(value: bool) -> None:
    if value:
        print(f"asgiprof {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Find the lines that block your ASGI server's event loop, per route."""


@app.command(
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
)
def run(
    ctx: typer.Context,
    command: Annotated[list[str], typer.Argument(help="The server command, e.g. uvicorn app:app")],
    *,
    duration: Duration = None,
    out: Out = None,
    rate: Rate = 100,
    open_: Open = False,
    threshold_ms: Threshold = DEFAULT_THRESHOLD,
    nonblocking: Nonblocking = False,
    max_pause: MaxPause = DEFAULT_MAX_PAUSE_PCT,
    scout_rate: ScoutRate = 0,
    load: Load = None,
    load_url: LoadUrl = None,
    concurrency: Concurrency = 8,
    app_spec: App = None,
    live: LiveOption = None,
) -> None:
    """Launch a server under the profiler: asgiprof run -- uvicorn app:app --port 8000"""
    run_server(list(command), _options(ctx.params), Console())


@app.command()
def attach(
    ctx: typer.Context,
    pid: Annotated[int, typer.Argument(help="PID of the running server (master or worker).")],
    *,
    duration: Duration = None,
    out: Out = None,
    rate: Rate = 100,
    open_: Open = False,
    threshold_ms: Threshold = DEFAULT_THRESHOLD,
    nonblocking: Nonblocking = False,
    max_pause: MaxPause = DEFAULT_MAX_PAUSE_PCT,
    scout_rate: ScoutRate = 0,
    load: Load = None,
    load_url: LoadUrl = None,
    concurrency: Concurrency = 8,
    app_spec: App = None,
    live: LiveOption = None,
    access_log: AccessLog = None,
) -> None:
    """Attach to a running server; it keeps running when asgiprof stops."""
    attach_server(pid, _options(ctx.params), Console())


@app.command()
def report(
    out: Annotated[Path, typer.Argument(help="An output directory of run/attach.")],
    *,
    open_: Open = False,
    threshold_ms: Threshold = DEFAULT_THRESHOLD,
) -> None:
    """Re-analyse a saved profile and rewrite every report."""
    render(out, AnalysisParams(block_threshold_ms=threshold_ms), Console(), open_)


@app.command()
def merge(
    runs: Annotated[list[Path], typer.Argument(help="Output directories of one app's runs.")],
    *,
    out: Out = None,
    open_: Open = False,
    threshold_ms: Threshold = DEFAULT_THRESHOLD,
) -> None:
    """Merge runs of one app from many hosts, pods or workers into one report."""
    from asgiprof.report import merge_runs

    merge_runs(list(runs), out, AnalysisParams(block_threshold_ms=threshold_ms), Console(), open_)


@app.command()
def check(
    out: Annotated[Path, typer.Argument(help="An output directory of run/attach.")],
    *,
    max_blocked_share: Annotated[
        float | None,
        typer.Option(help="Fail when a route (or all) blocked the loop more than this share."),
    ] = None,
    max_block_ms: Annotated[
        float | None, typer.Option(help="Fail when one block lasted longer than this.")
    ] = None,
    fail_on: Annotated[
        FailOn,
        typer.Option(help="Fail on every culprit, only new ones (needs --baseline), or none."),
    ] = "culprit",
    baseline: Annotated[
        Path | None,
        typer.Option(help="A profile of the base version: only culprits not in it fail."),
    ] = None,
    ignore: Annotated[
        list[str] | None,
        typer.Option(help="FILE:LINE or GLOB of known culprits that never fail (repeatable)."),
    ] = None,
    junit: Annotated[Path | None, typer.Option(help="Also write JUnit XML here.")] = None,
    format_: Annotated[
        CheckFormat, typer.Option("--format", help="text (with GitHub annotations) or json.")
    ] = "text",
) -> None:
    """Gate CI on a profile: exit 0 pass, 1 fail (one line per failure), 2 bad input."""
    from asgiprof.ci import run_check

    rules = Rules(max_blocked_share, max_block_ms, fail_on, baseline, tuple(ignore or ()))
    raise typer.Exit(run_check(out, rules, junit, format_))


@app.command()
def diff(
    base: Annotated[Path, typer.Argument(help="Output directory of the base run.")],
    head: Annotated[Path, typer.Argument(help="Output directory of the new run.")],
    *,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write diff.html here (default: HEAD/).")
    ] = None,
    threshold_ms: Threshold = DEFAULT_THRESHOLD,
    format_: Annotated[
        CheckFormat, typer.Option("--format", help="text or json (diff.html either way).")
    ] = "text",
) -> None:
    """Compare two profiles per route and culprit, with a significance verdict per change."""
    from asgiprof.ci import run_diff

    run_diff(base, head, out, AnalysisParams(block_threshold_ms=threshold_ms), format_)


@app.command()
def demo(
    ctx: typer.Context,
    *,
    duration: Annotated[float, typer.Option("--duration", "-d", min=2.0, help="Seconds.")] = 8.0,
    out: Out = None,
    rate: Rate = 100,
    open_: Open = False,
) -> None:
    """Profile the bundled example app under generated load and show what blocks it."""
    from asgiprof.demo import run_demo

    run_demo(_options(ctx.params), Console())


@app.command()
def push(
    out: Annotated[Path, typer.Argument(help="An output directory (run, attach or merge).")],
    *,
    pyroscope: Annotated[
        str | None, typer.Option(help="Grafana Pyroscope URL, e.g. http://pyroscope:4040.")
    ] = None,
    parca: Annotated[str | None, typer.Option(help="Parca URL, e.g. http://parca:7070.")] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="Series label NAME=VALUE (repeat).")
    ] = None,
    service_name: Annotated[
        str | None, typer.Option(help="service_name label (default: the app's module).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="host label (default: this host).")] = None,
    tenant: Annotated[str | None, typer.Option(help="Pyroscope tenant (X-Scope-OrgID).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per request.", min=0.1)] = 10.0,
    retries: Annotated[int, typer.Option(help="Retries on errors worth retrying.", min=0)] = 3,
    dry_run: Annotated[bool, typer.Option(help="Print what would be sent; send nothing.")] = False,
) -> None:
    """Upload profile.pb.gz to Pyroscope and/or Parca, labelled for fleet queries."""
    from asgiprof.push import PushOptions
    from asgiprof.push import push as push_profile

    options = PushOptions(
        pyroscope, parca, tuple(label or ()), service_name, host, tenant, timeout, retries, dry_run
    )
    push_profile(out, options, print)


ABORTED = 1  # an abort (second Ctrl-C) is "anything else" in the exit-code contract


def main() -> None:
    """Entry point: typer handles usage errors (exit 2); ours print one line, no traceback."""
    try:
        code = _run()
    except KeyboardInterrupt:  # a Ctrl-C while the first outcome was being reported
        code = ABORTED
    # From here on the run is over: a late Ctrl-C or SIGTERM must not turn its exit status
    # into a death by signal while the interpreter shuts down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(code)


def _run() -> int:
    err = Console(stderr=True)
    try:
        app()
    except AsgiprofError as exc:
        err.print(f"[bold red]error:[/] {_escape(exc.message)}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("aborted", style="red")
        return ABORTED
    except SystemExit as exc:
        # typer turns an interrupt into 130; DESIGN.md's contract is 0 / 2 / 1.
        if exc.code == 130:
            return ABORTED
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:
        if os.environ.get("ASGIPROF_DEBUG"):
            raise
        err.print(
            f"[bold red]internal error:[/] {_escape(type(exc).__name__)}: {_escape(str(exc))} "
            "(set ASGIPROF_DEBUG=1 for the traceback, and please report it)",
            highlight=False,
        )
        return 1
    return 0


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
