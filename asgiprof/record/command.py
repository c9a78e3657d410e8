"""Read a server command line: which server, which app, which settings, which interpreter.

Pure functions over argv (plus, for `find_target_python`, a look at the files it names);
asgiprof/redact.py hides secrets before a command line or environment is shown or saved.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

ServerKind = Literal["uvicorn", "gunicorn", "hypercorn", "granian", "daphne", "fastapi", "unknown"]


@dataclass(frozen=True, slots=True)
class ServerCommand:
    """What a server command line says. Unset values are None: the server's default applies."""

    server: ServerKind
    app_spec: str | None = None  # "module:attr" as the server imports it
    factory: bool = False  # app_spec names a callable that builds the app
    app_dir: str | None = None  # put first on sys.path before importing (relative to cwd)
    chdir: str | None = None  # the server changes into this directory first (gunicorn, granian)
    workers: int | None = None
    reload: bool = False
    loop: str | None = None  # given on the command line, else the server's default
    host: str | None = None
    port: int | None = None
    worker_class: str | None = None  # gunicorn / hypercorn -k
    interface: str | None = None  # granian --interface
    python: str | None = None  # interpreter named on the command line (`python -m uvicorn`)
    script: str | None = None  # `python script.py` when no server was recognised


# --- the servers' own command-line syntax -----------------------------------------------

# Option -> ServerCommand field it sets (None: ignored). Value options must be listed in
# full so that their values are never mistaken for the app spec.
_UVICORN_VALUES: Mapping[str, str | None] = {
    "--host": "host",
    "--port": "port",
    "--workers": "workers",
    "--loop": "loop",
    "--app-dir": "app_dir",
    "--interface": None,
    **dict.fromkeys(
        (
            "--uds --fd --reload-dir --reload-include --reload-exclude --reload-delay --http "
            "--ws --ws-max-size --ws-max-queue --ws-ping-interval --ws-ping-timeout "
            "--ws-per-message-deflate --lifespan --env-file --log-config --log-level "
            "--forwarded-allow-ips --root-path --limit-concurrency --backlog "
            "--limit-max-requests --limit-max-requests-jitter --timeout-keep-alive "
            "--timeout-graceful-shutdown --timeout-worker-healthcheck --ssl-keyfile "
            "--ssl-certfile --ssl-keyfile-password --ssl-version --ssl-cert-reqs --ssl-ca-certs "
            "--ssl-ciphers --header --h11-max-incomplete-event-size"
        ).split()
    ),
}
_UVICORN_FLAGS: Mapping[str, str] = {"--reload": "reload", "--factory": "factory"}

_GUNICORN_VALUES: Mapping[str, str | None] = {
    "-b": "bind",
    "--bind": "bind",
    "-w": "workers",
    "--workers": "workers",
    "-k": "worker_class",
    "--worker-class": "worker_class",
    "--chdir": "chdir",
    **dict.fromkeys(
        (
            "-c --config --backlog --threads --worker-connections --max-requests "
            "--max-requests-jitter -t --timeout --graceful-timeout --keep-alive "
            "--limit-request-line --limit-request-fields --limit-request-field_size "
            "--reload-engine --reload-extra-file -e --env --pythonpath --paste --paster -p --pid "
            "--worker-tmp-dir -u --user -g --group -m --umask --forwarded-allow-ips "
            "--access-logfile --access-logformat --error-logfile --log-file --log-level "
            "--logger-class --log-config --log-config-json --log-syslog-to --log-syslog-prefix "
            "--log-syslog-facility --statsd-host --statsd-prefix --dogstatsd-tags -n --name "
            "--proxy-allow-from --keyfile --certfile --ssl-version --cert-reqs --ca-certs "
            "--ciphers --header-map --forwarder-headers --proxy-protocol-allow-from"
        ).split()
    ),
}
_GUNICORN_FLAGS: Mapping[str, str] = {"--reload": "reload"}

