"""Server command lines, redaction, and the interpreter that can import the app."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from asgiprof.record.command import (
    ServerCommand,
    find_target_python,
    is_python_program,
    parse_server_command,
)
from asgiprof.redact import redact, redact_text

# --- parse_server_command --------------------------------------------------------------------

PARSE_CASES: list[tuple[str, ServerCommand]] = [
    ("uvicorn main:app", ServerCommand("uvicorn", "main:app", loop="auto")),
    (
        "uvicorn main:app --host 0.0.0.0 --port 8000 --workers 4 --loop uvloop",
        ServerCommand("uvicorn", "main:app", workers=4, loop="uvloop", host="0.0.0.0", port=8000),
    ),
    (
        "uvicorn --port=9000 --reload --reload-dir src app.main:api",
        ServerCommand("uvicorn", "app.main:api", reload=True, loop="auto", port=9000),
    ),
    # a module alone means module:app (uvicorn insists on the colon; we do not)
    ("uvicorn main", ServerCommand("uvicorn", "main:app", loop="auto")),
    (
        "uvicorn --factory main:create_app --app-dir src",
        ServerCommand("uvicorn", "main:create_app", factory=True, app_dir="src", loop="auto"),
    ),
    # option values that look like words are not the app spec
    (
        "uvicorn --log-level debug --env-file .env --root-path /api --header x:y main:app",
        ServerCommand("uvicorn", "main:app", loop="auto"),
    ),
    (
        "python -m uvicorn main:app --port 8001",
        ServerCommand("uvicorn", "main:app", loop="auto", port=8001, python="python"),
    ),
    (
        "python3.12 -u -X dev -W error -m uvicorn main:app",
        ServerCommand("uvicorn", "main:app", loop="auto", python="python3.12"),
    ),
    (
        "python3 -Xfrozen_modules=off -muvicorn main:app",
        ServerCommand("uvicorn", "main:app", loop="auto", python="python3"),
    ),
    (
        "/srv/app/.venv/bin/uvicorn main:app --uds /tmp/app.sock",
        ServerCommand("uvicorn", "main:app", loop="auto"),
    ),
    # /proc/PID/cmdline of a console script: the kernel put the shebang's python first
    (
        "/srv/venv/bin/python3 /srv/venv/bin/uvicorn main:app --workers 2",
        ServerCommand(
            "uvicorn", "main:app", workers=2, loop="auto", python="/srv/venv/bin/python3"
        ),
    ),
    (
        "gunicorn -k uvicorn.workers.UvicornWorker -w 4 -b 0.0.0.0:8000 main:app",
        ServerCommand(
            "gunicorn",
            "main:app",
            workers=4,
            loop="auto",
            host="0.0.0.0",
            port=8000,
            worker_class="uvicorn.workers.UvicornWorker",
        ),
    ),
    (
        "gunicorn main:app --worker-class uvicorn_worker.UvicornWorker --bind=[::1]:9000 "
        "--workers=3 --chdir /srv/app --timeout 120",
        ServerCommand(
            "gunicorn",
            "main:app",
            chdir="/srv/app",
            workers=3,
            loop="auto",
            host="::1",
            port=9000,
            worker_class="uvicorn_worker.UvicornWorker",
        ),
    ),
    # attached short values, and gunicorn's factory call syntax
    (
        "gunicorn -w2 -b127.0.0.1:8080 -kuvicorn.workers.UvicornWorker 'main:create_app()'",
        ServerCommand(
            "gunicorn",
            "main:create_app",
            factory=True,
            workers=2,
            loop="auto",
            host="127.0.0.1",
            port=8080,
            worker_class="uvicorn.workers.UvicornWorker",
        ),
    ),
    # gunicorn's default attribute is `application`; a sync worker has no event loop
    ("gunicorn -b unix:/run/app.sock wsgi", ServerCommand("gunicorn", "wsgi:application")),
    (
        "hypercorn main:app -b 0.0.0.0:8000 -w 2 -k uvloop --reload",
        ServerCommand(
            "hypercorn",
            "main:app",
            workers=2,
            reload=True,
            loop="uvloop",
            host="0.0.0.0",
            port=8000,
            worker_class="uvloop",
        ),
    ),
    # hypercorn accepts a file path; it imports the file by name from its folder
    (
        "hypercorn src/service/main.py:api --bind localhost",
        ServerCommand(
            "hypercorn", "main:api", app_dir="src/service", loop="asyncio", host="localhost"
        ),
    ),
    # daphne (Django's server): its value options (-v 2, --access-log -) are not the app
    (
        "daphne -b 127.0.0.1 -p 8001 -v 2 --access-log - --proxy-headers mysite.asgi:application",
        ServerCommand(
            "daphne", "mysite.asgi:application", loop="asyncio", host="127.0.0.1", port=8001
        ),
    ),
    (
        "python -m daphne -u /run/d.sock asgi",
        ServerCommand("daphne", "asgi:application", loop="asyncio", python="python"),
    ),
    (
        "granian --interface asgi main:app --workers 2 --loop uvloop --port 8000",
        ServerCommand("granian", "main:app", workers=2, loop="uvloop", port=8000, interface="asgi"),
    ),
    # unknown granian options: their values are skipped, a module:attr word is not
    (
        "granian --interface asgi --runtime-threads 2 --no-ws --some-new-option val "
        "--factory --working-dir /srv main:make",
        ServerCommand(
            "granian", "main:make", factory=True, chdir="/srv", loop="auto", interface="asgi"
        ),
    ),
    (
        "fastapi run main.py --port 80 --workers 4",
        ServerCommand("fastapi", "main:app", workers=4, loop="auto", port=80),
    ),
    (
        "fastapi dev src/app/main.py --app api",
        ServerCommand("fastapi", "main:api", app_dir="src/app", reload=True, loop="auto"),
    ),
    ("fastapi dev --no-reload main.py", ServerCommand("fastapi", "main:app", loop="auto")),
    (
        "fastapi run --entrypoint pkg.main:api",
        ServerCommand("fastapi", "pkg.main:api", loop="auto"),
    ),
    # fastapi-cli discovers the file itself when none is given
    ("fastapi run", ServerCommand("fastapi", None, loop="auto")),
    (
        "python -m fastapi run main.py",
        ServerCommand("fastapi", "main:app", loop="auto", python="python"),
    ),
    # launchers in front
    (
        "uv run --frozen uvicorn main:app",
        ServerCommand("uvicorn", "main:app", loop="auto"),
    ),
    (
        "poetry run gunicorn -k uvicorn.workers.UvicornWorker main:app",
        ServerCommand(
            "gunicorn", "main:app", loop="auto", worker_class="uvicorn.workers.UvicornWorker"
        ),
    ),
    (
        "env DEBUG=1 PORT=80 uvicorn main:app",
        ServerCommand("uvicorn", "main:app", loop="auto"),
    ),
    (
        "/bin/sh -c 'exec uvicorn main:app --workers 2'",
        ServerCommand("uvicorn", "main:app", workers=2, loop="auto"),
    ),
    # not a server we know
    ("python app.py --port 8000", ServerCommand("unknown", python="python", script="app.py")),
    ("python -c 'import app'", ServerCommand("unknown", python="python")),
    ("python -m http.server", ServerCommand("unknown", python="python")),
    ("node server.js", ServerCommand("unknown")),
    ("", ServerCommand("unknown")),
    # gunicorn's process title (setproctitle installed): psutil splits it at spaces
    ("gunicorn: master [main:app]", ServerCommand("gunicorn", "main:app")),
]


@pytest.mark.parametrize(("command", "expected"), PARSE_CASES, ids=[c for c, _ in PARSE_CASES])
def test_parse_server_command(command: str, expected: ServerCommand) -> None:
    assert parse_server_command(shlex.split(command) if command else []) == expected


def test_parse_shell_string_that_does_not_split() -> None:
    assert parse_server_command(["sh", "-c", "uvicorn 'main:app"]) == ServerCommand("unknown")


def test_parse_takes_options_after_the_app_and_bad_numbers_as_unset() -> None:
    parsed = parse_server_command(["uvicorn", "main:app", "--port", "http", "--workers"])
    assert (parsed.app_spec, parsed.port, parsed.workers) == ("main:app", None, None)


@pytest.mark.parametrize(
    ("program", "expected"),
    [
        ("python", True),
        ("python3", True),
        ("python3.13t", True),
        ("/srv/.venv/bin/python3.11", True),
        ("pypy3", True),
        ("python3-config", False),
        ("pythonista", False),
        ("uvicorn", False),
    ],
)
def test_is_python_program(program: str, expected: bool) -> None:
    assert is_python_program(program) is expected


# --- redaction --------------------------------------------------------------------------------

# One case per rule at least: (text, redacted text).
REDACT_TEXT_CASES: list[tuple[str, str]] = [
    # passwords in URLs
    ("postgresql://user:S3cret@db:5432/app", "postgresql://user:***@db:5432/app"),
    (
        "postgresql+asyncpg://app:p/ss:w0rd@db/x",
        "postgresql+asyncpg://app:***@db/x",
    ),
    ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
    ("amqp://guest@rabbit//", "amqp://guest@rabbit//"),  # no password: nothing to hide
    ("http://host:8000/path", "http://host:8000/path"),
    # secrets in query strings
    (
        "https://api.example.com/v1?token=abc123&page=2&db_password=x",
        "https://api.example.com/v1?token=***&page=2&db_password=***",
    ),
    ("https://s3/obj?X-Amz-Signature=f00d&sig=1", "https://s3/obj?X-Amz-Signature=***&sig=***"),
    # option flags with values
    ("--token=abc123", "--token=***"),
    ("--token abc123 --port 80", "--token *** --port 80"),
    ("--password 'two words'", "--password '***'"),
    ('--password "two words"', '--password "***"'),
    ("--api-key k1 --api_key k2 --apikey k3", "--api-key *** --api_key *** --apikey ***"),
    ("--secret-key s --client-secret c", "--secret-key *** --client-secret ***"),
    (
        "--ssl-keyfile-password pw --ssl-keyfile key.pem",
        "--ssl-keyfile-password *** --ssl-keyfile key.pem",
    ),
    ("-token t", "-token ***"),
    ("--auth u:p --credentials c", "--auth *** --credentials ***"),
    # a secret flag without a value does not swallow the next option
    ("--token --reload", "--token --reload"),
    ("--passthrough x --tokenizer y", "--passthrough x --tokenizer y"),
    # assignments
    ("SECRET_KEY=abc", "SECRET_KEY=***"),
    (
        "X_KEY=abc Y_TOKEN=def Z_SECRET=ghi W_PASSWORD=jkl",
        "X_KEY=*** Y_TOKEN=*** Z_SECRET=*** W_PASSWORD=***",
    ),
    (
        "AWS_SECRET_ACCESS_KEY=wJalr AWS_ACCESS_KEY_ID=AKIA",
        "AWS_SECRET_ACCESS_KEY=*** AWS_ACCESS_KEY_ID=***",
    ),
    ("PGPASSWORD=pg MYSQL_PWD=my GITHUB_TOKEN=gh", "PGPASSWORD=*** MYSQL_PWD=*** GITHUB_TOKEN=***"),
    ("db_password=x api_key=y", "db_password=*** api_key=***"),
    ('API_KEY="a b" OTHER=1', 'API_KEY="***" OTHER=1'),
    # not secrets
    (
        "PWD=/srv OLDPWD=/ MONKEY=1 KEYBOARD=us BYPASS=1 TOKENIZERS_PARALLELISM=false",
        "PWD=/srv OLDPWD=/ MONKEY=1 KEYBOARD=us BYPASS=1 TOKENIZERS_PARALLELISM=false",
    ),
    # headers
    ("Authorization: Bearer eyJhbGciOi.x.y", "Authorization: Bearer ***"),
    ("-H 'Authorization: Basic dXNlcjpwYXNz'", "-H 'Authorization: Basic ***'"),
    ("authorization=tok123", "authorization=***"),
    ("Proxy-Authorization: Digest abc", "Proxy-Authorization: Digest ***"),
    ("bearer abc.def-ghi", "bearer ***"),
    # keys in JSON / YAML / reprs
    ('{"password": "hunter2", "user": "bob"}', '{"password": "***", "user": "bob"}'),
    ("{'api_key': 'k', 'n': 1}", "{'api_key': '***', 'n': 1}"),
    ("db_token: abc", "db_token: ***"),
    # nothing to hide
    ("uvicorn main:app --port 8000", "uvicorn main:app --port 8000"),
    ("", ""),
    ("ünïcödé --token wört", "ünïcödé --token ***"),
]


@pytest.mark.parametrize(
    ("text", "expected"), REDACT_TEXT_CASES, ids=[t or "<empty>" for t, _ in REDACT_TEXT_CASES]
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected
    assert redact_text(expected) == expected  # idempotent: redacting twice changes nothing


REDACT_ARGV_CASES: list[tuple[list[str], tuple[str, ...]]] = [
    (
        ["uvicorn", "main:app", "--ssl-keyfile-password", "pw", "--port", "8000"],
        ("uvicorn", "main:app", "--ssl-keyfile-password", "***", "--port", "8000"),
    ),
    # an argv element keeps its spaces: everything after `=` is the value
    (["--password=two words", "API_KEY=a b c"], ("--password=***", "API_KEY=***")),
    (
        ["gunicorn", "-e", "SECRET_KEY=s3", "main:app"],
        ("gunicorn", "-e", "SECRET_KEY=***", "main:app"),
    ),
    (["--token", "--reload"], ("--token", "--reload")),
    (["--token", "-starts-with-dash"], ("--token", "***")),
    (["--token"], ("--token",)),
    (
        ["env", "DATABASE_URL=postgresql://u:pw@h/db"],
        ("env", "DATABASE_URL=postgresql://u:***@h/db"),
    ),
    (
        ["curl", "-H", "Authorization: Bearer abc", "http://x"],
        ("curl", "-H", "Authorization: Bearer ***", "http://x"),
    ),
    ([], ()),
]


@pytest.mark.parametrize(("argv", "expected"), REDACT_ARGV_CASES)
def test_redact_argv(argv: list[str], expected: tuple[str, ...]) -> None:
    assert redact(argv) == expected


_SECRET = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=8
)
_TEMPLATES = [
    "postgresql://user:{}@db/app",
    "--token={}",
    "--password {}",
    "MY_SECRET={}",
    "Authorization: Bearer {}",
    "https://h/?api_key={}&x=1",
    '{{"token": "{}"}}',
]


@given(secret=_SECRET, template=st.sampled_from(_TEMPLATES), before=st.text(), after=st.text())
def test_redact_text_hides_the_secret_anywhere(
    secret: str, template: str, before: str, after: str
) -> None:
    # GIVEN a secret in a known form, surrounded by arbitrary text on other lines
    assume(secret not in before and secret not in after)
    text = f"{before}\n{template.format(secret)}\n{after}"
    # WHEN redacted THEN the secret is gone, and a second pass changes nothing
    redacted = redact_text(text)
    assert secret not in redacted
    assert redact_text(redacted) == redacted


@given(st.lists(st.text()))
def test_redact_never_fails_and_keeps_length(argv: list[str]) -> None:
    assert len(redact(argv)) == len(argv)


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "hostile",
    [
        "a://b:" * 30_000,
        "?token" * 30_000,
        "--a-" * 30_000 + " x",
        "A_" * 50_000 + "=x",
        "tokentoken" * 10_000 + ": x",
        "a-" * 50_000,
        '"password": "' * 10_000,
        "Bearer " * 20_000,
        "a.a." * 30_000 + "://x:y",
        "X_KEY=" * 30_000,
        "\x00\n\r\t" * 10_000,
    ],
    ids=lambda s: repr(s[:12]),
)
def test_redact_hostile_input_finishes(hostile: str) -> None:
    # Long adversarial text must not send a rule into quadratic backtracking.
    assert isinstance(redact_text(hostile), str)
    assert len(redact([hostile, hostile])) == 2


# --- find_target_python ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real virtualenv holding a module the base interpreter cannot import."""
    root = tmp_path_factory.mktemp("target") / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120
    )
    purelib = subprocess.run(
        [
            str(root / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ],
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "only_in_venv.py").write_text("VALUE = 42\n")
    return root


@pytest.fixture(scope="module")
def base_python() -> str:
    """What /proc/PID/exe shows for the venv's python: the resolved base interpreter."""
    return os.path.realpath(sys.executable)


def _can_import_app_package(python: str) -> bool:
    proc = subprocess.run([python, "-c", "import only_in_venv"], timeout=60, capture_output=True)
    return proc.returncode == 0


def _script(path: Path, head: str) -> Path:
    path.write_text(head + "\nimport sys\n")
    path.chmod(0o755)
    return path


def test_the_base_interpreter_cannot_import_the_venv_package(venv: Path, base_python: str) -> None:
    # The premise of find_target_python: following the venv's symlink loses the venv.
    assert _can_import_app_package(str(venv / "bin" / "python"))
    assert not _can_import_app_package(base_python)


def test_python_in_cmdline_is_kept_unresolved(venv: Path, base_python: str) -> None:
    python = str(venv / "bin" / "python")
    found = find_target_python([python, "-m", "uvicorn", "main:app"], base_python, "/")
    assert found == python
    assert _can_import_app_package(found)


def test_relative_python_is_resolved_against_the_targets_cwd(venv: Path, base_python: str) -> None:
    cmdline = ["./venv/bin/python", "-m", "uvicorn", "main:app"]
    assert find_target_python(cmdline, base_python, str(venv.parent)) == str(
        venv / "bin" / "python"
    )


def test_bare_python_is_found_on_the_targets_path(venv: Path, base_python: str) -> None:
    found = find_target_python(
        ["python3", "-m", "uvicorn", "main:app"], base_python, "/", path_env=str(venv / "bin")
    )
    assert found == str(venv / "bin" / "python3")
    assert _can_import_app_package(found)


def test_script_shebang_names_the_interpreter(venv: Path, base_python: str, tmp_path: Path) -> None:
    script = _script(tmp_path / "uvicorn", f"#!{venv}/bin/python")
    found = find_target_python([str(script), "main:app"], base_python, "/")
    assert found == f"{venv}/bin/python"


def test_env_shebang_is_looked_up_on_path(venv: Path, base_python: str, tmp_path: Path) -> None:
    _script(tmp_path / "serve", "#!/usr/bin/env python3")
    found = find_target_python(
        ["serve", "main:app"], base_python, "/", path_env=f"{tmp_path}:{venv}/bin"
    )
    assert found == f"{venv}/bin/python3"


def test_pip_long_shebang_form(venv: Path, base_python: str, tmp_path: Path) -> None:
    # pip writes this when the interpreter path is too long for a kernel shebang
    head = f"#!/bin/sh\n'''exec' \"{venv}/bin/python\" \"$0\" \"$@\"\n' '''"
    script = _script(tmp_path / "uvicorn", head)
    assert find_target_python([str(script)], base_python, "/") == f"{venv}/bin/python"


def test_python_running_a_script_it_cannot_be_found_for(
    venv: Path, base_python: str, tmp_path: Path
) -> None:
    # GIVEN `python3 /venv/bin/uvicorn` where python3 is not on the PATH we were given
    script = _script(tmp_path / "uvicorn", f"#!{venv}/bin/python")
    cmdline = ["python3", "-X", "dev", str(script), "main:app"]
    # THEN the script's shebang decides
    found = find_target_python(cmdline, base_python, "/", path_env=str(tmp_path / "nowhere"))
    assert found == f"{venv}/bin/python"


def test_script_in_a_venv_without_python_shebang(venv: Path, base_python: str) -> None:
    # A script in the venv's bin whose shebang is not python (a shell wrapper): pyvenv.cfg
    script = _script(venv / "bin" / "serve-app", "#!/bin/sh")
    found = find_target_python([str(script), "main:app"], base_python, "/")
    assert found == str(venv / "bin" / "python")
    assert _can_import_app_package(found)


@pytest.mark.parametrize(
    "cmdline",
    [
        [],
        ["gunicorn: master [main:app]"],  # setproctitle rewrote argv
        ["/does/not/exist/uvicorn", "main:app"],
        ["python3", "-m", "uvicorn"],  # python not on the PATH given
    ],
)
def test_falls_back_to_exe(cmdline: list[str], base_python: str, tmp_path: Path) -> None:
    assert find_target_python(cmdline, base_python, str(tmp_path), path_env="") == base_python


def test_unreadable_script_falls_back_to_exe(base_python: str, tmp_path: Path) -> None:
    script = tmp_path / "binary"
    script.write_bytes(b"\x7fELF\x00\x00" + os.urandom(64))
    script.chmod(0o755)
    assert find_target_python([str(script)], base_python, "/") == base_python
