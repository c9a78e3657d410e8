"""Now and then, a short py-spy `--gil` recording: which thread held the GIL.

py-spy's `--gil` keeps only the samples of the thread holding the GIL at each instant: the
only direct evidence of GIL holding. A worker thread inside native code that releases the
GIL (argon2, bcrypt, hashlib on large inputs, `time.sleep`, socket reads) is never in
them, however much CPU it burns; a worker running pure Python is in most of them. The
gil-contention finding (analyze/gil.py) rests on these windows.

This runs beside the main sampler (analyze reads the two apart: windows are named
`gil-NNNN`, never `chunk-NNNN`), with `--nonblocking` so it never stops the target and
never competes with the main sampler for ptrace: `window_s` seconds every `every_s`
seconds, at `rate_hz`. Its py-spy output goes to its own log (the main sampler reads
pyspy.log from offsets). A window that fails is skipped; three in a row end it.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from asgiprof import store
from asgiprof.errors import CorruptProfileError
from asgiprof.record.sampler import pdeathsig


@dataclass(frozen=True, slots=True)
class GilConfig:
    pyspy: str
    rate_hz: int = 50
    window_s: int = 1
    every_s: float = 3.0
    first_s: float = 0.5  # once the main sampler has started
    subprocesses: bool = True


class GilSampler:
    """`--gil` windows of `pid` in a background thread until stopped."""

    def __init__(self, pid: int, out: Path, t0: float, config: GilConfig) -> None:
        self.pid = pid
        self.out = out
        self.t0 = t0
        self.config = config
        self.windows = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._run, name="asgiprof-gil", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current window (py-spy writes its output on SIGINT)."""
        with self._lock:
            self._stop.set()
            if self._proc is not None and self._proc.poll() is None:
                self._proc.send_signal(signal.SIGINT)

    def join(self, timeout_s: float) -> bool:
        if self._thread.ident is None:  # never started
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _command(self, path: Path) -> list[str]:
        c = self.config
        cmd = [c.pyspy, "record", "--gil", "--idle", "--threads", "--nonblocking"]
        cmd += ["--format", "speedscope", "--rate", str(c.rate_hz), "--duration", str(c.window_s)]
        if c.subprocesses:
            cmd.append("--subprocesses")
        return [*cmd, "--pid", str(self.pid), "--output", str(path)]

    def _run(self) -> None:
        failures = 0
        index = 0
        wait_s = self.config.first_s
        try:
            while failures < 3 and not self._stop.wait(wait_s):
                index += 1
                path = store.gil_path(self.out, index)
                started = time.time() - self.t0
                if self._record(path, store.gil_log_path(self.out)):
                    ended = time.time() - self.t0
                    try:
                        intervals = store.seal_chunk(path)
                    except CorruptProfileError:
                        intervals = 0
                    store.write_gil_meta(
                        self.out, index, start_s=started, end_s=ended, intervals=intervals
                    )
                    self.windows += 1
                    failures = 0
                else:
                    path.unlink(missing_ok=True)
                    index -= 1
                    failures += 1
                wait_s = max(0.0, self.config.every_s - self.config.window_s)
        except OSError:
            return  # OUT vanished or filled up: the main sampler reports that

    def _record(self, path: Path, log_path: Path) -> bool:
        """One window; True when py-spy left an output file."""
        with open(log_path, "ab") as log, self._lock:
            if self._stop.is_set():
                return False
            proc = self._proc = subprocess.Popen(
                self._command(path),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                preexec_fn=pdeathsig(signal.SIGINT),
                start_new_session=True,  # the terminal's Ctrl-C is ours to forward
            )
        try:
            proc.wait(self.config.window_s + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        finally:
            with self._lock:
                self._proc = None
        return path.exists() and path.stat().st_size > 0