_HYPERCORN_VALUES: Mapping[str, str | None] = {
    "-b": "bind",
    "--bind": "bind",
    "-w": "workers",
    "--workers": "workers",
    "-k": "worker_class",
    "--worker-class": "worker_class",
    **dict.fromkeys(
        (
            "--access-log --access-logfile --access-logformat --backlog --insecure-bind "
            "--quic-bind --ca-certs --certfile --cert-reqs --ciphers -c --config --error-log "
            "--error-logfile --log-file --graceful-timeout --read-timeout --max-requests "
            "--max-requests-jitter -g --group --keep-alive --keyfile --keyfile-password "
            "--log-config --log-level -p --pid --root-path --server-name --statsd-host "
            "--statsd-prefix -m --umask -u --user --verify-mode --websocket-ping-interval"
        ).split()
    ),
}
_HYPERCORN_FLAGS: Mapping[str, str] = {"--reload": "reload"}

_GRANIAN_VALUES: Mapping[str, str | None] = {
    "--host": "host",
    "--port": "port",
    "--workers": "workers",
    "--loop": "loop",
    "--interface": "interface",
    "--working-dir": "chdir",
    **dict.fromkeys(
        (
            "--http --threads --blocking-threads --runtime-threads --runtime-blocking-threads "
            "--threading-mode --runtime-mode --task-impl --backlog --backpressure "
            "--http1-buffer-size --http1-header-read-timeout "
            "--http2-initial-connection-window-size "
            "--http2-initial-stream-window-size --http2-keep-alive-interval "
            "--http2-keep-alive-timeout --http2-max-concurrent-streams --http2-max-frame-size "
            "--http2-max-headers-size --http2-max-send-buffer-size --log-level --log-config "
            "--access-log-fmt --ssl-certificate --ssl-keyfile --ssl-keyfile-password --ssl-ca "
            "--ssl-crl --url-path-prefix --respawn-interval --rss-sample-interval "
            "--rss-samples --workers-lifetime --workers-kill-timeout --workers-max-rss "
            "--workers-graceful-timeout --reload-paths --reload-ignore-dirs "
            "--reload-ignore-patterns --reload-ignore-paths --reload-tick "
            "--process-name --pid-file --env-files --static-path-route --static-path-mount "
            "--static-path-expires --blocking-threads-idle-timeout --metrics-scrape-interval "
            "--metrics-address --metrics-port"
        ).split()
    ),
}
_GRANIAN_FLAGS: Mapping[str, str] = {"--reload": "reload", "--factory": "factory"}

# Django's own ASGI server (Twisted on the asyncio loop); its app is `module:attr`, always.
_DAPHNE_VALUES: Mapping[str, str | None] = {
    "-b": "host",
    "--bind": "host",
    "-p": "port",
    "--port": "port",
    **dict.fromkeys(
        (
            "--websocket_timeout --websocket_connect_timeout -u --unix-socket --fd -e "
            "--endpoint -v --verbosity -t --http-timeout --access-log --log-fmt "
            "--ping-interval --ping-timeout --websocket-max-message-size "
            "--websocket-max-frame-size --application-close-timeout --root-path "
            "--proxy-headers-host --proxy-headers-port -s --server-name"
        ).split()
    ),
}

_FASTAPI_VALUES: Mapping[str, str | None] = {
    "--host": "host",
    "--port": "port",
    "--workers": "workers",
    "--app": "app_attr",
    "-e": "entrypoint",
    "--entrypoint": "entrypoint",
    "--root-path": None,
    "--forwarded-allow-ips": None,
}
_FASTAPI_FLAGS: Mapping[str, str] = {"--reload": "reload", "--no-reload": "no_reload"}


@dataclass(frozen=True, slots=True)
class _Syntax:
    values: Mapping[str, str | None]
    flags: Mapping[str, str]
    default_attr: str  # attribute imported when the spec names only a module
    default_loop: str | None
    # Servers that add options often (granian): treat an unknown option followed by a word
    # that is not a "module:attr" spec as taking that word as its value.
    guess_unknown_values: bool = False


