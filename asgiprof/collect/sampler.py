"""Sample a target with py-spy in bounded chunks, each written to OUT/raw as it ends.

py-spy writes its output only when it stops, and a killed py-spy writes nothing: short
chunks bound what a crash can lose. Every py-spy gets SIGINT (which makes it write its
file) when the thread that started it dies, so even a killed asgiprof keeps its samples.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from asgiprof import store
from asgiprof.errors import (
    PTRACE_HELP,
    AsgiprofError,
    NotPythonError,
    PtraceDeniedError,
    SamplerError,
    TargetNotFoundError,
)

_PR_SET_PDEATHSIG = 1
_SUMMARY = re.compile(r"Samples: (\d+) Errors: (\d+)")


def pdeathsig(sig: int) -> Callable[[], None]:
    """preexec_fn: have the kernel send `sig` to the child when its parent thread dies."""

    def set_it() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        except (OSError, AttributeError):  # not Linux: best effort only
            pass

    return set_it


def find_pyspy() -> str:
    """py-spy installed beside this interpreter (pipx/venv), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file():
        return str(beside)
    found = shutil.which("py-spy")
    if found:
        return found
    raise SamplerError(
        "py-spy was not found: install it into asgiprof's environment (pip install py-spy)"
    )


@dataclass(frozen=True, slots=True)
class SamplerConfig:
    rate_hz: int = 100
    chunk_s: int = 2  # short chunks: less lost on a crash, sample times good to ~0.1 s
    subprocesses: bool = True
    nonblocking: bool = False
    pyspy: str = ""  # resolved by find_pyspy() when empty


def classify_failure(pid: int, stderr: str) -> AsgiprofError:
    """Turn py-spy's error output into the user's problem and its fix."""
    text = stderr.strip()
    if not psutil.pid_exists(pid):
        return TargetNotFoundError(f"no process with PID {pid} (it may have exited)")
    if "Permission denied" in text or "Operation not permitted" in text:
        return PtraceDeniedError(f"cannot read process {pid}: permission denied. {PTRACE_HELP}")
    lowered = text.lower()
    if "python version" in lowered or "python interpreter" in lowered or "no python" in lowered:
        try:
            name = psutil.Process(pid).name()
        except psutil.Error:
            name = "?"
        return NotPythonError(
            f"process {pid} ({name}) is not a Python process py-spy can read: "
            "give the PID of the Python server (e.g. the uvicorn or gunicorn process)"
        )
    first = next((ln for ln in text.splitlines() if ln.startswith("Error")), text[:200])
    return SamplerError(f"py-spy failed on process {pid}: {first or 'no output'}")


class Sampler:
    """Runs py-spy chunk after chunk on `pid` in a background thread until stopped."""

    def __init__(
        self,
        pid: int,
        out: Path,
        t0: float,
        config: SamplerConfig,
        on_chunk: Callable[[int], None] | None = None,
    ) -> None:
        self.pid = pid
        self.out = out
        self.t0 = t0
        self.config = config
        self.pyspy = config.pyspy or find_pyspy()
        self.on_chunk = on_chunk
        self.chunks = 0
        self.samples = 0
        self.errors = 0
        self.error: AsgiprofError | None = None
        self.target_exited = False
        self._stop = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="asgiprof-sampler", daemon=True)

    # -- control ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the current py-spy to stop and write its chunk; returns at once."""
        self._stop.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """Abort: kill py-spy by PID without waiting for its output."""
        self._stop.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    def join(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def current_chunk_started(self) -> float | None:
        return self._chunk_started

    _chunk_started: float | None = None

    # -- work ------------------------------------------------------------------------------
    def _command(self, path: Path) -> list[str]:
        cmd = [self.pyspy, "record", "--idle", "--threads", "--format", "speedscope"]
        cmd += ["--rate", str(self.config.rate_hz), "--duration", str(self.config.chunk_s)]
        if self.config.subprocesses:
            cmd.append("--subprocesses")
        if self.config.nonblocking:
            cmd.append("--nonblocking")
        return [*cmd, "--pid", str(self.pid), "--output", str(path)]

    def _run(self) -> None:
        failures = 0
        index = 0
        while not self._stop.is_set():
            if not psutil.pid_exists(self.pid) or _is_zombie(self.pid):
                self.target_exited = True
                break
            index += 1
            ok, stderr = self._one_chunk(index)
            if ok:
                failures = 0
                continue
            if not psutil.pid_exists(self.pid) or _is_zombie(self.pid):
                self.target_exited = self.chunks > 0 or self.target_exited
                if self.chunks == 0:
                    self.error = classify_failure(self.pid, stderr)
                break
            failures += 1
            if self.chunks == 0 or failures >= 3:
                self.error = classify_failure(self.pid, stderr)
                break
            index -= 1  # reuse the number: chunk files stay contiguous

    def _one_chunk(self, index: int) -> tuple[bool, str]:
        path = self.out / store.RAW_DIR / f"{store.chunk_name(index)}.speedscope.json"
        start_s = time.time() - self.t0
        self._chunk_started = start_s
        proc = subprocess.Popen(
            self._command(path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            preexec_fn=pdeathsig(signal.SIGINT),
            start_new_session=True,  # the terminal's Ctrl-C is ours to forward, not py-spy's
        )
        with self._lock:
            self._proc = proc
        if self._stop.is_set():
            proc.send_signal(signal.SIGINT)
        try:
            stdout, stderr = proc.communicate(timeout=self.config.chunk_s + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate(timeout=10)
        finally:
            with self._lock:
                self._proc = None
        end_s = time.time() - self.t0
        m = _SUMMARY.search(stdout or "") or _SUMMARY.search(stderr or "")
        if not path.exists() or path.stat().st_size == 0:
            return False, (stderr or "") + (stdout or "")
        samples = int(m.group(1)) if m else 0
        errors = int(m.group(2)) if m else 0
        store.write_chunk_meta(
            self.out,
            index,
            start_s=start_s,
            end_s=end_s,
            samples=samples,
            errors=errors,
            rc=proc.returncode,
        )
        self.chunks += 1
        self.samples += samples
        self.errors += errors
        if self.on_chunk is not None:
            self.on_chunk(index)
        return True, stderr or ""


def _is_zombie(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return True
