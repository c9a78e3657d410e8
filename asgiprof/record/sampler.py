"""Sample a target with py-spy in bounded chunks, each written to OUT/raw as it ends.

py-spy writes its output only when it stops, and a killed py-spy writes nothing: short
chunks bound what a crash can lose. Every py-spy gets SIGINT (which makes it write its
file) when the thread that started it dies, so even a killed asgiprof keeps its samples;
each py-spy prints to a file (OUT/raw/chunk-NNNN.log, appended to OUT/raw/pyspy.log when
it ends), never to a pipe of ours, because a py-spy whose stdout pipe lost its reader dies
on the broken pipe before it writes its file. Chunks overlap at handover and a watchdog
keeps the target running (see `Sampler`).
"""

from __future__ import annotations

import ctypes
import math
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
from asgiprof.model import RateChange, behind_pace
from asgiprof.record.command import is_python_program
from asgiprof.record.watchdog import Watchdog, task_files
from asgiprof.store.profile import PAUSE_SLACK

# Set to a py-spy executable to use that one instead of searching.
PYSPY_ENV = "ASGIPROF_PYSPY"
# The chunks' format: speedscope (sample order: each chunk's span spread evenly over its
# samples) unless this says chrometrace (measured sample times; one-process targets only).
FORMAT_ENV = "ASGIPROF_PYSPY_FORMAT"


def chunk_format(pid: int, forks: bool = False) -> str:
    """speedscope (the samples, in order), or chrometrace (measured sample times) when
    ASGIPROF_PYSPY_FORMAT=chrometrace asks for it and the target is one process.

    chrometrace stamps each stack change with the time py-spy saw it, so a run lasts as long
    as it was seen, even when py-spy falls behind on a CPU-starved machine: speedscope's
    order-only samples spread each chunk's span evenly, which reads CPU blocks short and
    sleeps long there (bench/README.md "Measured sample times"). But chrometrace records
    changes, not samples: when py-spy itself is descheduled for 70 ms after one sample of a
    quick line, that line's run lasts 70 ms, and is counted as 7 samples, although py-spy
    looked once (it then takes the samples it owes back to back). The rule that tells one
    long call from many short steps (analyze/episodes.py) weighs how often consecutive
    samples repeat a line, so such runs invent blocks: a CI run on a loaded machine blamed
    an `await db.execute(select(...))` line for 7 episodes, 181 ms, that the app's own
    timing shows never happened. speedscope's counts are what py-spy saw; it is the
    default. Also, py-spy's chrometrace recorder diffs each sample against the previous one
    of the same thread id: forked workers share their main thread's pthread id, so servers
    that fork (`forks`, from the command line) or have children get speedscope always."""
    if forks or os.environ.get(FORMAT_ENV, "") != "chrometrace":
        return "speedscope"
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        children = []
    return "speedscope" if children else "chrometrace"


# py-spy (blocking) reads every thread's stack while the target's threads are stopped:
# ~15 us per frame. At 100 Hz that held a one-thread FastAPI app 6% of the time, the demo
# 10%, the busy app under wrk (aiosqlite's threads) 17-26%, and an app with 20 idle pool
# threads 43% (bench/README.md "What a sample costs"). The default only caps extremes: a
# limit of 5% lowered the busy app's rate to 15-28 Hz, where 5 of its 7 planted blocks
# (28-39 ms each) went unfound. Trust first; --max-pause 1 is there to choose.
DEFAULT_MAX_PAUSE = 0.3

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
    # The server forks workers (its command says so): chunks in speedscope (chunk_format).
    forks: bool = False
    # py-spy runs in a row that may fail (killed, crashed) before sampling gives up.
    max_failures: int = 3
    # The most of the wall time py-spy may hold the target paused (0: no limit): the rate
    # is lowered for the chunks after one that paused it longer (see `pause_s`).
    max_pause: float = DEFAULT_MAX_PAUSE
    # --scout-rate: start at this rate, and let `rate_policy` say when the full `rate_hz`
    # is needed (0: always `rate_hz`).
    scout_hz: int = 0


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


