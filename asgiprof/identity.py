"""How a culprit line is recognised in another run (`check --baseline`, `--ignore`, `diff`).

A line's path differs between checkouts (CI runners, a copy of the app) and its number
moves when code above it changes, so a culprit is known by its file relative to the
server's working directory, its function and its source text; by line number only when
the source could not be read.
"""

from __future__ import annotations

import os
import re
from fnmatch import fnmatchcase

CulpritKey = tuple[str, str, str]


def relative_file(file: str, cwd: str) -> str:
    """`file` relative to `cwd` when it lies under it, else unchanged (always '/'-separated)."""
    if cwd and os.path.isabs(file):
        try:
            rel = os.path.relpath(file, cwd)
        except ValueError:  # another drive (Windows)
            return file
        if not rel.startswith(".."):
            return rel.replace(os.sep, "/")
    return file


def culprit_key(file: str, line: int, function: str, code: str | None, cwd: str) -> CulpritKey:
    """(relative file, function, stripped source line, or "line N" without source)."""
    text = " ".join(code.split()) if code else f"line {line}"
    return (relative_file(file, cwd), function, text)


_FILE_LINE = re.compile(r"^(?P<glob>.+):(?P<line>\d+)$")


def ignore_pattern(pattern: str) -> tuple[str, int | None]:
    """`FILE:LINE` or a GLOB -> (glob, line or None); ValueError for an empty pattern."""
    pattern = pattern.strip()
    if not pattern:
        raise ValueError("an empty --ignore pattern")
    m = _FILE_LINE.match(pattern)
    if m is not None:
        return m["glob"], int(m["line"])
    return pattern, None


def file_matches(glob: str, file: str, cwd: str) -> bool:
    """Whether `glob` names `file`: its full path, its path relative to `cwd`, or a path
    ending (`app/db.py` names `/srv/app/db.py`). `*` crosses `/`, as in fnmatch."""
    rel = relative_file(file, cwd)
    return (
        fnmatchcase(file, glob)
        or fnmatchcase(rel, glob)
        or file.endswith("/" + glob.lstrip("/"))
        or fnmatchcase(file, "*/" + glob.lstrip("/"))
    )


_LIBRARY_ROOT = re.compile(r"^.*?[/\\](?:site|dist)-packages[/\\]")
_STDLIB_ROOT = re.compile(r"^.*?[/\\]lib[/\\](?:pypy|python)\d\.\d+[/\\]")


def portable_file(file: str, cwd: str) -> str:
    """A frame's file as another checkout or environment would name it: user code relative
    to the working directory, library code from its package (`starlette/routing.py`),
    standard library code from its module (`asyncio/events.py`)."""
    for root, prefix in ((_LIBRARY_ROOT, ""), (_STDLIB_ROOT, "<stdlib>/")):
        m = root.match(file)
        if m is not None:
            return prefix + file[m.end() :].replace("\\", "/")
    return relative_file(file, cwd)
