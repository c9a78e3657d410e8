"""The asgiprof command line: options in, one pipeline call, exit code out."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from asgiprof import __version__
from asgiprof.analyze.result import AnalysisParams
from asgiprof.errors import AsgiprofError
from asgiprof.session import ProfileOptions, attach_server, render, run_server

app = typer.Typer(
    name="asgiprof",
    help="Find the lines that block your ASGI server's event loop, per route (py-spy based).",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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
        "--nonblocking",
        help="Do not pause the target while sampling (less overhead, some torn stacks).",
    ),
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


def _options(
    duration: float | None,
    out: Path | None,
    rate: int,
    open_: bool,
    threshold_ms: float,
    nonblocking: bool,
    live: bool | None = None,
) -> ProfileOptions:
    return ProfileOptions(
        duration_s=duration,
        out=out,
        rate_hz=rate,
        open_browser=open_,
        params=AnalysisParams(block_threshold_ms=threshold_ms),
        nonblocking=nonblocking,
        live=live,
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
    command: Annotated[list[str], typer.Argument(help="The server command, e.g. uvicorn app:app")],
    *,
    duration: Duration = None,
    out: Out = None,
    rate: Rate = 100,
    open_: Open = False,
    threshold_ms: Threshold = DEFAULT_THRESHOLD,
    nonblocking: Nonblocking = False,
    live: LiveOption = None,
) -> None:
    """Launch a server under the profiler: asgiprof run -- uvicorn app:app --port 8000"""
    options = _options(duration, out, rate, open_, threshold_ms, nonblocking, live)
    run_server(list(command), options, Console())


@app.command()
def attach(
    pid: Annotated[int, typer.Argument(help="PID of the running server (master or worker).")],
    *,
    duration: Duration = None,
    out: Out = None,
    rate: Rate = 100,
    open_: Open = False,
    threshold_ms: Threshold = DEFAULT_THRESHOLD,
    nonblocking: Nonblocking = False,
    live: LiveOption = None,
) -> None:
    """Attach to a running server; it keeps running when asgiprof stops."""
    options = _options(duration, out, rate, open_, threshold_ms, nonblocking, live)
    attach_server(pid, options, Console())


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
def demo(
    *,
    duration: Annotated[float, typer.Option("--duration", "-d", min=2.0, help="Seconds.")] = 8.0,
    out: Out = None,
    rate: Rate = 100,
    open_: Open = False,
) -> None:
    """Profile the bundled example app under generated load and show what blocks it."""
    from asgiprof.demo import run_demo

    options = _options(duration, out, rate, open_, DEFAULT_THRESHOLD, False)
    run_demo(options, Console())


ABORTED = 1  # an abort (second Ctrl-C) is "anything else" in the exit-code contract


def main() -> None:
    """Entry point: typer handles usage errors (exit 2); ours print one line, no traceback."""
    err = Console(stderr=True)
    try:
        app()
    except AsgiprofError as exc:
        err.print(f"[bold red]error:[/] {_escape(exc.message)}", highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("aborted", style="red")
        sys.exit(ABORTED)
    except SystemExit as exc:
        # typer turns an interrupt into 130; DESIGN.md's contract is 0 / 2 / 1.
        sys.exit(ABORTED if exc.code == 130 else exc.code)
    except Exception as exc:
        if os.environ.get("ASGIPROF_DEBUG"):
            raise
        err.print(
            f"[bold red]internal error:[/] {_escape(type(exc).__name__)}: {_escape(str(exc))} "
            "(set ASGIPROF_DEBUG=1 for the traceback, and please report it)",
            highlight=False,
        )
        sys.exit(1)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