_SYNTAX: Mapping[ServerKind, _Syntax] = {
    "uvicorn": _Syntax(_UVICORN_VALUES, _UVICORN_FLAGS, "app", "auto"),
    "gunicorn": _Syntax(_GUNICORN_VALUES, _GUNICORN_FLAGS, "application", None),
    "hypercorn": _Syntax(_HYPERCORN_VALUES, _HYPERCORN_FLAGS, "app", "asyncio"),
    "granian": _Syntax(_GRANIAN_VALUES, _GRANIAN_FLAGS, "app", "auto", guess_unknown_values=True),
    "daphne": _Syntax(_DAPHNE_VALUES, {}, "application", "asyncio"),
    "fastapi": _Syntax(_FASTAPI_VALUES, _FASTAPI_FLAGS, "app", "auto"),
}

# Program or `-m` module name -> server.
_SERVER_NAMES: Mapping[str, ServerKind] = {
    "uvicorn": "uvicorn",
    "gunicorn": "gunicorn",
    "hypercorn": "hypercorn",
    "granian": "granian",
    "daphne": "daphne",
    "fastapi": "fastapi",
    "fastapi_cli": "fastapi",
}

_PYTHON_NAME = re.compile(r"^(?:python|pypy)(?:\d+(?:\.\d+)*)?t?(?:-dbg)?(?:\.exe)?$")
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ash"})
# CPython options that take a value (`-X dev`, `-W error`, `-Xdev`).
_PYTHON_VALUE_OPTIONS = frozenset("WX")
_PYTHON_LONG_VALUE_OPTIONS = frozenset({"--check-hash-based-pycs"})
_APP_SPEC = re.compile(r"^[\w./\\-]+:[\w.]+(?:\(\))?$")
_BIND = re.compile(r"^(?:\[(?P<host6>[^\]]+)\]|(?P<host>[^:\[\]]+))(?::(?P<port>\d+))?$")


def is_python_program(program: str) -> bool:
    """True for `python`, `python3.12`, `/venv/bin/python3`, `pypy3`, `python3.13t`..."""
    return bool(_PYTHON_NAME.match(os.path.basename(program)))


# The command lines of processes that multiprocessing starts with `spawn` or `forkserver`
# (uvicorn's --workers and --reload children, hypercorn's workers): they name no server,
# the process that started them does.
_MULTIPROCESSING_CHILD = re.compile(
    r"\bfrom multiprocessing\.(?:spawn|forkserver) import"
    r"|^--multiprocessing-fork$"
)
# Process titles servers set for themselves (gunicorn does when setproctitle is installed):
# /proc/PID/cmdline then holds only the title. gunicorn's default name is the app spec.
_PROCESS_TITLES: tuple[tuple[re.Pattern[str], ServerKind], ...] = (
    (re.compile(r"^gunicorn: (?:master|worker) \[(?P<name>[^\]]*)\]"), "gunicorn"),
)


def is_multiprocessing_child(argv: Sequence[str]) -> bool:
    """True for `python -c "from multiprocessing.spawn import spawn_main; ..."` and the like."""
    return any(_MULTIPROCESSING_CHILD.search(arg) for arg in argv)


def server_argv(cmdline: Sequence[str], ancestors: Sequence[Sequence[str]]) -> Sequence[str]:
    """The command line that names the server of a process: its own, or for a child that
    multiprocessing started (a worker or reload child), its nearest ancestor's that names
    one. `ancestors` are the parents' command lines, nearest first."""
    if not is_multiprocessing_child(cmdline):
        return cmdline
    for argv in ancestors:
        if is_multiprocessing_child(argv):
            continue  # a worker of a worker (e.g. spawned by a reload child)
        if parse_server_command(argv).server != "unknown":
            return argv
        break
    return cmdline


