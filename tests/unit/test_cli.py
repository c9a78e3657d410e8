"""The command line (cli.py): bad input is one message and exit 2, never a traceback; `run`
and `attach` read the options they share in one place."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from asgiprof import cli
from asgiprof.session import ProfileOptions


def main(args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """`asgiprof ARGS` through the real entry point; its exit status."""
    monkeypatch.setattr(sys, "argv", ["asgiprof", *args])
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as exited:
            cli.main()
    finally:  # main() ignores both signals on its way out: give pytest its own back
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    code = exited.value.code
    assert isinstance(code, int)
    return code


BAD_INPUT = [
    (["run"], "Missing argument 'COMMAND"),
    (["attach", "abc"], "Invalid value for 'PID'"),
    (["attach", "1", "--rate", "0"], "Invalid value for '--rate'"),
    (["attach", "1", "--max-pause", "150"], "Invalid value for '--max-pause'"),
    (["attach", "1", "--max-pause", "-1"], "Invalid value for '--max-pause'"),
    (["attach", "1", "--duration", "0.1"], "Invalid value for '--duration'"),
    (["run", "--app", "not a spec", "--", "x"], "--app 'not a spec' is not MODULE:ATTR"),
    (["attach", "0"], "invalid PID 0"),
    (["frobnicate"], "No such command 'frobnicate'"),
    (["demo", "--duration", "1"], "Invalid value for '--duration'"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_message_and_exit_2(
    args: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(args, monkeypatch)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message.lower() in " ".join(err.split()).lower(), err
    assert "Traceback" not in err
    # one message: typer's usage block plus its error box, or our one `error:` line
    assert err.count("Error") + err.count("error:") == 1, err


def test_report_of_a_folder_that_is_not_a_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path / "missing")], monkeypatch) == 2
    assert main(["report", str(tmp_path)], monkeypatch) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors == [
        f"error: {tmp_path / 'missing'} is not a directory: give the --out folder of a profile",
        f"error: {tmp_path / 'meta.json'} is missing: not an asgiprof output directory?",
    ]


def test_two_loads_are_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["--out", str(out), "--load", "true", "--load-url", "http://127.0.0.1:1/"]
    assert main(["attach", str(os.getpid()), *args], monkeypatch) == 2
    assert capsys.readouterr().err == (
        "error: give either --load CMD or --load-url URL, not both\n"
    )
    assert not out.exists()


def test_run_and_attach_build_the_same_options(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, ProfileOptions] = {}
    monkeypatch.setattr(cli, "run_server", lambda argv, o, console: seen.update(run=o))
    monkeypatch.setattr(cli, "attach_server", lambda pid, o, console: seen.update(attach=o))
    shared = [
        *("--duration", "3", "--out", "o", "--rate", "50", "--open", "--threshold-ms", "40"),
        *("--nonblocking", "--load-url", "http://127.0.0.1:9/", "--concurrency", "3"),
        *("--app", "serve:app", "--no-live", "--max-pause", "2.5"),
    ]
    runner = CliRunner()
    assert runner.invoke(cli.app, ["run", *shared, "--", "uvicorn", "x:app"]).exit_code == 0
    assert runner.invoke(cli.app, ["attach", *shared, "123"]).exit_code == 0
    options = seen["run"]
    assert seen["attach"] == options
    assert (options.duration_s, options.out, options.rate_hz) == (3.0, Path("o"), 50)
    assert options.open_browser and options.nonblocking and options.live is False
    assert options.params.block_threshold_ms == 40.0 and options.app_spec == "serve:app"
    assert options.max_pause == 0.025
    assert options.load is not None
    assert options.load.urls == ("http://127.0.0.1:9/",)
    assert (options.load.concurrency, options.load.duration_s) == (3, 3.0)
