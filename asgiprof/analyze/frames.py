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


def is_user(frame: Frame) -> bool:
    return file_kind(frame.file) == "user"


def short_name(frame: Frame) -> str:
    """`function (file:line)`, the way stacks are shown everywhere."""
    return f"{frame.function} ({frame.file}:{frame.line})"


def bare_function(name: str) -> str:
    """`BaseEventLoop.run_forever` -> `run_forever` (3.9/3.10 frames carry no class)."""
    return name.rsplit(".", 1)[-1]
