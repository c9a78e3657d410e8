"""Standalone probe: import an ASGI app and print its route table as one JSON line.

Runs in the TARGET's interpreter and working directory (stdlib only, CPython 3.9+, never
imports asgiprof): `python route_probe.py MODULE:ATTR [--factory] [--app-dir DIR]`, or
`python route_probe.py --script PATH` for a server started from code (`python serve.py`
calling `uvicorn.run(app)`): the script is imported as a module, so its `__main__` block
does not run, and the ASGI app is found among its globals.
Each FastAPI route also carries its dependency tree, read from FastAPI's `route.dependant`.
Django's table is its URL resolver's (`django.urls.get_resolver()`), read once the app, its
ASGIHandler, has set Django up.
"""

# Kept to Python 3.9 syntax and stdlib on purpose: no `match`, no `X | Y` outside
# annotations (which `from __future__ import annotations` leaves unevaluated), no zip(strict).
from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO, TypedDict

# The result is the last stdout line starting with MARKER, so whatever the app prints at
# import time cannot corrupt it.
MARKER = "@@asgiprof-route-table@@ "
PROTOCOL = 1

# Exit statuses: 0 a result (routes or "no-table"), 1 the app could not be imported.
EXIT_OK = 0
EXIT_IMPORT_FAILED = 1

_HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE", "CONNECT")
_METHOD_ORDER = {m: i for i, m in enumerate(_HTTP_METHODS)}
# `{user_id:int}` -> `{user_id}`: the template as routes print it (Starlette's path_format).
_CONVERTOR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):[^}]*\}")
# Handlers a framework adds to every route by itself: not the app's routes.
_GENERATED_HANDLERS = ("HTTPRoute.create_options_handler.<locals>.options_handler",)
# werkzeug (Quart) and Django's `path()` share the syntax: `<int:user_id>`, `<name>`,
# `<path:rest>` -> `{user_id}`, `{name}`, `{rest}`.
_WERKZEUG_CONVERTOR = re.compile(r"<(?:[^<>:]+:)?([A-Za-z_][A-Za-z0-9_]*)>")
# Django: a function view answers any method (it is "ANY"); a class-based view's methods are
# the handlers it defines among these.
_ANY_METHOD = "ANY"
_DJANGO_OPTIONS = "View.options"  # every class-based view has it: not the app's route
_MAX_DEPTH = 32  # mounts within mounts, dependencies within dependencies; guards cycles too
_MAX_MESSAGE = 500
# Nodes of one route's dependency tree: shared sub-dependencies repeat under each user.
_MAX_DEPENDENCIES = 1000


class DependencyRecord(TypedDict):
    function: str  # module.qualname; a class dependency: its __init__ (or the class)
    file: str
    first_line: int
    last_line: int
    depth: int  # 1: the route's own (its signature, router, app); 2: theirs; ...


class RouteRecord(TypedDict):
    # "GET", "GET,POST" (one endpoint function), "WS", "*" (mounted app: the path and all
    # below it), or "ANY" (any method, this path: a Django function view)
    method: str
    path: str
    endpoint: str  # module.qualname
    file: str
    first_line: int
    last_line: int
    is_async: bool
    # FastAPI's dependency tree of the route, depth first; [] without one (other frameworks)
    dependencies: list[DependencyRecord]


class ProbeResult(TypedDict, total=False):
    protocol: int
    status: str  # "ok", "no-table", "error"
    framework: str
    routes: list[RouteRecord]
    skipped: list[str]  # what could not be read: route types by name, mount cycles
    reason: str  # status "no-table"
    app: str  # --script: the app found, as "module:attr"
    dependency_error: str  # why some routes' dependency trees could not be read (said once)
    stage: str  # status "error": "import", "attribute", "factory"
    error_type: str
    message: str


