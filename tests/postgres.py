"""A throwaway PostgreSQL server for tests: its own cluster in a temp dir, on 127.0.0.1.

`PostgresServer` runs initdb and `pg_ctl start` as an unprivileged user (the current one, or
`postgres` / `nobody` when the tests run as root, since PostgreSQL refuses to run as root),
listens on 127.0.0.1 at a free port with trust authentication, and `pg_ctl stop -m immediate`
in `stop()`. Binaries come from PATH or Debian's /usr/lib/postgresql/*/bin
(`apt-get install -y postgresql`); `find_pg_bin()` returns None when there are none.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from asgiprof.record.loadgen import free_port
from tests.servers import HOST

INSTALL_HINT = "PostgreSQL server binaries not found: apt-get install -y postgresql"
_USERS_FOR_ROOT = ("postgres", "nobody")


def find_pg_bin() -> Path | None:
    """The folder holding initdb and pg_ctl, newest Debian version first."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(on_path)).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def _run_as() -> tuple[list[str], int | None, int | None]:
    """(command prefix, uid, gid) that runs PostgreSQL as an unprivileged user."""
    if os.geteuid() != 0:
        return [], None, None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise RuntimeError("running as root without runuser (util-linux) to drop privileges")
    for name in _USERS_FOR_ROOT:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return [runuser, "-u", name, "--"], entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and no unprivileged user (postgres, nobody) exists")


class PostgresServer:
    """Start with `with PostgresServer() as pg:`; `pg.dsn` is a libpq URL for user postgres."""

    def __init__(self, start_timeout_s: float = 60.0) -> None:
        bin_dir = find_pg_bin()
        if bin_dir is None:
            raise RuntimeError(INSTALL_HINT)
        self.bin_dir = bin_dir
        self.port = free_port()
        self.start_timeout_s = start_timeout_s
        self.tmp = Path(tempfile.mkdtemp(prefix="asgiprof-pg-"))
        self.data = self.tmp / "data"
        self.log = self.tmp / "server.log"
        self._started = False
        self._prefix, uid, gid = _run_as()
        if uid is not None and gid is not None:
            os.chown(self.tmp, uid, gid)
        os.chmod(self.tmp, 0o700)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def _run(self, *args: str, timeout_s: float) -> None:
        done = subprocess.run(
            [*self._prefix, *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=self.tmp,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({done.returncode}): {done.stderr or done.stdout}"
                f"\n{self.log_text()}"
            )

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> PostgresServer:
        try:
            self._run(
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                timeout_s=self.start_timeout_s,
            )
            options = (
                f"-c listen_addresses={HOST} -c port={self.port} "
                f"-c unix_socket_directories={self.tmp} -c fsync=off -c max_connections=200"
            )
            self._started = True
            self._run(
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-o",
                options,
                "-w",
                "-t",
                str(int(self.start_timeout_s)),
                "start",
                timeout_s=self.start_timeout_s + 10,
            )
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"PostgreSQL did not listen on {HOST}:{self.port}\n{self.log_text()}")

    def stop(self) -> None:
        """Stop the server (immediate mode: nothing to keep) and remove the cluster."""
        try:
            if self._started and (self.data / "postmaster.pid").exists():
                self._run(
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                    timeout_s=30.0,
                )
        finally:
            self._started = False
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
