"""Read the target app's route table by running `route_probe.py` in the target's interpreter.

`read_route_table_for` finds the app a server command serves and `read_route_table` imports
it in a bounded child process (the target never imports asgiprof). Which route holds a
frame is analyze/route_index.py's job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from importlib import resources

from asgiprof.errors import AppImportError
from asgiprof.model import Route, RouteDependency, RouteTable
from asgiprof.record.command import ServerCommand
from asgiprof.record.route_probe import MARKER, PROTOCOL
from asgiprof.record.sampler import kill_group, pdeathsig
from asgiprof.redact import redact_text

_KILL_WAIT_S = 5.0  # after SIGKILL, how long to wait for the pipes to close


def probe_source() -> str:
    """The probe's source text; passed with `-c` so the target never needs asgiprof."""
    return resources.files("asgiprof.record").joinpath("route_probe.py").read_text("utf-8")


def probe_argv(
    python: str,
    app_spec: str,
    *,
    factory: bool = False,
    app_dir: str | None = None,
    script: bool = False,
) -> list[str]:
    """The command that runs the probe. `-c` (not the file's path) also keeps asgiprof's own
    folder off the target's sys.path, where it could shadow the app's modules."""
    argv = [python, "-c", probe_source(), app_spec]
    if script:
        argv.append("--script")
    if factory:
        argv.append("--factory")
    if app_dir is not None:
        argv += ["--app-dir", app_dir]
    return argv


def read_route_table(
    app_spec: str,
    *,
    python: str,
    cwd: str,
    env: Mapping[str, str] | None = None,
    factory: bool = False,
    app_dir: str | None = None,
    timeout_s: float = 20.0,
    script: bool = False,
) -> RouteTable:
    """Import `app_spec` with `python` in `cwd` and read its routes. With `script`,
    `app_spec` is the path of the script the server was started as (`python serve.py`):
    it is imported without running its `__main__` block and its app found in its globals.

    Raises AppImportError when the app cannot be imported. Returns a table with source
    "none" and the reason when the app imported but its routes could not be read (an
    unknown framework, a probe that timed out), so callers fall back to function names.
    """
    if not os.path.isdir(cwd):
        raise AppImportError(
            f"could not import app {app_spec!r}: its working directory {cwd} does not exist"
        )
    argv = probe_argv(python, app_spec, factory=factory, app_dir=app_dir, script=script)
    returncode, stdout, stderr, timed_out = _run_bounded(argv, cwd, _probe_env(env), timeout_s)
    where = f"with {python} in {cwd}"
    result = _find_result(stdout)
    if result is None:
        if timed_out:
            reason = f"importing the app {app_spec!r} took longer than {timeout_s:g} s"
            return RouteTable((), "none", reason)
        detail = redact_text(_last_line(stderr)) or "no output"
        if returncode == 0:
            return RouteTable((), "none", f"the route probe printed no result: {detail}")
        raise AppImportError(
            f"could not import app {app_spec!r} {where}: the interpreter exited with status "
            f"{returncode}: {detail}. Check that {python} is the Python that runs the app"
        )
    return _to_table(result, app_spec, where)


def read_route_table_for(
    command: ServerCommand,
    *,
    python: str,
    cwd: str,
    env: Mapping[str, str] | None = None,
    app_spec: str | None = None,
    timeout_s: float = 20.0,
) -> RouteTable:
    """The route table of the app `command` serves, imported with `python` in `cwd` (the
    server's working directory). `app_spec` (`--app module:attr`) names the app when the
    command line does not (`python serve.py` calling `uvicorn.run(app)`) or names another.

    Raises AppImportError like `read_route_table`.
    """
    spec = app_spec or command.app_spec
    if spec:
        app_dir = command.app_dir
        if app_spec and command.script and not app_dir:
            app_dir = os.path.dirname(command.script) or None  # `python src/serve.py`
        return read_route_table(
            spec,
            python=python,
            cwd=cwd,
            env=env,
            factory=command.factory and not app_spec,
            app_dir=app_dir,
            timeout_s=timeout_s,
        )
    if command.script:
        # Started from code: import the script without its __main__ block, find the app.
        return read_route_table(
            command.script, python=python, cwd=cwd, env=env, script=True, timeout_s=timeout_s
        )
    return RouteTable(
        (),
        "none",
        "no app spec found in the server command line: name the app with --app module:attr",
    )