class ProbeError(Exception):
    def __init__(self, stage: str, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.stage = stage
        self.exc = exc


def _attr(obj: object, name: str) -> Any:
    """getattr that never raises: app objects can have properties that fail."""
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


# --- loading the app, the way uvicorn does ----------------------------------------------------


def load_app(spec: str, factory: bool, app_dirs: list[str]) -> object:
    """Import `module:attr` (attr may be dotted) with cwd and app dirs first on sys.path."""
    # Like uvicorn's --app-dir (default "."): absolute, so endpoint files come out absolute.
    for app_dir in reversed(app_dirs or ["."]):
        sys.path.insert(0, os.path.abspath(app_dir))
    module_name, _, attrs = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:  # import-time code can raise anything, SystemExit included
        raise ProbeError("import", exc) from exc
    app: object = module
    try:
        for name in (attrs or "app").split("."):
            app = getattr(app, name)
    except AttributeError:
        message = f'Attribute "{attrs or "app"}" not found in module "{module_name}".'
        raise ProbeError("attribute", AttributeError(message)) from None
    if factory:
        try:
            app = app()  # type: ignore[operator]
        except BaseException as exc:
            raise ProbeError("factory", exc) from exc
    return app


def load_script(path: str) -> tuple[object, str]:
    """Import the script `path` under its own module name (its `if __name__ == "__main__"`
    block, which starts the server, does not run) and find the ASGI app in its globals:
    (app, "module:attr")."""
    import importlib.util

    path = os.path.abspath(path)
    name = os.path.splitext(os.path.basename(path))[0]
    # As `python path` does: the script's folder first on sys.path.
    sys.path.insert(0, os.path.dirname(path))
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path} as a module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except BaseException as exc:  # import-time code can raise anything, SystemExit included
        raise ProbeError("import", exc) from exc
    found = find_app_in(vars(module))
    if found is None:
        message = (
            f"no ASGI app with a route table among the globals of {os.path.basename(path)} "
            "(is it created inside a function?): name it with --app module:attr"
        )
        raise ProbeError("attribute", LookupError(message))
    attr, app = found
    return app, f"{name}:{attr}"


def find_app_in(namespace: dict[str, object]) -> tuple[str, object] | None:
    """The module-level ASGI app: `app` first, then an application object (one with a
    `.router`, or a werkzeug url map), then any object with a route table (a bare Router)."""
    best: tuple[int, str, object] | None = None
    for attr, obj in namespace.items():
        if attr.startswith("__") or isinstance(obj, type) or inspect.ismodule(obj):
            continue
        if not callable(obj):
            continue
        is_app = _attr(obj, "router") is not None or find_werkzeug_rules(obj) is not None
        if not is_app and find_routes(obj) is None:
            continue
        rank = 0 if attr == "app" and is_app else 1 if is_app else 2
        if best is None or rank < best[0]:
            best = (rank, attr, obj)
    return None if best is None else (best[1], best[2])


# --- finding and walking the route table -------------------------------------------------------


def _route_list(obj: object) -> list[object] | None:
    """`obj.routes` (Starlette, FastAPI, Router, Mount) or `obj.router.routes`."""
    for owner in (obj, _attr(obj, "router")):
        routes = _attr(owner, "routes") if owner is not None else None
        if isinstance(routes, (list, tuple)):
            return list(routes)
    return None


def _unwrapped(app: object) -> Iterator[object]:
    """The app, then each app it wraps: middleware's `.app` chains, and the HTTP app of a
    Channels ProtocolTypeRouter; at most 64 deep, each object once (cycles end)."""
    seen: set[int] = set()
    obj: object = app
    for _ in range(64):
        if obj is None or id(obj) in seen:
            return
        seen.add(id(obj))
        yield obj
        mapping = _attr(obj, "application_mapping")
        obj = mapping.get("http") if isinstance(mapping, dict) else _attr(obj, "app")


def find_routes(app: object) -> list[object] | None:
    """Unwrap middleware (`.app` chains) until an object with a route table appears."""
    for obj in _unwrapped(app):
        routes = _route_list(obj)
        if routes is not None:
            return routes
    return None


