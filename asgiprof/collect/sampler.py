"""Sample a target with py-spy in bounded chunks, each written to OUT/raw as it ends.

py-spy writes its output only when it stops, and a killed py-spy writes nothing: short
chunks bound what a crash can lose. Every py-spy gets SIGINT (which makes it write its
file) when the thread that started it dies, so even a killed asgiprof keeps its samples;
py-spy prints to OUT/raw/pyspy.log, never to a pipe of ours, because a py-spy whose
stdout pipe lost its reader dies on the broken pipe before it writes its file.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from asgiprof import store
from asgiprof.collect.command import is_python_program
from asgiprof.errors import (
    PTRACE_HELP,
    AsgiprofError,
    CorruptProfileError,
    NotPythonError,
    PtraceDeniedError,
    PyspyMissingError,
    SamplerError,
    TargetNotFoundError,
)

# Set to a py-spy executable to use that one instead of searching.
PYSPY_ENV = "ASGIPROF_PYSPY"
PYSPY_INSTALL = "pip install 'py-spy>=0.4,<0.5'"
MIN_PYSPY = (0, 4)

_PR_SET_PDEATHSIG = 1
_SUMMARY = re.compile(r"Samples: (\d+) Errors: (\d+)")
# py-spy prints this line once it has attached and starts sampling.
_STARTED = b"Sampling process"
# ... and this one (at most once a second) when it falls more than 1 s behind its rate.
_BEHIND = re.compile(r"([\d.]+)(ns|µs|us|ms|s) behind in sampling")
_UNIT_S = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}
_VERSION = re.compile(r"py-spy (\d+)\.(\d+)\.(\d+)")
_CAP_SYS_PTRACE = 19
# How often py-spy's log and output are looked at while it starts and stops sampling.
_POLL_S = 0.005


def _find_prctl() -> Callable[..., int] | None:
    # Resolved once, here: after fork, the child may only call the function, since looking
    # a symbol up there could wait forever on a loader lock another thread held at fork.
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _find_prctl()


def pdeathsig(sig: int) -> Callable[[], None]:
    """preexec_fn: have the kernel send `sig` to the child when its parent thread dies.

    A parent that died between fork and prctl would never send it: the child then sends
    it to itself. Best effort where prctl does not exist (not Linux).
    """
    parent = os.getpid()

    def set_it() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return set_it


def kill_group(pgid: int) -> None:
    """SIGKILL a process group we started (its own session), if anything is left in it."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def find_pyspy(environ: Mapping[str, str] | None = None, python: str | None = None) -> str:
    """$ASGIPROF_PYSPY, else py-spy beside `python` (default: this interpreter, as in a
    venv or pipx), else on `environ`'s PATH; PyspyMissingError naming the fix otherwise."""
    env = os.environ if environ is None else environ
    explicit = env.get(PYSPY_ENV, "")
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise PyspyMissingError(
            f"{PYSPY_ENV}={explicit} is not an executable file: point it at py-spy, or unset "
            "it to use the py-spy installed with asgiprof"
        )
    bin_dir = Path(python or sys.executable).parent
    beside = bin_dir / "py-spy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("py-spy", path=env.get("PATH", os.defpath))
    if found:
        return found
    raise PyspyMissingError(
        f"py-spy was not found (neither in {bin_dir} nor on PATH): install it into "
        f"asgiprof's environment ({PYSPY_INSTALL}) or set {PYSPY_ENV}=/path/to/py-spy"
    )