def parse_server_command(argv: Sequence[str]) -> ServerCommand:
    """Recognise the ASGI server and its settings in a command line (launch or /proc cmdline).

    Launchers in front (`env X=1`, `uv run`, `poetry run`, `python -m`, `sh -c "..."`) are
    looked through; anything unrecognised gives `server="unknown"`.
    """
    args = list(argv)
    title = " ".join(args).strip()
    for pattern, kind in _PROCESS_TITLES:
        match = pattern.match(title)
        if match is not None:
            name = match["name"].strip()
            if not _APP_SPEC.match(name):
                return ServerCommand(kind)  # a --name of the user's choosing
            factory = name.endswith("()")
            return ServerCommand(kind, app_spec=name.removesuffix("()"), factory=factory)
    if len(args) >= 3 and os.path.basename(args[0]) in _SHELLS and "-c" in args[1:-1]:
        # `sh -c "uvicorn app:app"`: the real command line is the -c string.
        try:
            return parse_server_command(shlex.split(args[args.index("-c", 1) + 1]))
        except ValueError:
            return ServerCommand("unknown")
    for i, token in enumerate(args):
        name = os.path.basename(token)
        if token.startswith("-") or "=" in name:
            continue  # launcher options and `VAR=value` assignments
        if is_python_program(token):
            return _parse_python(token, args[i + 1 :])
        server = _SERVER_NAMES.get(_strip_exe(name))
        if server is not None:
            return _parse_server(server, args[i + 1 :], None)
    return ServerCommand("unknown")


def _strip_exe(name: str) -> str:
    return name[:-4] if name.endswith(".exe") else name


def _split_python_args(rest: Sequence[str]) -> tuple[str, str, int]:
    """What `python [options] ...` runs: ("module", name, i) for `-m name`, ("command", code,
    i) for `-c`, ("script", path, i), or ("none", "", i); i indexes the first argument after."""
    i = 0
    while i < len(rest):
        token = rest[i]
        if token == "--":
            i += 1
            break
        if not token.startswith("-") or token == "-":
            break
        if token.startswith("--"):
            i += 2 if token in _PYTHON_LONG_VALUE_OPTIONS else 1
            continue
        # Short options combine (`-um uvicorn`, `-Xdev`, `-mgunicorn`): scan the letters.
        for j, letter in enumerate(token[1:], start=1):
            attached = token[j + 1 :]
            if letter in ("m", "c"):
                if attached:
                    return ("module" if letter == "m" else "command"), attached, i + 1
                operand = rest[i + 1] if i + 1 < len(rest) else ""
                return ("module" if letter == "m" else "command"), operand, i + 2
            if letter in _PYTHON_VALUE_OPTIONS:
                i += 0 if attached else 1
                break
        i += 1
    if i >= len(rest):
        return "none", "", i
    return "script", rest[i], i + 1


def _parse_python(python: str, rest: Sequence[str]) -> ServerCommand:
    """`python [options] (-m module | script) args...`"""
    kind, target, after = _split_python_args(rest)
    if kind == "module":
        server = _SERVER_NAMES.get(target.split(".")[0])
    elif kind == "script":
        server = _SERVER_NAMES.get(_strip_exe(os.path.basename(target)))
    else:
        server = None
    if server is not None:
        return _parse_server(server, rest[after:], python)
    return ServerCommand("unknown", python=python, script=target if kind == "script" else None)


def _parse_server(server: ServerKind, args: Sequence[str], python: str | None) -> ServerCommand:
    syntax = _SYNTAX[server]
    subcommand = "run"
    if server == "fastapi" and args and args[0] in ("run", "dev"):
        # `fastapi run|dev [PATH]`: the subcommand comes first; `dev` reloads by default.
        subcommand, args = args[0], args[1:]
    found, positionals = _scan_options(args, syntax)
    app_dir = found.get("app_dir")
    factory = "factory" in found
    spec: str | None = positionals[0] if positionals else None
    if server == "fastapi":
        spec, app_dir = _fastapi_spec(spec, found)
        reload = "reload" in found or (subcommand == "dev" and "no_reload" not in found)
    else:
        reload = "reload" in found
        if spec is not None:
            if spec.endswith("()") and ":" in spec:  # gunicorn: `module:create_app()`
                spec, factory = spec[:-2], True
            spec, path_dir = _module_spec(spec, syntax.default_attr)
            app_dir = app_dir or path_dir
    host, port = found.get("host"), _to_int(found.get("port"))
    if "bind" in found:
        host, port = _parse_bind(found["bind"])
    worker_class = found.get("worker_class")
    return ServerCommand(
        server=server,
        app_spec=spec,
        factory=factory,
        app_dir=app_dir,
        chdir=found.get("chdir"),
        workers=_to_int(found.get("workers")),
        reload=reload,
        loop=_loop_of(server, found.get("loop"), worker_class) or syntax.default_loop,
        host=host,
        port=port,
        worker_class=worker_class,
        interface=found.get("interface"),
        python=python,
    )