def find_werkzeug_rules(app: object) -> tuple[object, dict[str, object]] | None:
    """(url_map, view_functions) of a Quart app (or one wrapped in middleware)."""
    for obj in _unwrapped(app):
        url_map = _attr(obj, "url_map")
        views = _attr(obj, "view_functions")
        if callable(_attr(url_map, "iter_rules")) and isinstance(views, dict):
            return url_map, views
    return None


def find_django_resolver(app: object) -> object | None:
    """Django's root URL resolver when the app is Django's ASGIHandler, or wraps one, else
    None."""
    for obj in _unwrapped(app):
        if str(_attr(type(obj), "__module__")).startswith("django.core.handlers"):
            get_resolver = _attr(sys.modules.get("django.urls"), "get_resolver")
            return get_resolver() if callable(get_resolver) else None
    return None


def _django_part(pattern: object) -> str:
    """One Django URL pattern as a route template part: `users/<int:user_id>/` ->
    `users/{user_id}/`; a regex (`re_path`) `^a/(?P<year>[0-9]{4})/$` -> `a/{year}/`."""
    text = str(pattern)
    if "Regex" not in type(pattern).__name__:
        return _WERKZEUG_CONVERTOR.sub(r"{\1}", text)
    text = text[1:] if text.startswith("^") else text
    text = text[:-1] if text.endswith("$") and not text.endswith("\\$") else text
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("(?P<", i) and ">" in text[i:]:
            name_end = text.index(">", i)
            depth, j = 0, i
            while j < len(text):  # the group's closing parenthesis (groups can nest)
                if text[j] == "\\":
                    j += 2
                    continue
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                if depth == 0:
                    break
                j += 1
            out.append("{" + text[i + 4 : name_end] + "}")
            i = j + 1
        elif text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])  # `\.` -> `.`
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _route_handlers(route: object) -> list[object] | None:
    """Litestar's handlers of a route: `route_handlers` (HTTP) or `route_handler` (WS, ASGI)."""
    handlers = _attr(route, "route_handlers")
    if isinstance(handlers, (list, tuple)):
        return list(handlers)
    handler = _attr(route, "route_handler")
    return [handler] if handler is not None and _attr(handler, "fn") is not None else None


def _expand(routes: list[object]) -> list[object]:
    """Flatten FastAPI's included routers through its public `iter_route_contexts`.

    Newer FastAPI keeps `include_router` results as one nested route instead of copying
    the routes into the app; each context it yields reads like a route (path, methods,
    endpoint) with the prefixes applied. Older FastAPI lacks it and already flattens.
    """
    fastapi_routing = sys.modules.get("fastapi.routing")
    iter_contexts = _attr(fastapi_routing, "iter_route_contexts")
    if iter_contexts is None:
        return routes
    try:
        return list(iter_contexts(routes))
    except Exception:
        return routes


def _template(path: str) -> str:
    return _CONVERTOR.sub(r"{\1}", path)


def _is_websocket(route: object) -> bool:
    original = _attr(route, "original_route") or route
    return any("WebSocket" in cls.__name__ for cls in type(original).__mro__)


def _method_label(methods: object) -> str:
    if not isinstance(methods, (set, frozenset, list, tuple)) or not methods:
        return "*"
    names = {str(m).upper() for m in methods}
    if "GET" in names and len(names) > 1:
        names.discard("HEAD")  # Starlette adds HEAD to every GET route
    return ",".join(sorted(names, key=lambda m: (_METHOD_ORDER.get(m, len(_METHOD_ORDER)), m)))


