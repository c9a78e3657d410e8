"""Where a frame's code lives: the user's own code, the standard library, or a library.

The target runs in its own environment, so we judge by path shapes, not by our sys.path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Literal

from asgiprof.model import Frame, Route

# Reads a source line (file, 1-based line) as the profile saw it; None when unknown.
SourceReader = Callable[[str, int], "str | None"]

FrameKind = Literal["user", "stdlib", "library"]

# site-packages, and console scripts (`.venv/bin/uvicorn`) that start the server.
_LIBRARY_DIRS = re.compile(r"[/\\](?:(?:site|dist)-packages|bin|Scripts)[/\\]")
# .../lib/python3.11/asyncio/..., ...\Lib\asyncio\..., frozen and builtin pseudo-files
_STDLIB = re.compile(
    r"(?:[/\\]lib[/\\](?:pypy|python)\d\.\d+[/\\])|(?:^<[^>]*>$)|(?:[/\\]Lib[/\\])"
)


@lru_cache(maxsize=65536)
def file_kind(file: str, app_roots: tuple[str, ...] = ()) -> FrameKind:
    """`app_roots` (see `app_roots`) are the app's own code even under site-packages."""
    if not file:
        return "stdlib"
    if app_roots and any(file == root or file.startswith(root + "/") for root in app_roots):
        return "user"
    if _LIBRARY_DIRS.search(file):
        return "library"
    if _STDLIB.search(file):
        return "stdlib"
    return "user"


# Web frameworks' ASGI applications and middleware. A user line calling one of their
# `__call__`s (`await self.app(scope, receive, send)`) or Starlette's `call_next` hands the
# request on down the stack; it does not itself block.
_ASGI_FRAMEWORKS = re.compile(
    r"[/\\](?:starlette|fastapi|litestar|quart|asgiref|sanic|falcon|blacksheep|django|channels)[/\\]"
)
_DISPATCH_FUNCTIONS = frozenset({"__call__", "call_next"})


def is_web_framework(frame: Frame) -> bool:
    return _ASGI_FRAMEWORKS.search(frame.file) is not None and file_kind(frame.file) == "library"


def is_asgi_dispatch(frame: Frame) -> bool:
    return (
        bare_function(frame.function) in _DISPATCH_FUNCTIONS
        and _ASGI_FRAMEWORKS.search(frame.file) is not None
        and file_kind(frame.file) == "library"
    )


def is_user(frame: Frame, app_roots: tuple[str, ...] = ()) -> bool:
    return file_kind(frame.file, app_roots) == "user"


def app_roots(routes: tuple[Route, ...]) -> tuple[str, ...]:
    """Where the app's own code lives when it is installed as a library (`pip install .`,
    Docker images): the package (or lone module's folder) of every endpoint not defined by
    a web framework, found from the endpoint's qualified name and its file.

    Code outside site-packages is the user's anyway; these roots add the app's package
    under site-packages, never a whole site-packages folder.
    """
    roots: set[str] = set()
    for route in routes:
        if not route.file or route.endpoint.split(".")[0] in _FRAMEWORK_PACKAGES:
            continue
        root = _package_root(route.file, route.endpoint)
        if root is not None and _LIBRARY_DIRS.search(root + "/"):
            roots.add(root)
    return tuple(sorted(roots))


# Endpoints these define (OpenAPI docs, static files) do not make the framework the app.
_FRAMEWORK_PACKAGES = frozenset(
    {"fastapi", "starlette", "litestar", "quart", "sanic", "falcon", "django", "asgiref"}
)


def _package_root(file: str, qualname: str) -> str | None:
    """`/x/site-packages/shop/api/users.py` for `shop.api.users.get_user` ->
    `/x/site-packages/shop`; a top-level module keeps its folder (its sibling modules are the
    app's too) unless that folder is site-packages itself."""
    path = file.replace("\\", "/")
    names = qualname.split(".")
    for k in range(len(names) - 1, 0, -1):  # the longest module prefix matching the file
        module = "/".join(names[:k])
        for tail in (f"/{module}.py", f"/{module}/__init__.py"):
            if path.endswith(tail):
                top = path[: len(path) - len(tail)] + "/" + names[0]
                folder = top.rsplit("/", 1)[0]
                if not re.search(r"(?:site|dist)-packages$", folder):
                    return folder
                lone_module = k == 1 and tail.endswith(".py") and not tail.endswith("__init__.py")
                return top + ".py" if lone_module else top
    return None


def short_name(frame: Frame) -> str:
    """`function (file:line)`, the way stacks are shown everywhere."""
    return f"{frame.function} ({frame.file}:{frame.line})"


def bare_function(name: str) -> str:
    """`BaseEventLoop.run_forever` -> `run_forever` (3.9/3.10 frames carry no class)."""
    return name.rsplit(".", 1)[-1]
