"""Shared fixtures: real uvicorn servers (`server_factory`), `examples_dir`, a once-per-session
ptrace check (`needs_ptrace`), and an autouse guard that fails tests leaving children behind.
"""

from __future__ import annotations

import selectors
import subprocess
import sys
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from asgiprof.errors import SamplerError
from asgiprof.record.sampler import find_pyspy
from tests.servers import ServerFactory, ServerProcess

REPO = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = REPO / "examples"

# A child still alive this long after its test ended was left behind.
LEAK_GRACE_S = 3.0
# Helpers the stdlib starts once and keeps for the session; they are not a test's leak.
LONG_LIVED_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")

PTRACE_HOWTO = (
    "run the tests as root or with CAP_SYS_PTRACE (docker run --cap-add SYS_PTRACE), "
    "or allow ptrace of children with `sysctl kernel.yama.ptrace_scope=0`"
)

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Keep each phase's report on the item so fixtures can tell, at teardown, that the test
    # failed and print the server logs that explain it.
    report: pytest.TestReport = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(_REPORTS, {})
    return any(report.failed for report in reports.values())


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return EXAMPLES_DIR


def _process_key(proc: psutil.Process) -> tuple[int, float]:
    # The PID with its start time: a PID reused by a new child counts as a new child.
    try:
        return proc.pid, proc.create_time()
    except psutil.Error:
        return proc.pid, 0.0


def _children() -> list[psutil.Process]:
    return list(psutil.Process().children(recursive=True))


def _describe(proc: psutil.Process) -> str:
    try:
        return f"PID {proc.pid}: {' '.join(proc.cmdline())[:200]}"
    except psutil.Error:
        return f"PID {proc.pid}"


def _is_long_lived_helper(proc: psutil.Process) -> bool:
    try:
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return any(helper in cmdline for helper in LONG_LIVED_HELPERS)


@pytest.fixture(autouse=True)
def _no_leaked_children() -> Iterator[None]:
    """Fail a test whose child processes outlive it; kill them by PID first."""
    before = {_process_key(proc) for proc in _children()}
    yield
    new = [
        proc
        for proc in _children()
        if _process_key(proc) not in before and not _is_long_lived_helper(proc)
    ]
    if not new:
        return
    # Children that are exiting get a grace period; wait_procs also reaps our zombies.
    _, alive = psutil.wait_procs(new, timeout=LEAK_GRACE_S)
    if not alive:
        return
    leaked = [_describe(proc) for proc in alive]
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=LEAK_GRACE_S)
    pytest.fail("the test left child processes running (now killed):\n  " + "\n  ".join(leaked))


@pytest.fixture
def server_factory(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    examples_dir: Path,
    _no_leaked_children: None,  # requested so its leak check runs after servers stop
) -> Iterator[ServerFactory]:
    """Start uvicorn servers (cwd defaults to examples/); all are stopped when the test ends,
    and their logs are printed if it failed."""
    servers: list[ServerProcess] = []

    def make(
        module: str,
        *,
        cwd: Path | None = None,
        start: bool = True,
        app: str = "app",
        port: int | None = None,
        loop: str = "asyncio",
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        ready_path: str | None = "/",
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
    ) -> ServerProcess:
        server = ServerProcess(
            module,
            cwd=cwd if cwd is not None else examples_dir,
            log_dir=tmp_path,
            app=app,
            port=port,
            loop=loop,
            extra_args=extra_args,
            env=env,
            ready_path=ready_path,
            start_timeout_s=start_timeout_s,
            stop_timeout_s=stop_timeout_s,
        )
        servers.append(server)
        return server.start() if start else server

    try:
        yield make
    finally:
        errors: list[BaseException] = []
        for server in reversed(servers):
            try:
                server.stop()
            except BaseException as exc:  # stop every server even if one fails to stop
                errors.append(exc)
        if _failed(request):
            for server in servers:
                print(f"--- {' '.join(server.command)} (exit {server.returncode}) ---")
                print(server.log_text())
        if errors:
            raise errors[0]


@dataclass(frozen=True, slots=True)
class PtraceCheck:
    ok: bool
    reason: str


def _wait_for_line(proc: subprocess.Popen[str], timeout_s: float) -> str | None:
    """The child's first stdout line, or None if it printed none within the timeout."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=timeout_s):
            return None
    return proc.stdout.readline()


def _probe_ptrace() -> PtraceCheck:
    try:
        pyspy = find_pyspy()
    except SamplerError as exc:
        return PtraceCheck(False, exc.message)
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if _wait_for_line(child, timeout_s=10.0) != "ready\n":
            return PtraceCheck(False, "the ptrace probe's child Python did not start")
        try:
            dump = subprocess.run(
                [pyspy, "dump", "--pid", str(child.pid)],
                capture_output=True,
                text=True,
                timeout=30.0,
            )
        except subprocess.TimeoutExpired:
            return PtraceCheck(False, f"py-spy dump hung for 30 s: {PTRACE_HOWTO}")
        if dump.returncode != 0:
            said = (dump.stderr or dump.stdout).strip().splitlines()
            return PtraceCheck(
                False,
                f"py-spy cannot attach to a child process ({said[-1] if said else 'no output'})"
                f": {PTRACE_HOWTO}",
            )
        return PtraceCheck(True, "")
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=5.0)
        assert child.stdout is not None
        child.stdout.close()


@pytest.fixture(scope="session")
def ptrace_check() -> PtraceCheck:
    """Whether py-spy may attach to our child processes, probed once per session."""
    started = time.monotonic()
    check = _probe_ptrace()
    if not check.ok:
        print(f"ptrace probe failed after {time.monotonic() - started:.1f} s: {check.reason}")
    return check


@pytest.fixture
def needs_ptrace(ptrace_check: PtraceCheck) -> None:
    """Skip the test, saying how to grant ptrace, when py-spy cannot attach here.

    Use as an argument or `pytestmark = pytest.mark.usefixtures("needs_ptrace")`.
    """
    if not ptrace_check.ok:
        pytest.skip(ptrace_check.reason)
