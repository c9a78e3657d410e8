"""Drive load at the profiled server while sampling: a shell command (`--load CMD`) or
asgiprof's own generator (`--load-url URL`); sampling stops when the load ends.

The server's address comes from its listening sockets (psutil), preferring the port its
command line names. `{url}`, `{host}` and `{port}` in the command are replaced by plain
text substitution (no str.format: load commands hold braces of their own, Lua, JSON).
The outcome goes to OUT/load.json (see `store.write_load`), the output to OUT/load.log.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from asgiprof import store
from asgiprof.errors import UsageError
from asgiprof.model import LoadInfo, LoadStop
from asgiprof.record.loadgen import LoadThread, check_loopback, start_load_thread
from asgiprof.record.sampler import kill_group, pdeathsig
from asgiprof.redact import redact_text
from asgiprof.text import terminal_safe

OUTPUT_TAIL_LINES = 20
# The own generator's run time when neither --duration nor a request cap bounds it.
DEFAULT_LOAD_S = 10.0
_WILDCARDS = frozenset({"0.0.0.0", "::", ""})
_WRAPPER_ARG = re.compile(r"^\d+(?:\.\d+)?[smhd]?$")
_SHELL_WORDS = frozenset({"exec", "env", "command", "time", "nice", "timeout", "nohup"})


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What to run: `command` (shell) or `urls` (asgiprof's generator), never both."""

    command: str | None = None
    urls: tuple[str, ...] = ()
    concurrency: int = 8
    duration_s: float | None = None  # the generator's run time (None: DEFAULT_LOAD_S)

    def check(self) -> None:
        """Raise UsageError before anything starts: both given, or a command not found."""
        if self.command is not None and self.urls:
            raise UsageError("give either --load CMD or --load-url URL, not both")
        if self.command is not None:
            check_command(self.command)
        if self.concurrency < 1:
            raise UsageError(f"--concurrency must be at least 1, got {self.concurrency}")


def check_command(command: str) -> None:
    """UsageError when the load command is empty or its program cannot be found."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"cannot parse the load command ({exc}): check its quotes") from exc
    # Skip VAR=value prefixes and wrappers with their options and durations (`timeout 20s`,
    # `nice -n 5`): the program that matters comes after them.
    program = None
    wrapped = False
    for word in words:
        if word in _SHELL_WORDS:
            wrapped = True
            continue
        if "=" in word and not word.startswith("-"):  # VAR=value
            continue
        if wrapped and (word.startswith("-") or _WRAPPER_ARG.match(word)):
            continue
        program = word
        break
    if program is None:
        raise UsageError("the load command is empty: e.g. --load 'wrk -d10s {url}/'")
    found = os.access(program, os.X_OK) if "/" in program else shutil.which(program) is not None
    if not found:
        raise UsageError(
            f"load command not found: {terminal_safe(program)}: install it or give its full path"
        )


def listening_ports(pids: Sequence[int]) -> list[tuple[str, int]]:
    """(address, port) of the TCP sockets the processes listen on, lowest port first."""
    found: set[tuple[str, int]] = set()
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except psutil.Error:
            continue
        found.update(
            (c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN and c.laddr
        )
    return sorted(found, key=lambda a: (a[1], a[0]))


_PORT_FLAG = re.compile(r"^--?(?:port|p)(?:=(\d+))?$")
_BIND_FLAG = re.compile(r"^(?:--bind|-b)(?:=(.+))?$")


def command_line_ports(argv: Sequence[str]) -> list[int]:
    """Ports a server command names (`--port N`, `--bind host:N`), in order."""
    ports: list[int] = []
    for i, word in enumerate(argv):
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if m := _PORT_FLAG.match(word):
            value = m[1] or nxt
        elif m := _BIND_FLAG.match(word):
            value = (m[1] or nxt).rpartition(":")[2]
        else:
            continue
        if value.isdigit():
            ports.append(int(value))
    return ports


def server_address(pids: Sequence[int], argv: Sequence[str]) -> tuple[str, int]:
    """The (host, port) to send load to: the port the command names if it listens there,
    else the lowest listening one; a wildcard address becomes loopback."""
    listening = listening_ports(pids)
    if not listening:
        raise UsageError(
            "the server listens on no TCP port, so the load has nowhere to go: check the "
            "server command"
        )
    named = command_line_ports(argv)
    chosen = next((a for p in named for a in listening if a[1] == p), listening[0])
    ip, port = chosen
    if ip in _WILDCARDS:
        ip = "::1" if ip == "::" and not any(a[0] == "0.0.0.0" for a in listening) else "127.0.0.1"
    return ip, port


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def fill(template: str, host: str, port: int) -> str:
    url = base_url(host, port)
    return template.replace("{url}", url).replace("{host}", host).replace("{port}", str(port))


_WRK_REQUESTS = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s*(\d+)")
_WRK_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def requests_from_output(text: str) -> tuple[int | None, int | None]:
    """(requests, failed) when the output is wrk's (the one tool whose summary we read)."""
    m = _WRK_REQUESTS.search(text)
    if m is None:
        return None, None
    failed = 0
    if n := _WRK_NON2XX.search(text):
        failed += int(n[1])
    if e := _WRK_ERRORS.search(text):
        failed += sum(int(x) for x in e.groups())
    return int(m[1]), failed


def _tail(text: str, lines: int = OUTPUT_TAIL_LINES) -> tuple[str, ...]:
    kept = [ln for ln in text.splitlines() if ln.strip()][-lines:]
    return tuple(terminal_safe(redact_text(ln))[:400] for ln in kept)


class LoadRunner:
    """One load run against a target: `start` once the server listens and sampling runs,
    `done()` polled while sampling, `finish(reason)` stops it and records the outcome."""

    def __init__(self, spec: LoadSpec, out: Path, t0: float) -> None:
        self.spec = spec
        self.out = out
        self.t0 = t0
        self.url = ""
        self.command = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: LoadThread | None = None
        self._started = 0.0

    def start(self, pids: Sequence[int], argv: Sequence[str]) -> str:
        """Start the load; returns the command line as shown to the user (redacted)."""
        host, port = server_address(pids, argv)
        self.url = base_url(host, port)
        self._started = time.time()
        if self.spec.command is not None:
            command = fill(self.spec.command, host, port)
            self.command = redact_text(command)
            with store.load_log_path(self.out).open("wb") as log:
                try:
                    self._proc = subprocess.Popen(
                        ["/bin/sh", "-c", command],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # Ctrl-C reaches asgiprof, which stops it
                        preexec_fn=pdeathsig(signal.SIGTERM),
                    )
                except OSError as exc:
                    raise UsageError(f"cannot start the load command: {exc.strerror}") from exc
            return self.command
        base, paths = self._split_urls(host, port)
        try:
            self._thread = start_load_thread(
                base,
                paths,
                duration_s=self.spec.duration_s or DEFAULT_LOAD_S,
                concurrency=self.spec.concurrency,
            )
        except ValueError as exc:
            raise UsageError(f"--load-url: {exc}") from exc
        self.command = "asgiprof-load " + " ".join(
            [f"--concurrency {self.spec.concurrency}", *(base + p for p in paths)]
        )
        return self.command

    def _split_urls(self, host: str, port: int) -> tuple[str, list[str]]:
        bases: set[str] = set()
        paths: list[str] = []
        for template in self.spec.urls:
            raw = fill(template, host, port)
            try:
                url = check_loopback(raw)
            except ValueError as exc:
                raise UsageError(f"--load-url {terminal_safe(raw)}: {exc}") from exc
            bases.add(f"{url.scheme}://{url.netloc.decode('ascii')}")
            query = f"?{url.query.decode('ascii')}" if url.query else ""
            paths.append((url.path or "/") + query)
        if len(bases) != 1:
            raise UsageError("every --load-url must go to the same server (scheme, host, port)")
        return bases.pop(), paths

    def done(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is not None
        return self._thread is not None and not self._thread.is_alive()

    def finish(self, reason: LoadStop) -> LoadInfo:
        """Stop the load if it still runs (SIGTERM, then SIGKILL its process group), record
        the outcome in OUT/load.json and return it."""
        stopped_by: LoadStop = "exit" if self.done() else reason
        status: int | None = None
        requests = failed = None
        by_path: tuple[tuple[str, int], ...] = ()
        tail: tuple[str, ...] = ()
        if self._proc is not None:
            if self._proc.poll() is None:
                self._stop_process()
            status = self._proc.returncode if stopped_by == "exit" else None
            text = self._read_log()
            requests, failed = requests_from_output(text)
            tail = _tail(text)
        elif self._thread is not None:
            if self._thread.is_alive():
                self._thread.stop()
                self._thread.join(10.0)
            try:
                result = self._thread.result
            except RuntimeError as exc:  # it did not stop in time
                tail, status = (terminal_safe(str(exc)),), None
            except Exception as exc:  # a driver bug: reported as a failed load
                tail, status = (terminal_safe(f"{type(exc).__name__}: {exc}"),), 1
            else:
                requests, failed = result.total, result.failed
                by_path = tuple((p.path, p.requests) for p in result.paths)
                status = 0
                tail = tuple(
                    f"{p.path}: {p.ok} ok, {p.failed} failed"
                    + (f" (first: {terminal_safe(p.first_error)})" if p.first_error else "")
                    for p in result.paths
                )
            store.write_load_log(self.out, tail)
        info = LoadInfo(
            command=self.command,
            url=self.url,
            started_s=round(self._started - self.t0, 3) if self._started else 0.0,
            duration_s=round(time.time() - self._started, 3) if self._started else 0.0,
            stopped_by=stopped_by,
            exit_status=status,
            output_tail=tail,
            requests=requests,
            failed_requests=failed,
            requests_by_path=by_path,
        )
        store.write_load(self.out, info)
        return info

    def _stop_process(self) -> None:
        proc = self._proc
        assert proc is not None
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(5.0)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid)
            proc.wait(5.0)
        kill_group(proc.pid)  # anything the shell started that outlived it

    def kill(self) -> None:
        """Abort (signal handler safe): SIGKILL the load command's group, wait for nothing."""
        if self._proc is not None and self._proc.returncode is None:
            kill_group(self._proc.pid)
        if self._thread is not None:
            self._thread.stop()

    def _read_log(self) -> str:
        try:
            return store.load_log_path(self.out).read_bytes()[-65536:].decode("utf-8", "replace")
        except OSError:
            return ""
