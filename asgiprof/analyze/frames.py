"""Where a frame's code lives: the user's own code, the standard library, or a library.

The target runs in its own environment, so we judge by path shapes, not by our sys.path.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

from asgiprof.model import Frame

FrameKind = Literal["user", "stdlib", "library"]

# site-packages, and console scripts (`.venv/bin/uvicorn`) that start the server.
_LIBRARY_DIRS = re.compile(r"[/\\](?:(?:site|dist)-packages|bin|Scripts)[/\\]")
# .../lib/python3.11/asyncio/..., ...\Lib\asyncio\..., frozen and builtin pseudo-files
_STDLIB = re.compile(
    r"(?:[/\\]lib[/\\](?:pypy|python)\d\.\d+[/\\])|(?:^<[^>]*>$)|(?:[/\\]Lib[/\\])"
)


@lru_cache(maxsize=65536)
def file_kind(file: str) -> FrameKind:
    if not file:
        return "stdlib"
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


def is_asgi_dispatch(frame: Frame) -> bool:
    return (
        bare_function(frame.function) in _DISPATCH_FUNCTIONS
        and _ASGI_FRAMEWORKS.search(frame.file) is not None
        and file_kind(frame.file) == "library"
    )


def is_user(frame: Frame) -> bool:
    return file_kind(frame.file) == "user"


def short_name(frame: Frame) -> str:
    """`function (file:line)`, the way stacks are shown everywhere."""
    return f"{frame.function} ({frame.file}:{frame.line})"


def bare_function(name: str) -> str:
    """`BaseEventLoop.run_forever` -> `run_forever` (3.9/3.10 frames carry no class)."""
    return name.rsplit(".", 1)[-1]