def check_pyspy(pyspy: str, timeout_s: float = 20.0) -> tuple[int, int, int]:
    """Run `py-spy --version`: the version, or PyspyMissingError saying why it is unusable."""
    fix = f"reinstall it ({PYSPY_INSTALL}) or set {PYSPY_ENV} to a working py-spy"
    try:
        done = subprocess.run(
            [pyspy, "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
        )
    except OSError as exc:
        raise PyspyMissingError(
            f"py-spy at {pyspy} does not run ({exc.strerror or exc}): {fix}"
        ) from None
    except subprocess.TimeoutExpired:
        raise PyspyMissingError(
            f"py-spy at {pyspy} did not answer `--version` within {timeout_s:g} s: {fix}"
        ) from None
    said = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
    match = _VERSION.search(said)
    if done.returncode != 0 or match is None:
        first = said.splitlines()[0][:120] if said else f"nothing, exit status {done.returncode}"
        raise PyspyMissingError(
            f"{pyspy} is not a usable py-spy (`--version` said: {first}): {fix}"
        )
    version = (int(match[1]), int(match[2]), int(match[3]))
    if version[:2] < MIN_PYSPY:
        raise PyspyMissingError(
            f"py-spy {'.'.join(map(str, version))} at {pyspy} is too old: asgiprof needs "
            f"{'.'.join(map(str, MIN_PYSPY))} or newer: upgrade it ({PYSPY_INSTALL}) or set "
            f"{PYSPY_ENV} to a newer py-spy"
        )
    return version


@dataclass(frozen=True, slots=True)
class SamplerConfig:
    rate_hz: int = 100
    chunk_s: int = 2  # short chunks: less lost on a crash, sample times good to ~0.1 s
    subprocesses: bool = True
    nonblocking: bool = False
    pyspy: str = ""  # resolved by find_pyspy() when empty


# --- why py-spy failed ----------------------------------------------------------------------


def _cap_bits(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _ptrace_scope() -> int | None:
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope", encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _user_name(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def explain_ptrace_denied(pid: int) -> str:
    """The user's message when the kernel refuses py-spy the memory of `pid`: what in this
    machine's setup refuses it (another user, Yama, a container), the fix, then the options."""
    cause = ""
    has_cap = bool((_cap_bits("CapEff") or 0) >> _CAP_SYS_PTRACE & 1)
    try:
        owner = psutil.Process(pid).uids().real
    except (psutil.Error, AttributeError):
        owner = None
    me = os.geteuid() if hasattr(os, "geteuid") else None
    scope = _ptrace_scope()
    if owner is not None and me is not None and owner != me and not has_cap:
        cause = (
            f"process {pid} runs as {_user_name(owner)} and asgiprof as {_user_name(me)}: "
            f"run asgiprof as root (sudo) or as that user"
        )
    elif scope is not None and scope >= 1 and not has_cap:
        cause = (
            f"kernel.yama.ptrace_scope is {scope}, so only root may read another process: "
            "run asgiprof as root (sudo), or allow it with `sudo sysctl kernel.yama.ptrace_scope=0`"
        )
    elif not has_cap and not bool((_cap_bits("CapBnd") or 0) >> _CAP_SYS_PTRACE & 1):
        cause = (
            "this container or sandbox withholds CAP_SYS_PTRACE: start it with "
            "`--cap-add SYS_PTRACE` (docker/podman) or add SYS_PTRACE to the pod's "
            "securityContext capabilities"
        )
    head = f"cannot read the memory of process {pid}: permission denied"
    return f"{head}; {cause}. {PTRACE_HELP}" if cause else f"{head}. {PTRACE_HELP}"


def classify_failure(pid: int, said: str) -> AsgiprofError:
    """Turn py-spy's error output into the user's problem and its fix."""
    text = said.strip()
    lowered = text.lower()
    if not psutil.pid_exists(pid):
        return TargetNotFoundError(f"no process with PID {pid} (it may have exited)")
    if "permission denied" in lowered or "operation not permitted" in lowered:
        return PtraceDeniedError(explain_ptrace_denied(pid))
    if "python version" in lowered or "python interpreter" in lowered or "no python" in lowered:
        try:
            proc = psutil.Process(pid)
            name, argv0 = proc.name(), (proc.cmdline() or [""])[0]
        except psutil.Error:
            name, argv0 = "?", ""
        if is_python_program(name) or is_python_program(argv0):
            return SamplerError(
                f"py-spy could not read the Python interpreter of process {pid} ({name}): it "
                f"may be a Python release newer than this py-spy knows; upgrade py-spy "
                f"(pip install -U py-spy)"
            )
        return NotPythonError(
            f"process {pid} ({name}) is not a Python process py-spy can read: give the PID "
            "of the Python server (e.g. the uvicorn or gunicorn process)"
        )
    first = next((ln for ln in text.splitlines() if ln.startswith("Error")), text[:200])
    return SamplerError(f"py-spy failed on process {pid}: {first or 'no output'}")


def _lag_s(log: str) -> float:
    """The largest delay py-spy reported falling behind by in `log` (0 when it never did)."""
    return max(
        (float(m[1]) * _UNIT_S[m[2]] for m in _BEHIND.finditer(log) if m[1].count(".") <= 1),
        default=0.0,
    )


# --- the sampler ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ended:
    """A py-spy run that ended: where and when it sampled, what it said."""

    index: int
    ok: bool  # it left a non-empty output file
    said: str
    start_s: float
    end_s: float
    rc: int


class Sampler:
    """Runs py-spy chunk after chunk on `pid` in a background thread until stopped.

    `on_chunk(index)` runs in the sampler thread after each chunk reached OUT/raw.
    """

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
        self.intervals = 0  # sampling instants: the chunks' longest thread sample counts
        self.error: AsgiprofError | None = None
        self.target_exited = False
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._chunk_started: float | None = None
        self._thread = threading.Thread(target=self._run, name="asgiprof-sampler", daemon=True)

    # -- control ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the current py-spy to stop and write its chunk; returns at once."""
        self._stop.set()
        self._signal(signal.SIGINT)

    def kill(self) -> None:
        """Abort: SIGKILL py-spy by PID, without waiting (py-spy seizes threads with
        PTRACE_SEIZE, so the kernel lets the target run on when py-spy dies)."""
        self._stop.set()
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        with self._lock:
            proc = self._proc
            if proc is not None and proc.returncode is None:
                try:
                    proc.send_signal(sig)
                except ProcessLookupError:
                    pass

    def join(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def current_chunk_started(self) -> float | None:
        return self._chunk_started

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
        # The chunk that just ended is sealed while the next one samples: the time
        # between two chunks is not sampled, so it holds nothing but starting py-spy.
        unsealed: _Ended | None = None
        try:
            while not self._stop.is_set():
                if _is_gone(self.pid):
                    self.target_exited = True
                    break
                index += 1
                spawned = self._spawn(index)
                if unsealed is not None:
                    self._seal(unsealed)
                    unsealed = None
                if spawned is None:
                    break
                ended = self._collect(index, *spawned)
                if ended.ok:
                    failures = 0
                    self.chunks += 1
                    unsealed = ended
                    continue
                if _is_gone(self.pid):
                    self.target_exited = self.chunks > 0 or self.target_exited
                    if self.chunks == 0:
                        self.error = classify_failure(self.pid, ended.said)
                    break
                if self._stop.is_set():
                    break
                failures += 1
                if self.chunks == 0 or failures >= 3:
                    self.error = classify_failure(self.pid, ended.said)
                    break
                index -= 1  # reuse the number: chunk files stay contiguous
            if unsealed is not None:
                self._seal(unsealed)
        except OSError as exc:  # OUT vanished or filled up: nothing more can be kept
            self.error = SamplerError(f"cannot write py-spy's output to {self.out}: {exc}")
            self._signal(signal.SIGKILL)

    def _chunk_path(self, index: int) -> Path:
        return self.out / store.RAW_DIR / f"{store.chunk_name(index)}.speedscope.json"

    def _spawn(self, index: int) -> tuple[subprocess.Popen[bytes], int, float] | None:
        """Start py-spy for chunk `index`: the process, where its lines start in the
        log, and when it was started (seconds since t0); None once asked to stop."""
        path = self._chunk_path(index)
        path.unlink(missing_ok=True)  # left by a py-spy killed while writing it
        with open(self.out / store.RAW_DIR / store.PYSPY_LOG, "ab") as log:
            offset = log.tell()
            spawned_s = self._chunk_started = time.time() - self.t0
            with self._lock:
                if self._stop.is_set():
                    return None
                proc = self._proc = subprocess.Popen(
                    self._command(path),
                    stdout=log,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                    preexec_fn=pdeathsig(signal.SIGINT),
                    start_new_session=True,  # the terminal's Ctrl-C is ours to forward
                )
        return proc, offset, spawned_s

    def _collect(
        self, index: int, proc: subprocess.Popen[bytes], offset: int, spawned_s: float
    ) -> _Ended:
        """Wait for the py-spy of chunk `index` to end; what it left, not yet sealed."""
        log = self.out / store.RAW_DIR / store.PYSPY_LOG
        path = self._chunk_path(index)
        try:
            start_s, sampled_until = self._wait(proc, log, offset, path)
        finally:
            with self._lock:
                self._proc = None
        said = _read_from(log, offset)
        return _Ended(
            index=index,
            ok=path.exists() and path.stat().st_size > 0,
            said=said,
            start_s=start_s if start_s is not None else spawned_s,
            end_s=sampled_until if sampled_until is not None else time.time() - self.t0,
            rc=proc.returncode if proc.returncode is not None else -1,
        )

    def _seal(self, ended: _Ended) -> None:
        said = ended.said
        m = _SUMMARY.search(said)
        try:
            intervals = store.seal_chunk(self._chunk_path(ended.index))
        except CorruptProfileError as exc:  # kept for `report` to skip and name
            said += f"\nunreadable output: {exc.message}"
            intervals = 0
        samples = int(m.group(1)) if m else 0
        errors = int(m.group(2)) if m else 0
        store.write_chunk_meta(
            self.out,
            ended.index,
            start_s=ended.start_s,
            end_s=ended.end_s,
            samples=samples,
            errors=errors,
            rc=ended.rc,
            intervals=intervals,
            lag_s=_lag_s(said),
        )
        self.samples += samples
        self.errors += errors
        self.intervals += intervals
        if self.on_chunk is not None:
            self.on_chunk(ended.index)

    def _wait(
        self, proc: subprocess.Popen[bytes], log: Path, offset: int, output: Path
    ) -> tuple[float | None, float | None]:
        """Wait for py-spy to end (bounded). Returns when it started sampling (it says so in
        its log) and when it stopped (it creates its output file then, and takes a while to
        write it), as seconds since t0, each None when not seen."""
        deadline = time.monotonic() + self.config.chunk_s + 60
        started: float | None = None
        stopped: float | None = None
        try:
            while started is None and time.monotonic() < deadline:
                if _exited(proc, _POLL_S):
                    break
                if _STARTED in _read_bytes_from(log, offset, 4096):
                    started = time.time() - self.t0
            if started is not None:  # sleep through most of the chunk
                nap_s = started + 0.9 * self.config.chunk_s - (time.time() - self.t0)
                _exited(proc, max(0.0, min(nap_s, deadline - time.monotonic())))
            while proc.returncode is None and time.monotonic() < deadline:
                if stopped is None and output.exists():
                    stopped = time.time() - self.t0
                _exited(proc, _POLL_S)
            if proc.returncode is None:
                proc.kill()
                proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        if stopped is None and output.exists():
            stopped = time.time() - self.t0
        return started, stopped


def _exited(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        return False
    return True


def _read_bytes_from(path: Path, offset: int, limit: int = -1) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(limit)
    except OSError:
        return b""


def _read_from(path: Path, offset: int) -> str:
    return _read_bytes_from(path, offset, 1 << 20).decode("utf-8", "replace")


def _is_gone(pid: int) -> bool:
    """True once `pid` exited (a zombie included); a process we may not inspect is not gone."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False
