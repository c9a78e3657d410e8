"""The source the advice catalogue reads beside a culprit line: where its client was made.

A blocking call rarely names its library on its own line: `conn.execute(...)` or
`get_db().execute(...)` says nothing of sqlite3 or psycopg2. The evidence is where `conn`
or `get_db` comes from: the culprit function's lines above it, and, for names defined
elsewhere in the same file, their definitions (a helper's body, a module-level
assignment). Only the file the culprit is in is read; imports are no evidence (a module
may import a driver it does not use at this line).
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from asgiprof.analyze.frames import SourceReader

# Lines of the culprit's function read above it.
NEAR_LINES: Final = 25
# Lines of a helper's body read after its `def`; names followed from one culprit.
HELPER_LINES: Final = 15
MAX_NAMES: Final = 6
# A file is searched for definitions up to this line.
MAX_FILE_LINES: Final = 5000

DEF: Final = re.compile(r"^\s*(?:async\s+)?def\b")
_DEF_NAME = re.compile(r"^(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(")
_ASSIGN_NAME = re.compile(r"^([A-Za-z_]\w*)\s*(?::[^=]*)?=(?!=)")
BLOCK_START: Final = re.compile(r"^(?:(?:async\s+)?def|class)\b|^@")
# A name used on a line: called (`get_db(`) or called on (`conn.`); not an attribute.
_USED = re.compile(r"(?<![.\w])([A-Za-z_]\w*)\s*(?:\(|\.)")
_PARAMS = re.compile(r"^(?:async\s+)?def\s+\w+\s*\((.*)")
_PARAM_NAME = re.compile(r"(?:^|,)\s*\**([A-Za-z_]\w*)")
_ANNOTATED = re.compile(r"^\**([A-Za-z_]\w*)\s*:(?!=)")


def lines_above(read_line: SourceReader, file: str, line: int) -> list[str]:
    """The culprit function's lines above the culprit line, nearest first, up to its `def`."""
    lines: list[str] = []
    for number in range(line - 1, max(0, line - NEAR_LINES) - 1, -1):
        if number < 1:
            break
        text = read_line(file, number)
        if text is None:
            break
        lines.append(text)
        if DEF.match(text):
            break
    return lines


@dataclass
class Definitions:
    """Where names are defined in each file read (lines are read stripped, so a `def`
    or `name = ...` line anywhere counts: the nearest to the top wins)."""

    read_line: SourceReader
    _files: dict[str, dict[str, int]] = field(default_factory=dict)

    def made_lines(
        self, file: str, used_in: Sequence[str], local_to: Sequence[str] = ()
    ) -> list[str]:
        """The definitions in `file` of the names `used_in` these lines use: a helper's
        `def` and body, or a `name = ...` line. Names assigned in `local_to` (the
        function's own lines) are its locals, and names in its `def` its parameters: their
        origin is in those lines or in the caller, not in another function's `name = ...`."""
        defs = self._of(file)
        local = _locals(local_to)
        lines: list[str] = []
        for name in [n for n in _names(used_in) if n not in local][:MAX_NAMES]:
            start = defs.get(name)
            if start is None:
                continue
            first = self.read_line(file, start)
            if first is None:
                continue
            lines.append(first)
            if _DEF_NAME.match(first):
                lines += self._body(file, start)
        return lines

    def _body(self, file: str, start: int) -> list[str]:
        body: list[str] = []
        for number in range(start + 1, start + 1 + HELPER_LINES):
            text = self.read_line(file, number)
            if text is None or BLOCK_START.match(text):
                break
            body.append(text)
        return body

    def _of(self, file: str) -> dict[str, int]:
        if file not in self._files:
            defs: dict[str, int] = {}
            for number in range(1, MAX_FILE_LINES + 1):
                text = self.read_line(file, number)
                if text is None:
                    break
                m = _DEF_NAME.match(text) or _ASSIGN_NAME.match(text)  # never an import
                if m is not None:
                    defs.setdefault(m.group(1), number)
            self._files[file] = defs
        return self._files[file]


def _locals(lines: Sequence[str]) -> set[str]:
    """Names the function assigns, and its parameters (on its `def` line, or one per line
    of a long signature: `db: Session,`)."""
    names = {
        m.group(1) for text in lines if (m := _ASSIGN_NAME.match(text) or _ANNOTATED.match(text))
    }
    for text in lines:
        m = _PARAMS.match(text)
        if m is not None:
            names.update(_PARAM_NAME.findall(m.group(1)))
    return names


def _names(lines: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for text in lines:
        for name in _USED.findall(text):
            if not keyword.iskeyword(name) and name not in ("self", "cls"):
                seen.setdefault(name, None)
    return list(seen)
