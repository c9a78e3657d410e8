"""Which server a process belongs to: its command line, its parent's, or its process title."""

from __future__ import annotations

import pytest

from asgiprof.record.command import (
    ServerCommand,
    is_multiprocessing_child,
    parse_server_command,
    server_argv,
)

PY = "/srv/venv/bin/python3"
SPAWN_CHILD = [
    PY,
    "-c",
    "from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=5, pipe_handle=7)",
    "--multiprocessing-fork",
]
FORKSERVER_CHILD = [PY, "-c", "from multiprocessing.forkserver import main; main(5, 6, [], **{})"]
UVICORN_MASTER = [PY, "-m", "uvicorn", "main:app", "--workers", "2", "--port", "8000"]
RELOADER = ["/srv/venv/bin/uvicorn", "main:app", "--reload"]
HYPERCORN = [PY, "/srv/venv/bin/hypercorn", "-w", "2", "-b", "0.0.0.0:8000", "main:app"]
GRANIAN = ["/srv/venv/bin/granian", "--interface", "asgi", "--workers", "2", "main:app"]


@pytest.mark.parametrize("argv", [SPAWN_CHILD, FORKSERVER_CHILD])
def test_multiprocessing_children_are_recognised(argv: list[str]) -> None:
    assert is_multiprocessing_child(argv)
    assert parse_server_command(argv).server == "unknown"


@pytest.mark.parametrize(
    "argv",
    [
        UVICORN_MASTER,
        GRANIAN,
        [PY, "-c", "print('from multiprocessing')"],
        [PY, "-m", "multiprocessing.spawn"],
        [],
    ],
)
def test_other_command_lines_are_not_children(argv: list[str]) -> None:
    assert not is_multiprocessing_child(argv)


@pytest.mark.parametrize(
    ("ancestors", "server", "spec"),
    [
        ([UVICORN_MASTER, ["bash"]], "uvicorn", "main:app"),  # uvicorn --workers
        ([RELOADER], "uvicorn", "main:app"),  # uvicorn --reload
        ([HYPERCORN], "hypercorn", "main:app"),  # hypercorn's workers
        # a worker that a reload child spawned: the child is skipped for the reloader
        ([SPAWN_CHILD, RELOADER], "uvicorn", "main:app"),
    ],
)
def test_a_worker_or_reload_child_is_named_by_its_parent(
    ancestors: list[list[str]], server: str, spec: str
) -> None:
    argv = server_argv(SPAWN_CHILD, ancestors)
    command = parse_server_command(argv)
    assert (command.server, command.app_spec) == (server, spec)


def test_a_child_of_no_known_server_keeps_its_own_command_line() -> None:
    # The nearest non-child ancestor is what started the workers: only it may name them.
    assert server_argv(SPAWN_CHILD, [[PY, "myjob.py"], UVICORN_MASTER]) == SPAWN_CHILD
    assert server_argv(SPAWN_CHILD, []) == SPAWN_CHILD


def test_a_process_that_names_its_server_keeps_its_command_line() -> None:
    # gunicorn and granian fork their workers: a worker's command line is the master's.
    assert server_argv(GRANIAN, [GRANIAN]) == GRANIAN
    assert server_argv(UVICORN_MASTER, [RELOADER]) == UVICORN_MASTER


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        (["gunicorn: master [main:app]"], ServerCommand("gunicorn", app_spec="main:app")),
        # setproctitle pads the title with spaces in place
        (
            ["gunicorn: worker [main:create_app()]   "],
            ServerCommand("gunicorn", app_spec="main:create_app", factory=True),
        ),
        (["gunicorn: worker [api]"], ServerCommand("gunicorn")),  # --name api: no spec
    ],
)
def test_gunicorn_process_titles(title: list[str], expected: ServerCommand) -> None:
    assert parse_server_command(title) == expected


@pytest.mark.parametrize(
    ("argv", "server", "loop"),
    [
        ([PY, "-m", "granian", "--interface", "asgi", "main:app"], "granian", "auto"),
        ([PY, "-m", "hypercorn", "-k", "uvloop", "main:app"], "hypercorn", "uvloop"),
        (
            [PY, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "2", "main:app"],
            "gunicorn",
            "auto",
        ),
        ([PY, "-m", "uvicorn", "main:app"], "uvicorn", "auto"),
    ],
)
def test_servers_started_as_python_modules(argv: list[str], server: str, loop: str) -> None:
    command = parse_server_command(argv)
    assert (command.server, command.app_spec, command.loop) == (server, "main:app", loop)
