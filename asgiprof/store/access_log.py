"""Requests per route from the server's access log (`OUT/server.log`: `run` keeps the launched
server's output there, `attach` the request lines of the file the server logs to).

uvicorn, gunicorn and hypercorn all log a request as `"GET /users/1?x=2 HTTP/1.1" 200`: the
method and the concrete path, never the route template. Paths are matched to the route
table as the framework's router does it (declaration order, first match wins, `{name}` one
path segment, `{name:path}` the rest, a mount its prefix), so `/users/me` declared before
`/users/{user_id}` counts for `/users/me`.

These counts are the evidence that splits a shared dependency's time among its routes and
that tells which routes served requests at all: a route whose endpoint only returns its
dependency's result is almost never on a sampled stack.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from asgiprof.model import RequestCounts, Route

# `"METHOD /path HTTP/1.1" 200`: uvicorn's `%s - "%s %s HTTP/%s" %d`, gunicorn's and
# hypercorn's `"%(r)s" %(s)s` alike; daphne's `"GET /path" 200` has no version. The path has
# no spaces or quotes (servers quote them).
_REQUEST: Final = re.compile(rb'"([A-Z]{3,7}) ([^" ]+)(?: HTTP/[0-9.]+)?" (\d{3})')
# Starlette's convertors (FastAPI, Litestar share the `{name:type}` syntax).
_CONVERTORS: Final = {
    "str": "[^/]+",
    "path": ".*",
    "int": "[0-9]+",
    "float": r"[0-9]+(?:\.[0-9]+)?",
    "uuid": "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
}
_PARAM: Final = re.compile(r"\{([A-Za-z_]\w*)(?::([A-Za-z_]\w*))?\}")
# A log bigger than this is read only up to here: the counts are shares, not totals.
MAX_BYTES: Final = 256 * 1024 * 1024


def template_regex(path: str, prefix: bool = False) -> re.Pattern[str]:
    """The regex a route template matches; `prefix` for a mount (its sub-app's paths)."""
    parts: list[str] = []
    pos = 0
    for m in _PARAM.finditer(path):
        parts.append(re.escape(path[pos : m.start()]))
        parts.append(f"(?:{_CONVERTORS.get(m.group(2) or 'str', '[^/]+')})")
        pos = m.end()
    parts.append(re.escape(path[pos:]))
    body = "".join(parts)
    if prefix:
        return re.compile(body.rstrip("/") + "(?:/.*)?$" if body != "/" else "/.*$")
    return re.compile(body + "$")


def _methods(label: str) -> frozenset[str] | None:
    """The HTTP methods a route label serves; None for any (a mount, `*`, or a Django
    function view, `ANY`)."""
    if label in ("*", "ANY"):
        return None
    names = set(label.split(","))
    if "GET" in names:
        names.add("HEAD")  # Starlette answers HEAD with the GET route
    return frozenset(names)


class RouteMatcher:
    """Route name of a (method, path) as the router would pick it, cached per pair."""

    __slots__ = ("_routes", "_cache")

    def __init__(self, routes: Iterable[Route]) -> None:
        self._routes = [
            (_methods(r.method), template_regex(r.path, prefix=r.method == "*"), r.name)
            for r in routes
            if r.method != "WS"
        ]
        self._cache: dict[tuple[str, str], str | None] = {}

    def route(self, method: str, path: str) -> str | None:
        path = path_only(path)
        key = (method, path)
        if key in self._cache:
            return self._cache[key]
        found: str | None = None
        for methods, pattern, name in self._routes:
            if (methods is None or method in methods) and pattern.match(path):
                found = name
                break
        if len(self._cache) < 100_000:  # concrete paths (ids) are unbounded
            self._cache[key] = found
        return found


def request_lines(path: Path, max_bytes: int = MAX_BYTES) -> Iterator[tuple[str, str, int]]:
    """(method, path, status) of every access-log line in `path` (bounded by `max_bytes`)."""
    read = 0
    with path.open("rb") as f:
        for raw in f:
            read += len(raw)
            if read > max_bytes:
                return
            parsed = parse_request_line(raw)
            if parsed is not None:
                yield parsed


def path_only(target: str) -> str:
    """A request target without its query string and fragment."""
    return target.split("?", 1)[0].split("#", 1)[0]


def parse_request_line(raw: bytes) -> tuple[str, str, int] | None:
    """(method, path, status) of one access-log line; None for any other line."""
    m = _REQUEST.search(raw)
    if m is None:
        return None
    method, target, status = m.groups()
    return method.decode(), target.decode("utf-8", "replace"), int(status)


def count_requests(path: Path, routes: Iterable[Route]) -> RequestCounts | None:
    """Requests per route name from the access log at `path`; None when it holds no
    request line (no log, `--no-access-log`, a server that logs elsewhere)."""
    try:
        if not path.is_file():
            return None
        matcher = RouteMatcher(routes)
        by_route: Counter[str] = Counter()
        total = unmatched = 0
        for method, target, _status in request_lines(path):
            total += 1
            name = matcher.route(method, target)
            if name is None:
                unmatched += 1
            else:
                by_route[name] += 1
    except OSError:
        return None
    if total == 0:
        return None
    ordered = tuple(sorted(by_route.items(), key=lambda kv: (-kv[1], kv[0])))
    return RequestCounts(source="access-log", by_route=ordered, total=total, unmatched=unmatched)
