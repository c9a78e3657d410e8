"""Issue 6, item 3: every input asgiprof cannot use ends in exit status 2 and one line that
names the fix, never a traceback, and leaves nothing behind (no output folder, no process).

Run as users do: `python -m asgiprof ...` in a subprocess.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from asgiprof import store
from asgiprof.record.loadgen import free_port
from tests.profiling import Finished, asgiprof
from tests.servers import HOST, ServerFactory

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534


def assert_usage_error(done: Finished, *needles: str) -> None:
    """Exit status 2, one `error:` message on stderr holding every needle, no traceback."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.startswith("error: "), done.stderr
    assert done.stderr.count("error:") == 1, done.stderr
    message = " ".join(done.stderr.split())  # rich wraps lines at the terminal width
    for needle in needles:
        assert needle in message, (needle, message)


@pytest.fixture
def python_sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A Python process with no event loop: a script, a worker, anything but a server."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time\nwhile True: time.sleep(0.05)"],
        stdin=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


# --- the target -------------------------------------------------------------------------------


def test_an_unknown_pid(tmp_path: Path) -> None:
    pid = 4_000_000  # above the kernel's pid_max on Linux: no such process, ever
    done = asgiprof("attach", str(pid), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert_usage_error(done, f"no process with PID {pid}", "check the PID")
    assert not (tmp_path / "out").exists()


def test_an_access_log_that_is_not_a_file(
    tmp_path: Path, python_sleeper: subprocess.Popen[bytes]
) -> None:
    missing = tmp_path / "no-such.log"
    done = asgiprof(
        *("attach", str(python_sleeper.pid), "--access-log", str(missing)),
        *("--out", str(tmp_path / "out")),
        cwd=tmp_path,
    )
    assert_usage_error(done, f"--access-log {missing}: cannot read it")
    assert not (tmp_path / "out").exists()
    assert python_sleeper.poll() is None  # never touched


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (("--scout-rate", "5"), "--scout-rate 5 is below the sampler's floor of 10 Hz"),
        (("--rate", "50", "--scout-rate", "50"), "--scout-rate 50 is not below --rate 50"),
        (("--scout-rate", "20", "--nonblocking"), "--nonblocking does not pause it"),
    ],
)
def test_a_scout_rate_that_cannot_be(
    tmp_path: Path, python_sleeper: subprocess.Popen[bytes], flags: tuple[str, ...], needle: str
) -> None:
    done = asgiprof(
        "attach", str(python_sleeper.pid), *flags, "--out", str(tmp_path / "out"), cwd=tmp_path
    )
    assert_usage_error(done, needle)
    assert not (tmp_path / "out").exists()
    assert python_sleeper.poll() is None  # never touched