@dataclass(slots=True)
class _Run:
    """One py-spy process recording one chunk."""

    index: int
    proc: subprocess.Popen[bytes]
    log: Path
    rate_hz: int
    spawned_s: float
    started_s: float | None = None  # it said "Sampling process"
    stopped_s: float | None = None  # its output file appeared
    interrupted_s: float | None = None  # we sent SIGINT (the next chunk took over, or stop)
    halted: bool = False  # the watchdog stopped it (it held a target thread too long)
    alongside: bool = False  # started while another py-spy sampled (an overlapping handover)
    said: str = ""  # its log, once it ended
    # (wall s since t0, py-spy's CPU s) when first seen sampling, and the latest while it
    # sampled: py-spy's CPU time between them is the time it held the target (pause_s).
    # Per py-spy thread (tid: CPU s), as the thread that samples is not always the one
    # with the most CPU time at the first reading.
    cpu_first: tuple[float, dict[int, float]] | None = None
    cpu_last: tuple[float, dict[int, float]] | None = None


# py-spy writes its file about two sampling intervals after SIGINT (0.2-0.9 s at the 10 Hz
# floor, measured); one that does not end within this hangs.
_HUNG_AFTER_SIGINT_S = 5.0
# Rate control: a chunk whose py-spy fell behind its rate (`model.behind_pace`, or it said
# so) lowers the rate of the chunks after it, never below this...
MIN_RATE_HZ = 10
# ... and this many clean chunks in a row raise it a step back towards the asked rate.
_CLEAN_CHUNKS_TO_RAISE = 5
# A py-spy whose sampling thread is busy less than this share of the time keeps its rate.
_SPARE_TIME = 0.5
_CPU_EVERY_S = 0.05  # how often py-spy's CPU time is read while it samples