def _probe_env(env: Mapping[str, str] | None) -> dict[str, str]:
    child = dict(os.environ if env is None else env)
    # PYTHONINSPECT would leave the child waiting at a prompt; bytecode the probe compiles
    # (perhaps as root, when attaching) must not land in the user's folders.
    child.pop("PYTHONINSPECT", None)
    child["PYTHONDONTWRITEBYTECODE"] = "1"
    return child


def _run_bounded(
    argv: Sequence[str], cwd: str, env: Mapping[str, str], timeout_s: float
) -> tuple[int, str, str, bool]:
    """Run argv to completion or `timeout_s`; (returncode, stdout, stderr, timed_out).

    The child leads its own process group, so on timeout (or any exception here, Ctrl-C
    included) it and whatever the app spawned are killed by that id: nothing outlives us.
    """
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=pdeathsig(signal.SIGKILL),  # asgiprof killed: the probe goes too
        )
    except OSError as exc:
        raise AppImportError(
            f"could not run {argv[0]} to read the app's routes: {exc.strerror or exc}. "
            "Check the interpreter path"
        ) from None
    timed_out = False
    try:
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(proc.pid)
            # The result may already be out while a child the app forked held the pipes.
            try:
                out, err = proc.communicate(timeout=_KILL_WAIT_S)
            except subprocess.TimeoutExpired:  # a grandchild that left the group holds them
                out, err = b"", b""
    finally:
        if proc.poll() is None:
            kill_group(proc.pid)
            proc.wait(timeout=_KILL_WAIT_S)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    return (
        proc.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
        timed_out,
    )


def _find_result(stdout: str) -> dict[str, object] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            try:
                doc = json.loads(line[len(MARKER) :])
            except ValueError:
                return None
            return doc if isinstance(doc, dict) else None
    return None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _to_table(result: Mapping[str, object], app_spec: str, where: str) -> RouteTable:
    if result.get("protocol") != PROTOCOL:
        return RouteTable((), "none", f"route probe protocol mismatch: {result.get('protocol')}")
    status = result.get("status")
    if status == "error":
        # Import errors quote connection strings and settings: never show their secrets.
        message = redact_text(str(result.get("message"))).rstrip(".")
        error = f"{result.get('error_type')}: {message}"
        if result.get("stage") == "factory":
            error = f"the app factory raised {error}"
        raise AppImportError(
            f"could not import app {app_spec!r} {where}: {error}. Check the app spec "
            "(module:attribute), the working directory, and that this interpreter has the "
            "app's packages installed"
        )
    if status == "no-table":
        return RouteTable((), "none", redact_text(str(result.get("reason") or "no route table")))
    records = result.get("routes")
    if status != "ok" or not isinstance(records, list):
        return RouteTable((), "none", f"unexpected route probe result (status {status!r})")
    routes = tuple(route for route in map(_to_route, records) if route is not None)
    dependency_error = result.get("dependency_error")
    if not isinstance(dependency_error, str):
        return RouteTable(routes, "app")
    # Its messages quote the app's objects, which may hold settings: redact like errors.
    return RouteTable(routes, "app", dependency_error=redact_text(dependency_error))


def _to_route(record: object) -> Route | None:
    if not isinstance(record, dict):
        return None
    method, path, endpoint, file = (
        record.get(key) for key in ("method", "path", "endpoint", "file")
    )
    first_line, last_line, is_async = (
        record.get(key) for key in ("first_line", "last_line", "is_async")
    )
    if not (
        isinstance(method, str)
        and isinstance(path, str)
        and isinstance(endpoint, str)
        and isinstance(file, str)
        and isinstance(first_line, int)
        and isinstance(last_line, int)
        and isinstance(is_async, bool)
    ):
        return None
    records = record.get("dependencies")
    dependencies = _to_dependencies(records) if isinstance(records, list) else ()
    return Route(method, path, endpoint, file, first_line, last_line, is_async, dependencies)


def _to_dependencies(records: list[object]) -> tuple[RouteDependency, ...]:
    """A tree with a malformed node is dropped whole: depths of a partial tree would lie."""
    dependencies: list[RouteDependency] = []
    for record in records:
        if not isinstance(record, dict):
            return ()
        function, file, first_line, last_line, depth = (
            record.get(key) for key in ("function", "file", "first_line", "last_line", "depth")
        )
        if not (
            isinstance(function, str)
            and isinstance(file, str)
            and isinstance(first_line, int)
            and isinstance(last_line, int)
            and isinstance(depth, int)
        ):
            return ()
        dependencies.append(RouteDependency(function, file, first_line, last_line, depth))
    return tuple(dependencies)