def _scan_options(args: Sequence[str], syntax: _Syntax) -> tuple[dict[str, str], list[str]]:
    """Field -> value of recognised options (flags map to ""), and the positional words."""
    found: dict[str, str] = {}
    positionals: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if token == "--":
            positionals.extend(args[i:])
            break
        if not token.startswith("-") or token == "-":
            positionals.append(token)
            continue
        name, eq, inline = token.partition("=")
        if not eq and not token.startswith("--") and len(token) > 2:
            # `-w4`, `-b0.0.0.0:80`: a short value option with its value attached
            if token[:2] in syntax.values:
                name, eq, inline = token[:2], "=", token[2:]
        if name in syntax.flags:
            found[syntax.flags[name]] = ""
            continue
        if name in syntax.values:
            value = inline if eq else (args[i] if i < len(args) else "")
            i += 0 if eq else 1
            field = syntax.values[name]
            if field is not None:
                found[field] = value
            continue
        if (
            syntax.guess_unknown_values
            and not eq
            and i < len(args)
            and not args[i].startswith("-")
            and not _APP_SPEC.match(args[i])
        ):
            i += 1
    return found, positionals


def _module_spec(spec: str, default_attr: str) -> tuple[str, str | None]:
    """("module:attr", app_dir) from `module`, `module:attr`, or a path `src/main.py:app`."""
    module, _, attr = spec.partition(":")
    attr = attr or default_attr
    app_dir: str | None = None
    if module.endswith(".py") or "/" in module:
        # hypercorn and granian also accept a file path; import it by name from its folder.
        path = module[:-3] if module.endswith(".py") else module
        app_dir, module = os.path.dirname(path) or None, os.path.basename(path)
    return f"{module}:{attr}", app_dir


def _fastapi_spec(path: str | None, found: Mapping[str, str]) -> tuple[str | None, str | None]:
    """`fastapi run [PATH] [--app NAME] [--entrypoint module:attr]` -> (spec, app_dir).

    fastapi-cli also climbs out of packages and discovers main.py/app.py when no PATH is
    given; both need the file system, so only a plain file path is understood here.
    """
    if "entrypoint" in found:
        return _module_spec(found["entrypoint"], found.get("app_attr") or "app")
    if path is None:
        return None, None
    module = path[:-3] if path.endswith(".py") else path
    app_dir = os.path.dirname(module.rstrip("/")) or None
    return f"{os.path.basename(module.rstrip('/'))}:{found.get('app_attr') or 'app'}", app_dir


def _loop_of(server: ServerKind, loop: str | None, worker_class: str | None) -> str | None:
    if loop:
        return loop
    if server == "hypercorn" and worker_class:
        return worker_class  # hypercorn's worker class *is* its loop: asyncio, uvloop, trio
    if server == "gunicorn" and worker_class and "uvicorn" in worker_class.lower():
        return "auto"  # UvicornWorker runs uvicorn's default loop
    return None


def _parse_bind(bind: str) -> tuple[str | None, int | None]:
    """gunicorn/hypercorn `-b`: `host:port`, `[::1]:port`, `host`; sockets have no host/port."""
    if bind.startswith(("unix:", "fd://")):
        return None, None
    match = _BIND.match(bind)
    if match is None:
        return None, None
    return match["host6"] or match["host"], _to_int(match["port"])