class Sampler:
    """Runs py-spy chunk after chunk on `pid` in a background thread until stopped.

    Chunks overlap by a few milliseconds: the next py-spy starts while the current one
    still samples, and the current one is stopped (SIGINT) once the next says it samples,
    so no instant goes unsampled between chunks (py-spy takes 50-300 ms to start). The
    store cuts the overlap (see `store.load_profile`). A watchdog makes sure py-spy never
    leaves a target thread stopped (see `record/watchdog.py`).

    `on_chunk(index)` runs in the sampler thread after each chunk reached OUT/raw;
    `rate_policy(index)` before it, with --scout-rate: the rate the chunks after it should
    aim for, and why (None: no change).
    """

    def __init__(
        self,
        pid: int,
        out: Path,
        t0: float,
        config: SamplerConfig,
        on_chunk: Callable[[int], None] | None = None,
        rate_policy: Callable[[int], tuple[int, str] | None] | None = None,
    ) -> None:
        self.pid = pid
        self.out = out
        self.t0 = t0
        self.config = config
        self.pyspy = config.pyspy or find_pyspy()
        self._format = chunk_format(pid, config.forks)  # of every chunk of this recording
        self.on_chunk = on_chunk
        self.rate_policy = rate_policy
        self.chunks = 0
        self.samples = 0
        self.errors = 0
        self.intervals = 0  # sampling instants: the chunks' longest thread sample counts
        self.sampled_s = 0.0  # instants / their chunk's rate: time sampled at the rate asked
        self.spanned_s = 0.0  # the kept chunks' spans (overlaps counted in each)
        self.last_end_s = 0.0  # when the last chunk kept ended (seconds since t0)
        self.max_lag_s = 0.0  # the furthest py-spy said it fell behind
        self.paused_s = 0.0  # how long py-spy held the target (chunks where it was measured)
        self.pause_measured_s = 0.0  # ... and those chunks' spans
        self.failed_runs = 0  # py-spy runs that left no output
        # The rate the sampler aims for (the asked rate, or --scout-rate's while scouting),
        # and the rate of the next chunk: lower when py-spy fell behind or paused too long.
        self.aim_hz = config.scout_hz or config.rate_hz
        self.rate_hz = self.aim_hz
        self._pause_cap_hz = math.inf  # the fastest rate within --max-pause, as last measured
        self.rate_changes: list[RateChange] = []
        self.error: AsgiprofError | None = None
        self.target_exited = False
        self._stop = threading.Event()
        self._runs: list[_Run] = []
        self._lock = threading.Lock()
        self._startup_s = 0.3  # how long py-spy takes to start sampling (measured)
        self._clean_chunks = 0
        self._overlap = True  # start the next py-spy before the current one stops
        self._deciding: _Run | None = None  # ended early for its pause, not yet finished
        self._thread = threading.Thread(target=self._run, name="asgiprof-sampler", daemon=True)
        self.watchdog = Watchdog(pid, self.pyspy_pids, self._halt_pid)

    # -- control ---------------------------------------------------------------------------

    @property
    def chunk_format(self) -> str:
        """speedscope or chrometrace (`chunk_format`), for every chunk of this recording."""
        return self._format

    def start(self) -> None:
        self.watchdog.start()
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
            for run in self._runs:
                if run.proc.returncode is None:
                    if sig == signal.SIGINT and run.interrupted_s is None:
                        run.interrupted_s = self._now()
                    try:
                        run.proc.send_signal(sig)
                    except ProcessLookupError:
                        pass

    def _halt_pid(self, pid: int, kill: bool) -> None:
        """The watchdog saw py-spy `pid` hold a target thread without letting it run: stop
        it (it writes its samples) or kill it, and sample more gently from now on."""
        with self._lock:
            for run in self._runs:
                if run.proc.pid != pid or run.proc.returncode is not None:
                    continue
                run.halted = True
                if run.interrupted_s is None:
                    run.interrupted_s = self._now()
                try:
                    run.proc.send_signal(signal.SIGKILL if kill else signal.SIGINT)
                except ProcessLookupError:
                    pass
                if not kill and run.rate_hz == self.rate_hz:
                    self._set_rate(
                        max(MIN_RATE_HZ, run.rate_hz // 2),
                        "py-spy held a target thread without letting it run",
                    )

    def _set_rate(self, to_hz: int, why: str, scout: bool = False) -> None:
        if to_hz != self.rate_hz:
            at_s = round(self._now(), 3)
            self.rate_changes.append(RateChange(at_s, self.rate_hz, to_hz, why, scout))
            self.rate_hz = to_hz

    def _aim(self, hz: int, why: str) -> None:
        """--scout-rate's decision: aim for `hz` from the next chunk on (at once, within
        --max-pause as last measured)."""
        if hz == self.aim_hz:
            return
        self.aim_hz = hz
        self._clean_chunks = 0
        to_hz = hz if hz < self.rate_hz else int(min(hz, self._pause_cap_hz))
        self._set_rate(max(MIN_RATE_HZ, to_hz), why, scout=True)

    def pyspy_pids(self) -> list[int]:
        """The py-spy processes running now."""
        with self._lock:
            return [r.proc.pid for r in self._runs if r.proc.returncode is None]

    def join(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def coverage(self) -> float:
        """Instants taken / instants the rates asked for inside the chunks' spans, 0..1
        (`SamplingInfo.coverage`; py-spy's random spacing makes it vary by
        1/sqrt(instants))."""
        return min(1.0, self.sampled_s / self.spanned_s) if self.spanned_s > 0 else 0.0

    # -- work ------------------------------------------------------------------------------
    def _command(self, path: Path, rate_hz: int) -> list[str]:
        # --duration is a backstop: the next chunk's start ends this one (SIGINT).
        backstop = self.config.chunk_s * 2 + 10
        cmd = [self.pyspy, "record", "--idle", "--threads", "--format", self._format]
        cmd += ["--rate", str(rate_hz), "--duration", str(backstop)]
        if self.config.subprocesses:
            cmd.append("--subprocesses")
        if self.config.nonblocking:
            cmd.append("--nonblocking")
        return [*cmd, "--pid", str(self.pid), "--output", str(path)]

    def _now(self) -> float:
        return time.time() - self.t0

    def _run(self) -> None:
        index = 0
        failures = 0
        try:
            while True:
                stopping = self._stop.is_set()
                if not stopping and _is_gone(self.pid):
                    self.target_exited = True
                    self.stop()
                    stopping = True
                with self._lock:
                    runs = list(self._runs)
                    for run in runs:
                        run.proc.poll()  # sets returncode once it ended
                live = [r for r in runs if r.proc.returncode is None and r.interrupted_s is None]
                if not stopping and self._wants_next(live):
                    index += 1
                    self._spawn(index)
                    continue
                busy = self._poll(runs)
                for run in runs:
                    if run.proc.returncode is None:
                        continue
                    with self._lock:
                        self._runs.remove(run)
                    if self._finish(run):
                        failures = 0
                        continue
                    self.failed_runs += 1
                    if run.halted and run.rate_hz > MIN_RATE_HZ:
                        continue  # the next runs sample more gently: not a failure yet
                    if run.alongside:
                        # A py-spy can fail to attach while another one holds the target
                        # hard (a high rate): hand the next chunk over one after the other.
                        self._overlap = False
                        continue
                    failures += 1
                    if _is_gone(self.pid):
                        self.target_exited = self.chunks > 0 or self.target_exited
                        if self.chunks == 0:
                            self.error = classify_failure(self.pid, run.said)
                        self.stop()
                    elif not self._stop.is_set() and (
                        (self.chunks == 0 and run.proc.returncode >= 0)
                        or failures >= self.config.max_failures
                    ):
                        # A py-spy that failed on its own (not killed by a signal): its
                        # words say why (no permission, not Python, ...).
                        self.error = classify_failure(self.pid, run.said)
                        self.stop()
                with self._lock:
                    if stopping and not self._runs:
                        break
                time.sleep(_POLL_S if busy else 0.05)
        except OSError as exc:  # OUT vanished or filled up: nothing more can be kept
            self.error = SamplerError(f"cannot write py-spy's output to {self.out}: {exc}")
            self._signal(signal.SIGKILL)
        finally:
            self.watchdog.stop()

    def _wants_next(self, live: list[_Run]) -> bool:
        """Whether to start the next py-spy now: none samples, or the one sampling is
        close enough to its chunk's end that the next starts sampling just before it."""
        if self._deciding is not None:
            return False  # a chunk ended early for its pause: wait for its rate decision
        if not live:
            return True
        if len(live) > 1:
            return False
        current = live[0]
        if current.started_s is None:
            return False
        now = self._now()
        share = self._pausing_too_long(current)
        if share is not None:
            if share < _SPARE_TIME:
                # py-spy has time to spare, so it keeps its rate (unless starved of a
                # CPU: that chunk's own end lowers it then): the pause says which rate
                # fits, and the next py-spy takes over at it with no gap.
                to_hz = max(MIN_RATE_HZ, int(self._rate_within_limit(current, share)))
                self._clean_chunks = 0
                self._set_rate(to_hz, _paused_why(share, self.config.max_pause))
                return True
            # It may be behind as well: end it now, and start the next once its instants
            # and its pause say which rate fits (`_adapt_rate`); a gap of py-spy's start-up.
            self._deciding = current
            self._interrupt(current)
            return False
        if not self._overlap:  # stop this one first; the next starts once it ended
            if now >= current.started_s + self.config.chunk_s:
                self._interrupt(current)
            return False
        lead = min(2 * self._startup_s + 0.05, self.config.chunk_s / 2)
        return now >= current.started_s + self.config.chunk_s - lead

    def _rate_within_limit(self, run: _Run, share: float) -> float:
        """The highest rate that keeps the pause within --max-pause, from the share of the
        time `run` held the target: each sample costs the same, so the pause grows with
        the rate (inf when there is no limit or no pause)."""
        limit = self.config.max_pause
        return run.rate_hz * limit / share if limit > 0 and share > 0 else math.inf

    def _pausing_too_long(self, run: _Run) -> float | None:
        """The share of the time the py-spy sampling now has held the target paused, when
        more than twice --max-pause over half a second or more (else None): then its chunk
        ends at once, not at its 2 s end (a target with many threads can be held half of
        the time). A py-spy that stops the target that long may also be behind its rate:
        a rate chosen from the pause alone would then still be too fast for it (a CI run:
        1000 -> 333 Hz where py-spy managed ~120), so the caller decides how."""
        limit = self.config.max_pause
        if limit <= 0 or run.rate_hz != self.rate_hz or run.rate_hz <= MIN_RATE_HZ:
            return None
        share = _pause_share(run, min_wall_s=0.5)
        if share is None or share <= 2 * limit or self.config.nonblocking:
            return None
        return share

    def _interrupt(self, run: _Run) -> None:
        with self._lock:
            if run.interrupted_s is None:
                run.interrupted_s = self._now()
            try:
                run.proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass

    def _poll(self, runs: list[_Run]) -> bool:
        """Note starts and stops; hand over to a py-spy that started. True while something
        is about to happen that needs fine timing."""
        busy = False
        now = self._now()
        for run in runs:
            busy = self._note_start(run, now) or busy
            if run.stopped_s is None and run.interrupted_s is not None:
                busy = True
                if self._chunk_path(run.index).exists():
                    run.stopped_s = now
        started = [r for r in runs if r.started_s is not None and r.proc.returncode is None]
        if len(started) > 1:  # the newest samples: stop the older ones (they write)
            newest = max(started, key=lambda r: r.index)
            for run in started:
                if run is not newest and run.interrupted_s is None:
                    run.interrupted_s = now
                    try:
                        run.proc.send_signal(signal.SIGINT)
                    except ProcessLookupError:
                        pass
                    busy = True
        for run in runs:
            if run.proc.returncode is not None:
                continue
            # A py-spy that does not end within seconds of SIGINT, or long past its own
            # --duration, hangs: it may hold target threads, and only its end frees them.
            hung = run.interrupted_s is not None and now - run.interrupted_s > _HUNG_AFTER_SIGINT_S
            if hung or (now > run.spawned_s + self.config.chunk_s * 2 + 70):
                run.proc.kill()
                continue
            if run.started_s is not None:  # soon due to start the next one
                if now >= run.started_s + self.config.chunk_s - 2 * self._startup_s - 0.2:
                    busy = True
        return busy

    def _note_start(self, run: _Run, now: float) -> bool:
        """Note when py-spy starts sampling, and its CPU time while it samples. True while
        it had not started at the last look."""
        waiting = run.started_s is None
        if waiting:
            if _STARTED not in _read_bytes_from(run.log, 0, 4096):
                return True
            run.started_s = now
            self._startup_s = 0.7 * self._startup_s + 0.3 * (now - run.spawned_s)
        if run.interrupted_s is None:
            _note_cpu(run, now)
        return waiting

    def _chunk_path(self, index: int) -> Path:
        return store.chunk_path(self.out, index, self._format)

    def _spawn(self, index: int) -> None:
        """Start py-spy for chunk `index` (nothing once asked to stop)."""
        path = self._chunk_path(index)
        path.unlink(missing_ok=True)  # left by a py-spy killed while writing it
        log_path = store.chunk_log_path(self.out, index)
        with open(log_path, "wb") as log, self._lock:
            if self._stop.is_set():
                return
            proc = subprocess.Popen(
                self._command(path, self.rate_hz),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                preexec_fn=pdeathsig(signal.SIGINT),
                start_new_session=True,  # the terminal's Ctrl-C is ours to forward
            )
            alongside = any(r.proc.returncode is None for r in self._runs)
            self._runs.append(
                _Run(index, proc, log_path, self.rate_hz, self._now(), alongside=alongside)
            )

    def _finish(self, run: _Run) -> bool:
        """A py-spy ended: keep its chunk (True) or drop what it left (False)."""
        if run is self._deciding:
            self._deciding = None  # the rate is decided below, before the next py-spy starts
        self.watchdog.check()
        path = self._chunk_path(run.index)
        if run.stopped_s is None and path.exists():
            run.stopped_s = self._now()
        said = run.said = _read_from(run.log, 0)
        self._append_log(run, said)
        ok = run.started_s is not None and path.exists() and path.stat().st_size > 0
        if not ok:
            path.unlink(missing_ok=True)
            return False
        m = _SUMMARY.search(said)
        samples = int(m.group(1)) if m else 0
        try:
            intervals = store.seal_chunk(path, samples)
        except CorruptProfileError as exc:  # kept for `report` to skip and name
            said += f"\nunreadable output: {exc.message}"
            intervals = 0
        start_s, end_s, written_s = self._span(run)
        errors = int(m.group(2)) if m else 0
        lag_s = _lag_s(said)
        paused_s = pause_s(run, end_s - start_s, self.config.nonblocking)
        store.write_chunk_meta(
            self.out,
            run.index,
            start_s=start_s,
            end_s=end_s,
            samples=samples,
            errors=errors,
            rc=run.proc.returncode if run.proc.returncode is not None else -1,
            intervals=intervals,
            lag_s=lag_s,
            rate_hz=run.rate_hz,
            pause_s=paused_s,
            written_s=written_s,
        )
        self.chunks += 1
        self._overlap = True  # try the overlapping handover again
        self.samples += samples
        self.errors += errors
        self.intervals += intervals
        self.sampled_s += intervals / run.rate_hz
        self.spanned_s += end_s - start_s
        self.last_end_s = max(self.last_end_s, end_s)
        self.max_lag_s = max(self.max_lag_s, lag_s)
        # A failed read (py-spy's errors: with --nonblocking, a stack that changed while it
        # was read) is an instant py-spy kept pace with: lowering the rate cannot help it.
        if paused_s is not None:
            self.paused_s += paused_s
            self.pause_measured_s += end_s - start_s
        self._adapt_rate(run, intervals + errors, end_s - start_s, lag_s, paused_s)
        self._chunk_kept(run.index)
        return True

    def _chunk_kept(self, index: int) -> None:
        """Tell `rate_policy` (it may change the rate of the chunks to come) and `on_chunk`."""
        if self.rate_policy is not None and not self._stop.is_set():
            decision = self.rate_policy(index)
            if decision is not None:
                self._aim(*decision)
        if self.on_chunk is not None:
            self.on_chunk(index)

    def _span(self, run: _Run) -> tuple[float, float, float]:
        """When the run's sampling started and ended, and when its file appeared."""
        start_s = run.started_s if run.started_s is not None else run.spawned_s
        written_s = run.stopped_s if run.stopped_s is not None else self._now()
        # Told to stop (SIGINT), py-spy takes no more samples, but its file appears only
        # about two intervals later (its loop and its sampling thread each wait for their
        # next instant: 0.22 s at 10 Hz, 18 ms at 100 Hz, measured): its sampling ended at
        # the signal. A span ending at the file stretched the chunk's samples over time
        # py-spy had not sampled (the next chunk's samples of it were cut as overlap), and
        # read as py-spy falling behind (~10% of a 2 s chunk at 10 Hz).
        if run.interrupted_s is None:
            return start_s, written_s, written_s
        return start_s, max(start_s, min(written_s, run.interrupted_s)), written_s

    def _append_log(self, run: _Run, said: str) -> None:
        """Move the run's own log into OUT/raw/pyspy.log (one py-spy at a time writes it)."""
        store.append_pyspy_log(self.out, run.index, run.proc.pid, said)

    @property
    def pause_share(self) -> float | None:
        """The share of the sampled time py-spy held the target paused (None: not measured)."""
        if self.pause_measured_s <= 0:
            return None
        return self.paused_s / self.pause_measured_s

    def _adapt_rate(
        self, run: _Run, intervals: int, span_s: float, lag_s: float, paused_s: float | None
    ) -> None:
        """Lower the rate when py-spy could not keep up with this chunk (`intervals`: the
        instants it sampled or tried to) or held the target paused longer than
        `max_pause` of the time; raise it back a step after many chunks that kept up."""
        if run.rate_hz != self.rate_hz or span_s < 0.5:
            return  # a decision on this rate is already taken, or too little to judge
        if self._stop.is_set():
            return  # no chunk follows: a change would be reported but never sampled at
        expected = run.rate_hz * span_s
        kept_up = intervals / expected
        asked = self.aim_hz
        share = paused_s / span_s if paused_s is not None else 0.0
        limit = self.config.max_pause
        pause_cap = self._rate_within_limit(run, share)
        self._pause_cap_hz = pause_cap
        if lag_s > 0 or behind_pace(intervals, expected):
            # The rate py-spy managed, with room to spare; at least halve on a lag report.
            managed = intervals / span_s
            to_hz = max(MIN_RATE_HZ, min(int(managed * 0.8), int(run.rate_hz * 0.7)))
            why = (
                f"py-spy fell {lag_s:.1f} s behind"
                if lag_s > 0
                else f"py-spy sampled {kept_up:.0%} of the instants asked for"
            )
            self._clean_chunks = 0
        elif share > limit * PAUSE_SLACK and limit > 0 and run.rate_hz > MIN_RATE_HZ:
            to_hz = max(MIN_RATE_HZ, int(pause_cap))
            why = _paused_why(share, limit)
            self._clean_chunks = 0
        else:
            self._clean_chunks += 1
            if self._clean_chunks < _CLEAN_CHUNKS_TO_RAISE or self.rate_hz >= asked:
                return
            self._clean_chunks = 0
            to_hz = min(asked, int(self.rate_hz * 1.5), int(min(pause_cap, 1e6)))
            if to_hz <= self.rate_hz:
                return  # a faster rate would pause the target longer than allowed
            why = f"py-spy kept up for {_CLEAN_CHUNKS_TO_RAISE} chunks"
        self._set_rate(to_hz, why)


def _cpu_s(pid: int) -> dict[int, float] | None:
    """CPU seconds of each of py-spy's threads (None once it is gone). schedstat counts
    nanoseconds where /proc/PID/stat counts 10 ms ticks."""
    files = task_files(pid, "schedstat")
    if not files:
        return None
    return {tid: int(s.split()[0]) / 1e9 for tid, s in files.items() if s}


def _note_cpu(run: _Run, now: float) -> None:
    # The poll loop turns every 5 ms around a handover: a reading every 50 ms is plenty
    # for a share over seconds (the first one is taken as soon as py-spy samples).
    if run.cpu_last is not None and now - run.cpu_last[0] < _CPU_EVERY_S:
        return
    cpu = _cpu_s(run.proc.pid)
    if cpu is None:
        return
    if run.cpu_first is None:
        run.cpu_first = (now, cpu)
    else:
        run.cpu_last = (now, cpu)


def pause_s(run: _Run, span_s: float, nonblocking: bool) -> float | None:
    """How long py-spy held the target paused during the run's `span_s` of sampling.

    Blocking py-spy stops every target thread, reads their stacks and lets them go: what its
    sampling thread computes is almost all done with the target stopped (against a server
    timing its own stops, 0-40 idle threads at 25 and 100 Hz: 0.93-1.05 of what the server
    measured; bench/README.md "What a sample costs the target"). That thread's CPU time over
    the wall time between two readings while it sampled, scaled to the span; py-spy's
    start-up and the writing of its file are outside those readings. None when too little
    was seen to say; 0 for --nonblocking (it never stops the target)."""
    if nonblocking:
        return 0.0
    share = _pause_share(run, min_wall_s=0.2)
    return None if share is None else share * max(0.0, span_s)


def _pause_share(run: _Run, min_wall_s: float) -> float | None:
    """py-spy's CPU time over the wall time between the run's first and latest readings."""
    if run.cpu_first is None or run.cpu_last is None:
        return None
    (t0, first), (t1, last) = run.cpu_first, run.cpu_last
    if t1 - t0 < min_wall_s:
        return None
    # The busiest thread between the readings: the one that samples, which does its
    # reading with the target stopped (with --subprocesses, one per process: the most
    # held process's). The others do not pause the target: the one that looks for new
    # processes alone costs about 1% of a CPU, as much as all the pauses at 25 Hz on a
    # 40-frame stack. A thread that started between them (the spy of a new worker) counts
    # whole: its start-up reads too, and a high figure errs on the target's side.
    spent = max((cpu - first.get(tid, 0.0) for tid, cpu in last.items()), default=0.0)
    return min(1.0, max(0.0, spent) / (t1 - t0))


def _paused_why(share: float, limit: float) -> str:
    return f"py-spy held the target paused {share:.1%} of the time (--max-pause {limit:.0%})"


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