@pytest.mark.usefixtures("needs_ptrace")
def test_a_pid_that_is_not_python(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        done = asgiprof("attach", str(sleeper.pid), "--out", str(tmp_path / "out"), cwd=tmp_path)
    finally:
        sleeper.kill()
        sleeper.wait(10)
    assert_usage_error(done, f"process {sleeper.pid} (sleep) is not a Python process")
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("needs_ptrace")
def test_a_python_process_that_is_no_asgi_server_is_refused_after_one_chunk(
    tmp_path: Path, python_sleeper: subprocess.Popen[bytes]
) -> None:
    # WHEN asgiprof attaches to a Python process without an event loop, for a long time
    started = time.monotonic()
    done = asgiprof(
        "attach",
        str(python_sleeper.pid),
        "--duration",
        "60",
        "--out",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    # THEN it says so after its first chunk, not after 60 s, and keeps no output
    assert_usage_error(done, "runs no asyncio or uvloop event loop", "asgiprof run --")
    assert time.monotonic() - started < 20
    assert not (tmp_path / "out").exists()
    # ... and the process it looked at runs on
    assert python_sleeper.poll() is None
    assert psutil.Process(python_sleeper.pid).status() not in ("stopped", "tracing-stop")


@pytest.mark.usefixtures("needs_ptrace")
def test_a_launched_command_that_is_no_asgi_server_is_stopped_and_refused(
    tmp_path: Path,
) -> None:
    # GIVEN a command that listens on a port but runs no event loop (a sync HTTP server)
    port = free_port()
    done = asgiprof(
        "run",
        "--duration",
        "60",
        "--out",
        str(tmp_path / "out"),
        "--",
        sys.executable,
        "-m",
        "http.server",
        "--bind",
        HOST,
        str(port),
        cwd=tmp_path,
        timeout_s=60,
    )
    assert_usage_error(done, "the launched command", "runs no asyncio or uvloop event loop")
    assert not (tmp_path / "out").exists()  # the autouse guard checks the server is gone


def test_an_app_spec_that_does_not_import(tmp_path: Path) -> None:
    port = free_port()
    done = asgiprof(
        "run",
        "--out",
        str(tmp_path / "out"),
        "--",
        sys.executable,
        "-m",
        "uvicorn",
        "no_such_module:app",
        "--host",
        HOST,
        "--port",
        str(port),
        cwd=tmp_path,
    )
    assert_usage_error(
        done,
        "could not import the app no_such_module:app",
        'Could not import module "no_such_module"',
        "run asgiprof from the directory the app is imported from",
    )
    assert not (tmp_path / "out").exists()


# --- permission -------------------------------------------------------------------------------


def _nobody_can_run(argv: list[str], env: dict[str, str]) -> bool:
    try:
        done = subprocess.run(
            [*argv, "-c", "import asgiprof.cli, psutil, orjson"],
            env=env,
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            cwd="/",
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@pytest.fixture(scope="module")
def as_nobody() -> tuple[list[str], dict[str, str]]:
    """(interpreter argv, environment) that run asgiprof as the unprivileged user nobody.

    The venv's python may live under a directory nobody cannot enter (/root): then the
    system's interpreter of the same version runs it, with our packages on PYTHONPATH.
    """
    if os.geteuid() != 0:
        pytest.skip("switching to the user nobody needs root")
    paths = [str(REPO), *(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))]
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "PYTHONPATH": os.pathsep.join(paths),
        "HOME": "/tmp",
        "COLUMNS": "200",
    }
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (
        sys.executable,
        os.path.realpath(sys.executable),
        f"/usr/bin/python{version}",
    ):
        if _nobody_can_run([candidate], env):
            return [candidate], env
    pytest.skip(f"no Python {version} that the user nobody may run can import asgiprof here")


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A directory the user nobody may write to (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="asgiprof-nobody-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _run_as_nobody(as_nobody: tuple[list[str], dict[str, str]], *args: str, cwd: Path) -> Finished:
    argv, env = as_nobody
    done = subprocess.run(
        [*argv, "-m", "asgiprof", *args],
        env=env,
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return Finished(done.returncode, done.stdout, done.stderr)


@pytest.mark.usefixtures("needs_ptrace")
def test_permission_denied_explains_root_capability_yama_and_containers(
    as_nobody: tuple[list[str], dict[str, str]],
    nobody_dir: Path,
    server_factory: ServerFactory,
) -> None:
    # GIVEN a server owned by root and asgiprof running as nobody
    server = server_factory("healthy")
    done = _run_as_nobody(
        as_nobody, "attach", str(server.pid), "--out", str(nobody_dir / "out"), cwd=nobody_dir
    )
    # THEN the message says why (another user) and every way to grant ptrace
    assert_usage_error(
        done,
        f"cannot read the memory of process {server.pid}: permission denied",
        "runs as root (uid 0) and asgiprof as nobody (uid 65534)",
        "root",
        "CAP_SYS_PTRACE",
        "kernel.yama.ptrace_scope",
        "--cap-add SYS_PTRACE",
    )
    assert not (nobody_dir / "out").exists()
    assert psutil.Process(server.pid).status() not in ("stopped", "tracing-stop")


def test_an_output_directory_nobody_may_write(
    as_nobody: tuple[list[str], dict[str, str]], nobody_dir: Path
) -> None:
    locked = nobody_dir / "locked"
    locked.mkdir(mode=0o555)
    done = _run_as_nobody(
        as_nobody, "run", "--out", str(locked / "out"), "--", "uvicorn", "app:app", cwd=nobody_dir
    )
    assert_usage_error(done, f"cannot write to output directory {locked / 'out'}", "writable --out")


# --- py-spy -----------------------------------------------------------------------------------


def test_py_spy_missing_from_path_and_from_the_environment(tmp_path: Path) -> None:
    # GIVEN an interpreter whose bin directory has no py-spy, and a PATH without one
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python"
    python.symlink_to(os.path.realpath(sys.executable))
    paths = [str(REPO), *(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))]
    env = {
        "PATH": str(tmp_path / "empty"),
        "PYTHONPATH": os.pathsep.join(paths),
        "COLUMNS": "200",
    }
    done = subprocess.run(
        [str(python), "-m", "asgiprof", "attach", str(os.getpid()), "--out", "out"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_usage_error(
        Finished(done.returncode, done.stdout, done.stderr),
        f"py-spy was not found (neither in {bin_dir} nor on PATH)",
        "pip install 'py-spy>=0.4,<0.5'",
        "ASGIPROF_PYSPY=",
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("script", "needle"),
    [
        (None, "is not an executable file"),
        ("#!/bin/sh\necho 'not the tool you want'\n", "is not a usable py-spy"),
        ("#!/bin/sh\necho 'py-spy 0.2.2'\n", "py-spy 0.2.2 at"),
        ("#!/no/such/interpreter\n", "does not run"),
    ],
)
def test_an_unusable_py_spy(tmp_path: Path, script: str | None, needle: str) -> None:
    fake = tmp_path / "py-spy"
    if script is not None:
        fake.write_text(script)
        fake.chmod(0o755)
    done = asgiprof(
        "run",
        "--out",
        str(tmp_path / "out"),
        "--",
        sys.executable,
        "-m",
        "uvicorn",
        "x:app",
        cwd=tmp_path,
        env={"ASGIPROF_PYSPY": str(fake)},
    )
    assert_usage_error(done, needle, "ASGIPROF_PYSPY")
    assert not (tmp_path / "out").exists()  # nor server.log: no server was started


# --- output directories and saved profiles ------------------------------------------------


def test_an_output_path_that_cannot_be_a_directory(tmp_path: Path) -> None:
    file = tmp_path / "a-file"
    file.write_text("x")
    for out, needle in (
        (file, f"output path {file} exists and is not a directory"),
        (file / "out", f"cannot write to output directory {file / 'out'}"),
    ):
        done = asgiprof("run", "--out", str(out), "--", "uvicorn", "app:app", cwd=tmp_path)
        assert_usage_error(done, needle, "--out")


def test_an_output_directory_that_holds_another_profile(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "raw").mkdir(parents=True)
    (out / store.META).write_text('{"format": 1}')
    done = asgiprof("run", "--out", str(out), "--", "uvicorn", "app:app", cwd=tmp_path)
    assert_usage_error(
        done, f"output directory {out} already holds a profile", f"asgiprof report {out}"
    )
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "raw"]  # untouched


@pytest.fixture(scope="module")
def saved_profile(tmp_path_factory: pytest.TempPathFactory, ptrace_check: object) -> Path:
    """A real three-chunk profile of examples/blocking_sleep.py, made once."""
    from tests.conftest import EXAMPLES_DIR, PtraceCheck

    assert isinstance(ptrace_check, PtraceCheck)
    if not ptrace_check.ok:
        pytest.skip(ptrace_check.reason)
    out = tmp_path_factory.mktemp("saved") / "out"
    port = free_port()
    done = asgiprof(
        "run",
        "--duration",
        "5",
        "--out",
        str(out),
        "--",
        sys.executable,
        "-m",
        "uvicorn",
        "blocking_sleep:app",
        "--host",
        HOST,
        "--port",
        str(port),
        "--loop",
        "asyncio",
        cwd=EXAMPLES_DIR,
        timeout_s=90,
    )
    assert done.returncode == 0, done.stderr
    assert len(store.chunk_files(out)) >= 2
    return out


def _damaged_copy(saved: Path, tmp_path: Path, name: str, cut: int | None = None) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(saved, out)
    path = out / name
    if cut is None:
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:cut])
    return out


@pytest.mark.parametrize(
    ("name", "cut", "needles"),
    [
        ("meta.json", 40, ["meta.json is unreadable"]),
        ("meta.json", None, ["meta.json is missing", "not an asgiprof output directory"]),
        ("routes.json", 17, ["routes.json is unreadable"]),
        ("resources.jsonl", 0, []),  # an empty resource log is no error: see below
    ],
)
def test_report_of_a_damaged_profile_names_the_damaged_file(
    saved_profile: Path, tmp_path: Path, name: str, cut: int | None, needles: list[str]
) -> None:
    out = _damaged_copy(saved_profile, tmp_path, name, cut)
    done = asgiprof("report", str(out), cwd=tmp_path)
    if not needles:
        assert done.returncode == 0, done.stderr
        return
    assert_usage_error(done, str(out), *needles)


def test_report_skips_a_truncated_chunk_and_says_so(saved_profile: Path, tmp_path: Path) -> None:
    second = store.chunk_files(saved_profile)[1].name  # chunk-0002, in py-spy's format
    out = _damaged_copy(saved_profile, tmp_path, f"raw/{second}", cut=500)
    (out / "raw/chunk-0001.json").write_bytes(b'{"start_s": "soon"}')  # a damaged span too
    done = asgiprof("report", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"unreadable chunk skipped: {second}: not valid JSON" in " ".join(done.stdout.split())


def test_report_of_a_profile_whose_every_chunk_is_truncated(
    saved_profile: Path, tmp_path: Path
) -> None:
    out = tmp_path / "copy"
    shutil.copytree(saved_profile, out)
    for chunk in store.chunk_files(out):
        chunk.write_bytes(chunk.read_bytes()[:100])
    done = asgiprof("report", str(out), cwd=tmp_path)
    assert_usage_error(done, f"no readable py-spy output in {out / 'raw'}")


def test_report_of_something_that_is_no_profile(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert_usage_error(
        asgiprof("report", str(tmp_path / "empty"), cwd=tmp_path), "meta.json is missing"
    )
    assert_usage_error(
        asgiprof("report", str(tmp_path / "nowhere"), cwd=tmp_path), "is not a directory"
    )
    (tmp_path / "bad" / "raw").mkdir(parents=True)
    (tmp_path / "bad" / "meta.json").write_text('{"format": 1, "sampling": {"rate_hz": "x"}}')
    assert_usage_error(
        asgiprof("report", str(tmp_path / "bad"), cwd=tmp_path), "meta.json is damaged"
    )


def test_ctrl_c_while_the_server_starts_stops_it(tmp_path: Path) -> None:
    # GIVEN a server command that takes long to start listening
    app = tmp_path / "slow_start.py"
    app.write_text("import time\ntime.sleep(30)\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asgiprof",
            "run",
            "--out",
            str(tmp_path / "out"),
            "--",
            sys.executable,
            str(app),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def servers() -> list[psutil.Process]:
        # the server's process, not a short-lived helper asgiprof runs first (a CI run
        # once caught one, saw it gone, and found no child at all)
        found = []
        for child in psutil.Process(proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if str(app) in child.cmdline():
                    found.append(child)
        return found

    try:
        # A CI run once saw no server within 30 s (cause unknown: a failure now shows what
        # asgiprof said); asgiprof checks py-spy and the command's Python before launching
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not servers() and proc.poll() is None:
            time.sleep(0.05)
        children = servers()
        if not children:
            proc.kill()
            out, err = proc.communicate(timeout=10)
            raise AssertionError(
                f"the server was not started (rc {proc.returncode}):\n{out}\n{err}"
            )
        # WHEN the user presses Ctrl-C while asgiprof waits for it
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    # THEN asgiprof ends and so does the server it started
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive
