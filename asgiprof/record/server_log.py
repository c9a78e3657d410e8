"""The attached server's access log, read while sampling (`attach`).

`run` keeps the launched server's output in OUT/server.log, and its access log gives the
requests each route served: the evidence that splits a shared dependency's time among its
routes and lists routes whose endpoint is never on a sampled stack (store/access_log.py).
An attached server's output is already going somewhere. When that is a regular file (its
stdout or stderr, or the file `--access-log` names), the lines written while sampling are
that evidence too. Anything else (a pipe, a terminal, a socket to journald) is never read:
reading a pipe would take the lines from whoever reads them.

Only request lines are kept, reduced to `"METHOD PATH HTTP/1.1" STATUS` without the query
string: a production log may carry tokens in URLs and other people's data, and counting
requests per route needs none of it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from asgiprof.errors import UsageError
from asgiprof.store.access_log import MAX_BYTES, parse_request_line, path_only

# The target's file descriptors a server writes its access log to when not told otherwise.
_STD_FDS = (1, 2)


@dataclass(slots=True)
class _Tail:
    shown: str  # where the lines come from, for the terminal
    file: BinaryIO
    start: int  # the size when sampling began: only what comes after is read


class LogTail:
    """The files an attached server logs to, from the sizes they had when sampling began."""

    def __init__(self, tails: list[_Tail]) -> None:
        self._tails = tails

    @classmethod
    def open(cls, pids: list[int], named: Path | None) -> LogTail:
        """`named` (an error if it is not a readable regular file), else each process's
        stdout and stderr that are regular files, each file once."""
        tails: list[_Tail] = []
        seen: set[tuple[int, int]] = set()
        if named is not None:
            try:
                tail = _tail(str(named), str(named))
            except OSError as exc:
                raise UsageError(
                    f"--access-log {named}: cannot read it ({exc.strerror or exc})"
                ) from None
            if tail is None:
                raise UsageError(f"--access-log {named}: not a regular file")
            return cls([tail])
        for pid in pids:
            for fd in _STD_FDS:
                proc_path = f"/proc/{pid}/fd/{fd}"
                try:
                    st = os.stat(proc_path)
                    # Not even opened unless a regular file: opening a FIFO could wait.
                    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in seen:
                        continue
                    tail = _tail(proc_path, f"{os.readlink(proc_path)} (fd {fd} of {pid})")
                except OSError:
                    continue
                if tail is not None:
                    seen.add((st.st_dev, st.st_ino))
                    tails.append(tail)
        return cls(tails)

    @property
    def sources(self) -> list[str]:
        return [t.shown for t in self._tails]

    def save(self, dest: Path) -> int:
        """Write the request lines logged since `open` to `dest` (nothing when there are
        none); return how many."""
        lines: list[bytes] = []
        for t in self._tails:
            lines.extend(_request_lines(t))
        self.close()
        if lines:
            dest.write_bytes(b"".join(lines))
        return len(lines)

    def close(self) -> None:
        for t in self._tails:
            t.file.close()
        self._tails = []


def _tail(path: str, shown: str) -> _Tail | None:
    """The file at `path` opened at its end, or None when it is not a regular file."""
    f = open(path, "rb")  # noqa: SIM115 (kept open until save: the target may exit first)
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode):
        f.close()
        return None
    return _Tail(shown, f, st.st_size)


def _request_lines(t: _Tail) -> list[bytes]:
    try:
        size = os.fstat(t.file.fileno()).st_size
        # Smaller than when sampling began: truncated (logrotate's copytruncate), so all of
        # it is new.
        t.file.seek(t.start if size >= t.start else 0)
        data = t.file.read(MAX_BYTES)
    except OSError:
        return []
    out: list[bytes] = []
    for raw in data.splitlines():
        parsed = parse_request_line(raw)
        if parsed is not None:
            method, target, status = parsed
            out.append(f'"{method} {path_only(target)} HTTP/1.1" {status}\n'.encode())
    return out