class _Walker:
    def __init__(self) -> None:
        self.routes: list[RouteRecord] = []
        self.skipped: list[str] = []
        self.dependency_errors: list[str] = []  # "GET /x: TypeError: ..." per route
        self._described: dict[int, tuple[object, tuple[str, str, int, int]]] = {}
        # ids of the mounts being walked: a mount reached again inside itself is a cycle
        # (the same sub-app mounted twice side by side is not, and is walked twice)
        self._walking: set[int] = set()

    def walk(self, routes: list[object], prefix: str, depth: int) -> None:
        if depth > _MAX_DEPTH:
            self.skipped.append(f"routes nested deeper than {_MAX_DEPTH} under {prefix!r}")
            return
        for route in _expand(routes):
            endpoint = _attr(route, "endpoint")
            path = _attr(route, "path_format") or _attr(route, "path")
            handlers = _route_handlers(route)
            if endpoint is not None and isinstance(path, str):
                self._add_endpoint(route, prefix + _template(path), endpoint)
            elif handlers and isinstance(path, str):
                self._add_handlers(route, prefix + _template(path), handlers)
            elif isinstance(_attr(route, "path"), str) or _attr(route, "host") is not None:
                self._add_mount(route, prefix, depth)
            else:
                self.skipped.append(type(_attr(route, "original_route") or route).__name__)

    def _add_mount(self, mount: object, prefix: str, depth: int) -> None:
        """Mount (path prefix) or Host (no prefix): the sub-app's routes, or the app itself."""
        key = id(_attr(mount, "original_route") or mount)
        if key in self._walking:
            self.skipped.append(f"mount cycle at {prefix!r}")
            return
        path = _attr(mount, "path")
        # Mount.path is the prefix as declared; its path_format ends in "/{path}".
        sub_prefix = prefix + (_template(path.rstrip("/")) if isinstance(path, str) else "")
        sub_app = _attr(mount, "app")
        routes = _attr(mount, "routes")
        if not isinstance(routes, (list, tuple)) or not routes:
            routes = find_routes(sub_app) if sub_app is not None else None
        if routes:
            self._walking.add(key)
            try:
                self.walk(list(routes), sub_prefix, depth + 1)
            finally:
                self._walking.discard(key)
        elif sub_app is not None:
            self._record("*", sub_prefix or "/", sub_app)
        else:
            self.skipped.append(type(_attr(mount, "original_route") or mount).__name__)

    def _add_endpoint(self, route: object, path: str, endpoint: object) -> None:
        methods = _attr(route, "methods")
        if _is_websocket(route):
            self._record("WS", path, endpoint, route)
        elif inspect.isclass(endpoint):
            self._add_class_endpoint(path, endpoint, methods)
        else:
            self._record(_method_label(methods), path, endpoint, route)

    def _add_class_endpoint(self, path: str, cls: type, methods: object) -> None:
        """HTTPEndpoint-style class: one route per HTTP method function it defines."""
        allowed = {str(m).upper() for m in methods} if isinstance(methods, (set, list)) else None
        found = False
        for method in _HTTP_METHODS:
            function = _attr(cls, method.lower())
            if callable(function) and (not allowed or method in allowed):
                self._record(method, path, function)
                found = True
        if not found:
            self._record("*", path, cls)

    def _add_handlers(self, route: object, path: str, handlers: list[object]) -> None:
        """Litestar: a route holds one handler per method set, each wrapping its function."""
        websocket = _is_websocket(route)
        for handler in handlers:
            function = _attr(handler, "fn")
            function = _attr(function, "value") or function  # Litestar < 2.0: AsyncCallable
            if function is None:
                self.skipped.append(type(handler).__name__)
                continue
            if str(_attr(function, "__qualname__")).endswith(_GENERATED_HANDLERS):
                continue
            method = "WS" if websocket else _method_label(_attr(handler, "http_methods"))
            self._record(method, path, function)

    def walk_werkzeug(self, url_map: object, view_functions: dict[str, object]) -> None:
        """Quart (werkzeug rules): `/users/<int:user_id>` -> `/users/{user_id}`."""
        for rule in url_map.iter_rules():  # type: ignore[attr-defined]
            path = _attr(rule, "rule")
            function = view_functions.get(_attr(rule, "endpoint"))
            if not isinstance(path, str) or function is None:
                self.skipped.append(type(rule).__name__)
                continue
            methods = _attr(rule, "methods")
            if isinstance(methods, (set, frozenset)) and len(methods) > 1:
                methods = set(methods) - {"OPTIONS"}  # werkzeug adds it to every rule
            method = "WS" if _attr(rule, "websocket") is True else _method_label(methods)
            self._record(method, _WERKZEUG_CONVERTOR.sub(r"{\1}", path), function)

    def walk_django(self, patterns: object, prefix: str, depth: int) -> None:
        """Django's URL patterns: `include()`s (resolvers) walked into, views recorded."""
        if depth > _MAX_DEPTH:
            self.skipped.append(f"URL patterns nested deeper than {_MAX_DEPTH} under {prefix!r}")
            return
        for entry in patterns if isinstance(patterns, (list, tuple)) else ():
            pattern = _attr(entry, "pattern")
            if pattern is None:
                self.skipped.append(type(entry).__name__)
                continue
            part = _django_part(pattern)
            subs = _attr(entry, "url_patterns")  # an include()'s, imported now: may fail
            callback = _attr(entry, "callback")
            if isinstance(subs, (list, tuple)):
                self.walk_django(subs, prefix + part, depth + 1)
            elif callback is not None:
                self._add_django_view(prefix + part, callback)
            else:
                self.skipped.append(type(entry).__name__)

    def _add_django_view(self, path: str, view: object) -> None:
        """A class-based view: one route per method handler it defines (Django's own
        `options` left out); a function view: one route for any method."""
        cls = _attr(view, "view_class")
        if not inspect.isclass(cls):
            self._record(_ANY_METHOD, path, view)
            return
        found = False
        for name in _attr(cls, "http_method_names") or ():
            handler = _attr(cls, str(name))
            if not callable(handler) or _attr(handler, "__qualname__") == _DJANGO_OPTIONS:
                continue
            self._record(str(name).upper(), path, handler)
            found = True
        if not found:
            self._record(_ANY_METHOD, path, cls)

    def _record(self, method: str, path: str, endpoint: object, route: object = None) -> None:
        name, file, first, last, is_async = describe(endpoint)
        self.routes.append(
            RouteRecord(
                method=method,
                path=path,
                endpoint=name,
                file=file,
                first_line=first,
                last_line=last,
                is_async=is_async,
                dependencies=self._dependencies(f"{method} {path}", route),
            )
        )

    def _dependencies(self, name: str, route: object) -> list[DependencyRecord]:
        """The route's FastAPI dependency tree (`route.dependant`: FastAPI's own, with the
        router's, the app's and `include_router`'s dependencies already merged in), or []."""
        dependant = _attr(route, "dependant") if route is not None else None
        if dependant is None:
            return []
        try:
            return dependency_tree(dependant, self._describe_dependency)
        except Exception as exc:  # one unreadable tree costs that route its list, no more
            message = _one_line(str(exc))
            self.dependency_errors.append(
                f"{name}: {type(exc).__name__}" + (f": {message}" if message else "")
            )
            return []

    def _describe_dependency(self, call: object) -> tuple[str, str, int, int]:
        # Shared dependencies recur in every route's tree; reading their source is the cost.
        # The call stays referenced beside its id, so the id cannot be reused meanwhile.
        cached = self._described.get(id(call))
        if cached is None:
            cached = self._described[id(call)] = (call, describe_dependency(call))
        return cached[1]

    def dependency_error(self) -> str | None:
        if not self.dependency_errors:
            return None
        count = len(self.dependency_errors)
        return _one_line(
            f"the dependency trees of {count} route(s) could not be read, so their "
            f"dependencies are found by name (first: {self.dependency_errors[0]})"
        )


