"""Source lines of culprits, read once from disk and kept in OUT/sources.json.

The snapshot makes `asgiprof report` show the code as it was when profiled, even after
the file changed or on another machine.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from asgiprof.store.outdir import write_json

SOURCES = "sources.json"
MAX_LINE = 400  # a minified file's "line" is not worth carrying around


class SourceCache:
    def __init__(self, saved: dict[str, str | None] | None = None) -> None:
        self._lines: dict[str, str | None] = dict(saved or {})
        self._files: dict[str, list[str] | None] = {}
        self._dirty = False

    @classmethod
    def load(cls, out: Path) -> SourceCache:
        path = out / SOURCES
        try:
            data = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        return cls({str(k): v if isinstance(v, str) else None for k, v in data.items()})

    def read_line(self, file: str, line: int) -> str | None:
        key = f"{file}:{line}"
        if key in self._lines:
            return self._lines[key]
        text = self._from_disk(file, line)
        self._lines[key] = text
        self._dirty = True
        return text

    def _from_disk(self, file: str, line: int) -> str | None:
        if file not in self._files:
            try:
                raw = Path(file).read_bytes() if file and not file.startswith("<") else None
            except OSError:
                raw = None
            self._files[file] = raw.decode("utf-8", "replace").splitlines() if raw else None
        lines = self._files[file]
        if lines is None or not 1 <= line <= len(lines):
            return None
        return lines[line - 1].strip()[:MAX_LINE]

    def save(self, out: Path) -> None:
        if self._dirty:
            write_json(out / SOURCES, self._lines)
            self._dirty = False