def _to_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


# --- the interpreter that can import the app ----------------------------------------------

# Ways a script names its interpreter, tried in order on the first lines of the file.
# pip writes the `/bin/sh` form when the interpreter path is too long for a shebang.
_SHEBANG_FORMS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\A#!\s*/bin/sh\s*\n'''exec' \"?(?P<program>[^\"\n]+?)\"? \"\$0\" \"\$@\""),
    re.compile(r"\A#!\s*(?:\S*/)?env\s+(?:-S\s+)?(?:\w+=\S*\s+)*(?P<command>[^\s-]\S*)"),
    re.compile(r"\A#!\s*(?P<program>\S+)"),
)
_SHEBANG_READ_BYTES = 4096


def find_target_python(
    cmdline: Sequence[str], exe: str, cwd: str, *, path_env: str | None = None
) -> str:
    """The interpreter that can import the target's app (see DESIGN.md on `/proc/PID/exe`).

    `exe` resolves a virtualenv's python symlink to the base interpreter, which lacks the
    app's packages; prefer, in order: `cmdline[0]` when it is python; the shebang of the
    script it runs; the interpreter of a virtualenv (pyvenv.cfg) the script lives in; `exe`.
    `path_env` is the target's PATH (default: ours) for bare names like `python3`.
    """
    if not cmdline:
        return exe
    search_path = os.environ.get("PATH", os.defpath) if path_env is None else path_env
    script = cmdline[0]
    if is_python_program(cmdline[0]):
        python = _find_program(cmdline[0], cwd, search_path)
        if python is not None:
            return python
        script_index = _python_script_index(cmdline)
        if script_index is None:
            return exe
        script = cmdline[script_index]
    script_path = _find_program(script, cwd, search_path, executable=False)
    if script_path is None:
        return exe
    python = _shebang_python(script_path, cwd, search_path)
    if python is not None:
        return python
    return _venv_python(script_path) or exe


def _python_script_index(cmdline: Sequence[str]) -> int | None:
    """Index of the script `python [options] script` runs; None for `-m`/`-c`/no script."""
    kind, _, after = _split_python_args(cmdline[1:])
    return after if kind == "script" else None


def _find_program(
    program: str, cwd: str, search_path: str, *, executable: bool = True
) -> str | None:
    """Absolute path of `program` as the target would find it, symlinks NOT resolved.

    Resolving symlinks would turn a venv's `bin/python` into the base interpreter: exactly
    the mistake `find_target_python` exists to avoid.
    """
    if os.sep in program:
        path = os.path.normpath(os.path.join(cwd, program))
        ok = os.path.isfile(path) and (not executable or os.access(path, os.X_OK))
        return path if ok else None
    found = shutil.which(program, path=search_path)
    return os.path.normpath(os.path.join(cwd, found)) if found else None


def _shebang_python(script: str, cwd: str, search_path: str) -> str | None:
    try:
        with open(script, "rb") as f:
            head = f.read(_SHEBANG_READ_BYTES).decode("utf-8", "replace")
    except OSError:
        return None
    for form in _SHEBANG_FORMS:
        match = form.match(head)
        if match is None:
            continue
        groups = match.groupdict()
        command, program = groups.get("command"), groups.get("program")
        if command is not None:
            program = _find_program(command, cwd, search_path)
        elif program is not None:
            program = _find_program(program, cwd, search_path)
        if program is not None and is_python_program(program):
            return program
    return None


def _venv_python(script: str) -> str | None:
    """`/venv/bin/uvicorn` -> `/venv/bin/python` when `/venv/pyvenv.cfg` exists."""
    bin_dir = os.path.dirname(script)
    prefix = os.path.dirname(bin_dir)
    if not os.path.isfile(os.path.join(prefix, "pyvenv.cfg")):
        return None
    for name in ("python", "python3"):
        candidate = os.path.join(bin_dir, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None