# --- FastAPI dependency trees ------------------------------------------------------------------


def _sub_dependants(node: object) -> list[object]:
    subs = _attr(node, "dependencies")
    if not isinstance(subs, (list, tuple)):
        raise TypeError(f"{type(node).__name__} has no list of dependencies")
    return list(subs)


def dependency_tree(
    dependant: object, describe_call: Callable[[object], tuple[str, str, int, int]] | None = None
) -> list[DependencyRecord]:
    """FastAPI's `Dependant` tree below a route, depth first, each node with its depth.

    `describe_call(call)` gives (name, file, first line, last line) of a node's `.call`
    (default `describe_dependency`). Raises on a node without a Dependant's shape or a tree
    deeper than _MAX_DEPTH / larger than _MAX_DEPENDENCIES.
    """
    describe_call = describe_call or describe_dependency
    records: list[DependencyRecord] = []
    pending = [(sub, 1) for sub in reversed(_sub_dependants(dependant))]
    while pending:
        node, depth = pending.pop()
        if depth > _MAX_DEPTH:
            raise ValueError(f"dependencies nested deeper than {_MAX_DEPTH}")
        if len(records) >= _MAX_DEPENDENCIES:
            raise ValueError(f"more than {_MAX_DEPENDENCIES} dependencies")
        call = _attr(node, "call")
        if call is not None:
            name, file, first, last = describe_call(call)
            records.append(
                DependencyRecord(
                    function=name, file=file, first_line=first, last_line=last, depth=depth
                )
            )
        pending.extend((sub, depth + 1) for sub in reversed(_sub_dependants(node)))
    return records


