"""Tasks an endpoint spawns, and the route whose cost they are.

`await asyncio.gather(client.get(a), client.get(b))` in an endpoint runs each call in a
task of its own: the task's stack starts at the loop and goes straight into
`AsyncClient.get`, with no frame of the endpoint or its route on it. Without this, the
time of fan-out calls counts for no route (the busy test app's `GET /quotes/{item_id}`
read 1.3 s of its 2.5 s short in one attach run).

The evidence is the endpoint's source: the names of the calls it hands to `gather`,
`create_task`, `ensure_future`, `wait_for`, `shield`, `wait`, `as_completed` or anyio's
`start_soon` (which takes the function itself). A loop stack with no route whose task
starts (its first frame after the event loop's own: `LoopSample.callback`) in a function of
that name is that route's, when exactly one route spawns that name; when several do, the
stack says nothing about which, and it stays with no route. Tasks spawned by helpers the
endpoint calls, or by dependencies, are not followed.

Background tasks (`background_tasks.add_task(send_email, user)`, Starlette's
`BackgroundTask(send_email, ...)`) run after the response, inside the request's own task,
but below the response, not the endpoint: Starlette's `BackgroundTask.__call__` awaits the
function right under it. A `def` one runs in a threadpool worker, where it is the first frame
of the app's code above the worker's entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final

from asgiprof.analyze.frames import SourceReader, bare_function, is_user
from asgiprof.analyze.roles import is_worker_entry
from asgiprof.model import Frame, Route

_SPAWN: Final = re.compile(
    r"\b(?:gather|create_task|ensure_future|wait_for|shield|wait|as_completed|start_soon"
    r"|add_task|BackgroundTask)\s*\("
)
# Starlette's background task runner (FastAPI's BackgroundTasks is it): its `__call__`
# awaits the task's function, the frame right below it.
_BACKGROUND_FILE: Final = "starlette/background.py"
_CALL: Final = re.compile(r"([A-Za-z_]\w*)\s*\(")
_NAME: Final = re.compile(r"[A-Za-z_][\w.]*")
# An endpoint longer than this is read up to here: its spawn calls are near its top.
_MAX_LINES: Final = 400


def spawned_names(text: str) -> set[str]:
    """Names of the calls `text` hands to a task-spawning function."""
    names: set[str] = set()
    for m in _SPAWN.finditer(text):
        inner = _inside(text, m.end() - 1)
        names.update(c.group(1) for c in _CALL.finditer(inner))
        first = inner.split(",", 1)[0].strip()
        if _NAME.fullmatch(first):  # start_soon(fetch, url): the function itself
            names.add(first.rsplit(".", 1)[-1])
    return names


def _inside(text: str, open_at: int) -> str:
    """The text between the parenthesis at `open_at` and the one that closes it."""
    depth = 0
    for i in range(open_at, len(text)):
        c = text[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    return text[open_at + 1 :]


class SpawnedTasks:
    """Which route's endpoint spawns tasks that start in a function of a given name."""

    def __init__(self, routes: Iterable[Route], read_line: SourceReader) -> None:
        spawners: dict[str, set[str]] = {}
        for route in routes:
            if not route.file or route.first_line <= 0:
                continue
            last = min(route.last_line, route.first_line + _MAX_LINES)
            lines = (read_line(route.file, n) for n in range(route.first_line, last + 1))
            for name in spawned_names(" ".join(line or "" for line in lines)):
                spawners.setdefault(name, set()).add(route.name)
        self._route = {name: next(iter(rs)) for name, rs in spawners.items() if len(rs) == 1}

    def background_route(self, stack: Sequence[Frame]) -> str | None:
        """The route whose endpoint added the background task a stack runs, if it runs one:
        on the loop, below Starlette's runner; in a threadpool worker, a `def` task."""
        for i in range(len(stack) - 2, -1, -1):
            frame = stack[i]
            if frame.file.replace("\\", "/").endswith(_BACKGROUND_FILE) and (
                bare_function(frame.function) == "__call__"
            ):
                return self._route.get(bare_function(stack[i + 1].function))
            if is_worker_entry(frame):
                task = next((f for f in stack[i + 1 :] if is_user(f)), None)
                return self._route.get(bare_function(task.function)) if task else None
        return None

    def route_of(self, callback: Frame) -> str | None:
        """The route whose endpoint spawned the task a loop stack runs: `callback` is the
        stack's first frame after the event loop's own (`LoopSample.callback`)."""
        return self._route.get(callback.function.rsplit(".", 1)[-1])