def _source_file(obj: object) -> str:
    try:
        return inspect.getsourcefile(obj) or ""  # type: ignore[arg-type]
    except (TypeError, OSError):
        return ""


def describe_dependency(call: object) -> tuple[str, str, int, int]:
    """(module.qualname, file, first line, last line) of what runs when FastAPI calls `call`.

    A class runs its `__init__`; one from another file (a library base class, or code
    dataclasses generate) is shared by many classes, so the class's own span stands in.
    Functions, partials, decorated functions and callable instances as `describe` sees them.
    """
    target: Any = call
    while isinstance(target, functools.partial):
        target = target.func
    if inspect.isclass(target):
        init = _attr(target, "__init__")
        if inspect.isfunction(init):
            name, file, first, last, _ = describe(init)
            if file and first > 0 and file == _source_file(target):
                return name, file, first, last
    name, file, first, last, _ = describe(target)
    return name, file, first, last


# --- describing an endpoint --------------------------------------------------------------------


def _is_coroutine(obj: object) -> bool:
    try:
        return inspect.iscoroutinefunction(obj)
    except Exception:
        return False


def describe(endpoint: object) -> tuple[str, str, int, int, bool]:
    """(module.qualname, source file, first line, last line, is async) of an endpoint.

    Looks through functools.partial, bound methods, decorators (`__wrapped__`) and
    callable objects (their `__call__`); async the way FastAPI decides it: the callable
    itself, its unwrapped function, or its `__call__` is a coroutine function.
    """
    target: Any = endpoint
    while isinstance(target, functools.partial):
        target = target.func
    candidates: list[object] = [target]
    if inspect.ismethod(target):
        target = target.__func__
    if not (inspect.isfunction(target) or inspect.isclass(target)):
        call = _attr(type(target), "__call__")
        if inspect.isfunction(call):
            target = call
            candidates.append(call)
    try:
        target = inspect.unwrap(target)
    except ValueError:  # a __wrapped__ cycle
        pass
    candidates.append(target)
    if inspect.isclass(target):
        is_async = any(_is_coroutine(v) for v in vars(target).values())
    else:
        is_async = any(_is_coroutine(c) for c in candidates)
    module = _attr(target, "__module__")
    qualname = _attr(target, "__qualname__") or _attr(target, "__name__") or repr(target)
    name = f"{module}.{qualname}" if isinstance(module, str) else str(qualname)
    file = ""
    first = last = 0
    try:
        file = inspect.getsourcefile(target) or inspect.getfile(target)
    except (TypeError, OSError):
        pass
    try:
        lines, start = inspect.getsourcelines(target)
        first, last = max(start, 1), max(start, 1) + len(lines) - 1
    except (TypeError, OSError, IndexError):
        pass
    return name, file, first, last, is_async


# --- main -------------------------------------------------------------------------------------


def probe(
    spec: str, factory: bool, app_dirs: list[str], script: bool = False
) -> tuple[ProbeResult, int]:
    found = ""
    try:
        if script:
            app, found = load_script(spec)
        else:
            app = load_app(spec, factory, app_dirs)
    except ProbeError as error:
        exc = error.exc
        return (
            ProbeResult(
                protocol=PROTOCOL,
                status="error",
                stage=error.stage,
                error_type=type(exc).__name__,
                message=_one_line(str(exc)) or repr(exc),
            ),
            EXIT_IMPORT_FAILED,
        )
    result = probe_app(app)
    if found:
        result["app"] = found  # the module:attr the script's app was found as
    return result, EXIT_OK


def probe_app(app: object) -> ProbeResult:
    """The route table of an imported app (never raises: a misread table is "no-table")."""
    framework = (_attr(type(app), "__module__") or "").split(".")[0]
    try:
        routes = find_routes(app)
        rules = find_werkzeug_rules(app) if routes is None else None
        resolver = find_django_resolver(app) if routes is None and rules is None else None
        if resolver is not None:
            walker = _Walker()
            walker.walk_django(_attr(resolver, "url_patterns"), "/", 0)
            return ProbeResult(
                protocol=PROTOCOL,
                status="ok",
                framework="django",
                routes=walker.routes,
                skipped=walker.skipped,
            )
        if rules is not None:
            walker = _Walker()
            walker.walk_werkzeug(*rules)
            return ProbeResult(
                protocol=PROTOCOL,
                status="ok",
                framework=framework,
                routes=walker.routes,
                skipped=walker.skipped,
            )
        if routes is None:
            reason = f"the app ({type(app).__name__}) has no route table (.routes or .router)"
            return ProbeResult(
                protocol=PROTOCOL, status="no-table", framework=framework, reason=reason
            )
        walker = _Walker()
        walker.walk(routes, "", 0)
        if walker.skipped and not walker.routes:
            unread = ", ".join(sorted(set(walker.skipped))[:5])
            reason = f"no route of the app could be read (unrecognised: {unread})"
            return ProbeResult(
                protocol=PROTOCOL, status="no-table", framework=framework, reason=reason
            )
    except Exception as exc:  # a framework we misread: no table, never a crash
        reason = f"reading the route table failed: {type(exc).__name__}: {_one_line(str(exc))}"
        return ProbeResult(protocol=PROTOCOL, status="no-table", framework=framework, reason=reason)
    result = ProbeResult(
        protocol=PROTOCOL,
        status="ok",
        framework=framework,
        routes=walker.routes,
        skipped=walker.skipped,
    )
    error = walker.dependency_error()
    if error is not None:
        result["dependency_error"] = error
    return result


def main(argv: list[str], out: TextIO) -> int:
    parser = argparse.ArgumentParser(prog="route_probe", description=__doc__)
    parser.add_argument("app", help="MODULE:ATTR, or with --script the script's path")
    parser.add_argument("--script", action="store_true")
    parser.add_argument("--factory", action="store_true")
    parser.add_argument("--app-dir", action="append", default=[])
    args = parser.parse_args(argv)
    # The app sees a bare argv (some parse sys.argv at import) and prints to stderr.
    sys.argv = [sys.argv[0]]
    sys.stdout = sys.stderr
    try:
        result, status = probe(args.app, args.factory, args.app_dir, args.script)
    finally:
        sys.stdout = out
    out.write("\n" + MARKER + json.dumps(result, sort_keys=True) + "\n")
    out.flush()
    return status


if __name__ == "__main__":
    if sys.path and sys.path[0] and os.path.isfile(sys.argv[0]):
        # Run as a file: its folder (asgiprof's package) must not shadow the app's modules.
        if os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(sys.argv[0])):
            del sys.path[0]
    _status = main(sys.argv[1:], sys.stdout)
    sys.stderr.flush()
    # Skip interpreter shutdown: app threads that never end or atexit hooks must not hang us.
    os._exit(_status)
