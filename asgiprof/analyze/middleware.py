"""Middleware layers on the request path, and each layer's own share of request time.

Layers are found from stacks, between the server's entry and the router: a frame
`Class.__call__` or `Class.dispatch` starts a layer (pure ASGI middleware, Starlette's own,
`BaseHTTPMiddleware`, named after the class of its `dispatch` function). Frames of the same
library file stay in the layer (GZip's responder, `BaseHTTPMiddleware`'s streaming response),
and closures such as `SomeMiddleware.__call__.<locals>.send_wrapper` belong to their class's
layer wherever they run. A sample's owner is the deepest layer, the server (its protocol
code, e.g. the access log in `send`) or the route (router, dependencies, endpoint); a layer's
self time is the loop time it owns. `BaseHTTPMiddleware` runs the inner app in a new task,
whose stacks start below the layer: they are still owned by the layers, router or endpoint
they show.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from asgiprof.analyze.episodes import LoopThreadRuns
from asgiprof.analyze.frames import bare_function, file_kind
from asgiprof.analyze.loop import STATE_BLOCKED, STATE_BUSY, LoopClassifier
from asgiprof.analyze.result import AnalysisParams, Finding, MiddlewareLayer, MiddlewareSummary
from asgiprof.model import Frame, Profile

OWNER_SERVER: Final = "<server>"
OWNER_ROUTE: Final = "<route>"

_LAYER_METHODS: Final = frozenset({"__call__", "dispatch"})
# ASGI servers' own code: protocol parsing, `send`, access logs.
_SERVER_DIRS: Final = re.compile(
    r"[/\\](?:uvicorn|hypercorn|granian|daphne|gunicorn|h11|httptools|h2|websockets|wsproto)[/\\]"
)
# Where the router begins: everything deeper is routing, dependencies and the endpoint.
_ROUTER_FILES: Final = ("starlette/routing.py", "fastapi/routing.py", "fastapi/dependencies/")
# Django's router is a function of its handler (resolving the URL, calling the view), below
# its middleware chain; the handler above it (ASGIHandler) is the app.
_DJANGO_BASE: Final = "django/core/handlers/base.py"
_DJANGO_ROUTER: Final = frozenset({"_get_response_async", "_get_response"})
# Django calls every middleware through `convert_exception_to_response.<locals>.inner`: the
# frame it calls is one (a class's `__call__`/`__acall__`, or a factory's closure).
_DJANGO_WRAPPER: Final = "django/core/handlers/exception.py"
# Classes with a `__call__` that are not middleware: responses a middleware returns itself,
# background tasks, static files and such.
_NOT_LAYER_FILES: Final = re.compile(
    r"[/\\]starlette[/\\](?:responses|background|staticfiles|templating)\.py$"
    r"|[/\\]fastapi[/\\](?:responses|background)\.py$"
    r"|[/\\]functools\.py$"
)
_BASE_HTTP_FILE: Final = "starlette/middleware/base.py"
# The frameworks' application classes: the app a request enters, not a middleware layer.
_APP_CLASSES: Final = frozenset({"FastAPI", "Starlette", "Litestar", "Quart", "ASGIHandler"})
_LIFESPAN: Final = re.compile(r"[/\\]lifespan[/\\]")
_LOCALS: Final = ".<locals>."


def is_server_code(file: str) -> bool:
    """An ASGI server's own protocol code (parsing, `send`, access logs), not its lifespan."""
    return bool(_SERVER_DIRS.search(file)) and not _LIFESPAN.search(file)


def class_of(function: str) -> str | None:
    """`A.b` -> `A`; `A.__call__.<locals>.send` -> `A`; plain functions (and py-spy's names on
    Python < 3.11, which carry no class) -> None."""
    head = function.split(_LOCALS, 1)[0]
    if "." not in head:
        return None
    return head.rsplit(".", 2)[-2]


def _norm(file: str) -> str:
    return file.replace("\\", "/")


def is_server_frame(frame: Frame) -> bool:
    return bool(_SERVER_DIRS.search(frame.file))


def is_router_frame(frame: Frame) -> bool:
    file = _norm(frame.file)
    if file.endswith(_DJANGO_BASE):
        return bare_function(frame.function) in _DJANGO_ROUTER
    return any(part in file for part in _ROUTER_FILES)


@dataclass(slots=True)
class _Candidate:
    name: str
    function: str
    file: str
    origin: Literal["user", "library"]
    confirmed: bool
    depth: int  # smallest position below the server entry it was seen at
    after: set[str] = field(default_factory=set)  # layers seen outside it on one stack
    lines: Counter[int] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class PathStep:
    """From stack position `index` on, the code belongs to `owner` (a layer name,
    OWNER_SERVER or OWNER_ROUTE)."""

    index: int
    owner: str


class RequestPaths:
    """Owners along the request path of the event loop's busy stacks.

    Built in two passes over `stack_ids`: first which classes are layers (a candidate is
    confirmed by its name, a library middleware folder, or something deeper on one of its
    stacks) and their order, then, on demand and cached, each stack's owners.
    """

    def __init__(
        self,
        profile: Profile,
        classifier: LoopClassifier,
        is_endpoint: Callable[[Frame], bool],
        stack_ids: Sequence[int],
    ) -> None:
        self.profile = profile
        self.classifier = classifier
        self.is_endpoint = is_endpoint
        self.layers: dict[str, _Candidate] = {}
        # BaseHTTPMiddleware frames are named by the dispatch they call; where a stack stops
        # before the dispatch, the frame that called the layer tells which one it is.
        self._dispatch_by_caller: dict[tuple[str, int], str] = {}
        self._dispatch_names: set[str] = set()
        self._helpers: dict[str, str] = {}  # helper class -> the library layer it belongs to
        self._alias: dict[str, str] = {}
        self._cache: dict[int, tuple[PathStep, ...]] = {}
        for sid in stack_ids:
            self._learn(sid)
        self._resolve_order()

    # -- pass 1: which classes are layers, and in what order

    def _start(self, sid: int) -> int:
        """Stack position of the callback the loop runs (0 off the loop)."""
        cb = self.classifier.classify(sid).callback
        if cb < 0:
            return 0
        try:
            return self.profile.stacks[sid].index(cb)
        except ValueError:
            return 0

    def _learn(self, sid: int) -> None:
        stack = self.profile.stack_frames(sid)
        start = self._start(sid)
        seen: list[str] = []  # layers started on this stack, outermost first
        outside: set[str] = set()  # ... and the task's parent layer (BaseHTTPMiddleware)
        current: tuple[str, str] | None = None  # (layer name, file)
        for i in range(start, len(stack)):
            frame = stack[i]
            if is_router_frame(frame) or self.is_endpoint(frame):
                break
            if (
                not seen
                and _LOCALS in frame.function
                and _norm(frame.file).endswith(_BASE_HTTP_FILE)
            ):
                outside.add("BaseHTTPMiddleware")  # the inner task of call_next
            name = self._layer_start(stack, i, current)
            if name is None:
                continue
            d = self._defining(stack, i)
            cand = self.layers.get(name)
            if cand is None:
                file = _norm(frame.file)
                cand = self.layers[name] = _Candidate(
                    name=name,
                    function=stack[d].function,
                    file=stack[d].file,
                    origin="user" if file_kind(stack[d].file) == "user" else "library",
                    confirmed=name.endswith("Middleware")
                    or ("/middleware" in file and file_kind(file) == "library")
                    or file.endswith(_BASE_HTTP_FILE)
                    or _django_middleware(stack, i) is not None,
                    depth=i - start,
                )
            cand.depth = min(cand.depth, i - start)
            if stack[d].file == cand.file:
                cand.lines[stack[d].line] += 1
            cand.after.update(seen, outside)
            for outer in seen:  # something deeper than a layer: it passes the request on
                self.layers[outer].confirmed = True
            seen.append(name)
            current = (name, frame.file)
        else:
            return
        for outer in seen:
            self.layers[outer].confirmed = True

    def _defining(self, stack: list[Frame], i: int) -> int:
        """The frame that names the layer at i: a BaseHTTPMiddleware's dispatch when shown."""
        if _norm(stack[i].file).endswith(_BASE_HTTP_FILE) and i + 1 < len(stack):
            nxt = stack[i + 1]
            # A subclass's `dispatch`, or the function given to `@app.middleware("http")`.
            if not _norm(nxt.file).endswith(_BASE_HTTP_FILE) and (
                bare_function(nxt.function) == "dispatch" or file_kind(nxt.file) == "user"
            ):
                return i + 1
        return i

    def _layer_start(
        self, stack: list[Frame], i: int, current: tuple[str, str] | None
    ) -> str | None:
        """The layer name when frame i starts a new layer, else None."""
        frame = stack[i]
        django = _django_middleware(stack, i)
        if django is not None:
            return django
        cls = class_of(frame.function)
        if cls is None or _LOCALS in frame.function:
            return None
        if bare_function(frame.function) not in _LAYER_METHODS:
            return None
        if _NOT_LAYER_FILES.search(frame.file):
            return None
        if current is not None and frame.file == current[1] and file_kind(frame.file) == "library":
            self._helpers[cls] = current[0]
            return None  # a helper class of the same library layer (GZip's responders)
        if _norm(frame.file).endswith(_BASE_HTTP_FILE):
            d = self._defining(stack, i)
            if d != i:
                dispatch = stack[d].function
                name = class_of(dispatch) or dispatch
                if i > 0:
                    caller = stack[i - 1]
                    self._dispatch_by_caller[(caller.file, caller.line)] = name
                self._dispatch_names.add(name)
                return name
            if i > 0:
                caller = stack[i - 1]
                known = self._dispatch_by_caller.get((caller.file, caller.line))
                if known is not None:
                    return known
            return cls
        if current is not None and _norm(current[1]).endswith(_BASE_HTTP_FILE):
            # `dispatch` of a BaseHTTPMiddleware subclass: already named the layer.
            if bare_function(frame.function) == "dispatch":
                return None
        return cls

    def _resolve_order(self) -> None:
        # The generic "BaseHTTPMiddleware" name (a stack that stopped before dispatch, or the
        # inner task's closures) is the one dispatch layer when there is only one.
        if len(self._dispatch_names) == 1:
            (only,) = self._dispatch_names
            self._alias = {"BaseHTTPMiddleware": only}
            generic = self.layers.pop("BaseHTTPMiddleware", None)
            target = self.layers.get(only)
            if generic is not None and target is not None:
                target.after.update(generic.after)
                target.depth = min(target.depth, generic.depth)
        for cand in self.layers.values():
            cand.after = {self._alias.get(a, a) for a in cand.after} - {cand.name}

    # -- pass 2: owners

    def _name(self, name: str) -> str | None:
        name = self._helpers.get(name, name)
        name = self._alias.get(name, name)
        cand = self.layers.get(name)
        return name if cand is not None and cand.confirmed else None

    def steps(self, sid: int) -> tuple[PathStep, ...]:
        """Owner changes along the stack; empty when the stack is not on a request path."""
        hit = self._cache.get(sid)
        if hit is not None:
            return hit
        stack = self.profile.stack_frames(sid)
        start = self._start(sid)
        steps: list[PathStep] = []
        on_stack: set[str] = set()
        current: tuple[str, str] | None = None
        in_route = False
        for i in range(start, len(stack)):
            frame = stack[i]
            if _LIFESPAN.search(frame.file) or (
                bare_function(frame.function) == "lifespan" and is_router_frame(frame)
            ):
                steps = []
                break
            owner: str | None = None
            if not in_route and (is_router_frame(frame) or self.is_endpoint(frame)):
                in_route = True
                owner = OWNER_ROUTE
            elif not in_route and (raw := self._layer_start(stack, i, current)) is not None:
                owner = self._name(raw)
                if owner is not None:
                    current = (owner, frame.file)
                    on_stack.add(owner)
            else:
                cls = class_of(frame.function)
                layer = self._name(cls) if cls is not None else None
                if layer is not None and (layer in on_stack or _LOCALS in frame.function):
                    owner = layer  # a layer's own helper or closure (its send wrapper)
                elif is_server_frame(frame) and bare_function(frame.function) not in (
                    _LAYER_METHODS
                ):
                    owner = OWNER_SERVER
            if owner is not None and (not steps or steps[-1].owner != owner):
                steps.append(PathStep(i, owner))
        result = tuple(steps)
        self._cache[sid] = result
        return result

    def owner(self, sid: int) -> str | None:
        steps = self.steps(sid)
        return steps[-1].owner if steps else None

    def owner_at(self, sid: int, index: int) -> str | None:
        found: str | None = None
        for step in self.steps(sid):
            if step.index > index:
                break
            found = step.owner
        return found

    def ordered(self) -> list[_Candidate]:
        """Confirmed layers, outermost first (a layer seen outside another comes first)."""
        layers = [c for c in self.layers.values() if c.confirmed]
        names = {c.name for c in layers}
        placed: list[_Candidate] = []
        remaining = sorted(layers, key=lambda c: (c.depth, c.name))
        while remaining:
            for k, cand in enumerate(remaining):
                if not (cand.after & names) - {p.name for p in placed}:
                    placed.append(remaining.pop(k))
                    break
            else:  # a cycle (two orders seen): fall back to depth
                placed.append(remaining.pop(0))
        return placed


def _django_middleware(stack: list[Frame], i: int) -> str | None:
    """A Django middleware's name when frame i is one (see _DJANGO_WRAPPER): its class, or
    for a function middleware its factory (`timing.<locals>.middleware` -> `timing`)."""
    if i == 0 or not _norm(stack[i - 1].file).endswith(_DJANGO_WRAPPER):
        return None
    frame = stack[i]
    if is_router_frame(frame):
        return None
    name = class_of(frame.function) or frame.function.split(_LOCALS, 1)[0]
    # Python < 3.11 names carry no class: a bare `__call__` says nothing.
    return None if name.startswith("__") else name


def loop_stack_ids(loop_runs: list[LoopThreadRuns], classifier: LoopClassifier) -> list[int]:
    """Distinct busy stacks of the event-loop threads (a torn sample's stand-in for it)."""
    seen: dict[int, None] = {}
    for lr in loop_runs:
        for _dur, sid, _n, _label in lr.busy_runs():
            if sid not in seen and classifier.classify(sid).state == STATE_BUSY:
                seen[sid] = None
    return list(seen)


def middleware_summary(paths: RequestPaths, loop_runs: list[LoopThreadRuns]) -> MiddlewareSummary:
    """Self time of every layer over the busy event-loop samples of requests."""
    self_ms: dict[str, float] = defaultdict(float)
    blocked_ms: dict[str, float] = defaultdict(float)
    samples: Counter[str] = Counter()
    for lr in loop_runs:
        for dur, sid, n, label in lr.busy_runs():
            owner = paths.owner(sid)
            if owner is None:
                continue
            ms = dur * 1000.0
            self_ms[owner] += ms
            samples[owner] += n
            if label == STATE_BLOCKED:
                blocked_ms[owner] += ms
    request_ms = sum(self_ms.values())
    layers: list[MiddlewareLayer] = []
    for order, cand in enumerate(paths.ordered()):
        ms = self_ms.get(cand.name, 0.0)
        line = cand.lines.most_common(1)[0][0] if cand.lines else 0
        layers.append(
            MiddlewareLayer(
                order=order,
                name=cand.name,
                function=cand.function,
                file=cand.file,
                line=line,
                origin=cand.origin,
                role="app" if cand.name in _APP_CLASSES else "middleware",
                samples=samples.get(cand.name, 0),
                self_ms=ms,
                blocked_ms=blocked_ms.get(cand.name, 0.0),
                share=ms / request_ms if request_ms > 0 else 0.0,
            )
        )
    return MiddlewareSummary(
        request_ms=request_ms,
        layers_ms=sum(layer.self_ms for layer in layers if layer.role == "middleware"),
        server_ms=self_ms.get(OWNER_SERVER, 0.0),
        route_ms=self_ms.get(OWNER_ROUTE, 0.0),
        layers=tuple(layers),
    )


def middleware_findings(summary: MiddlewareSummary, params: AnalysisParams) -> list[Finding]:
    """One finding when middleware takes a large share of request time on the loop."""
    request_ms = summary.request_ms
    layers = [layer for layer in summary.layers if layer.role == "middleware"]
    heavy = [
        layer
        for layer in layers
        if layer.share >= params.middleware_layer_share
        and layer.samples >= params.finding_min_samples
    ]
    total = summary.layers_ms / request_ms if request_ms > 0 else 0.0
    samples = sum(layer.samples for layer in layers)
    if not heavy and (
        total < params.middleware_total_share or samples < params.finding_min_samples
    ):
        return []
    top = sorted((layer for layer in layers if layer.self_ms > 0), key=lambda x: -x.self_ms)
    parts = []
    for layer in top[:4]:
        blocked = f", {layer.blocked_ms:.0f} ms of it blocking" if layer.blocked_ms else ""
        parts.append(f"{layer.name} {layer.share:.0%} ({layer.self_ms:.0f} ms{blocked})")
    advice = (
        "Cut what each request pays before it reaches the route: move blocking calls out "
        "of middleware (await async clients, or hand the work to a background task or "
        "queue), drop layers that only some routes need (apply them as dependencies "
        "instead), and write hot middleware as pure ASGI classes."
    )
    if any(
        _norm(layer.file).endswith(_BASE_HTTP_FILE) or layer.function.endswith(".dispatch")
        for layer in top
    ):
        advice += (
            " BaseHTTPMiddleware adds a task and a memory stream to every request: prefer "
            "pure ASGI middleware."
        )
    return [
        Finding(
            kind="middleware-cost",
            severity="warning" if heavy else "info",
            title=f"middleware takes {total:.0%} of request time on the event loop",
            detail=(
                f"{len(layers)} middleware layers; their own time was {summary.layers_ms:.0f} "
                f"of {request_ms:.0f} ms of request time on the loop ({samples} samples): "
                + ", ".join(parts)
            ),
            advice=advice,
            # The heaviest layer, not the outermost heavy one: a layer at 20% beside one at
            # 79% is not the one to name.
            subject=max(heavy, key=lambda layer: layer.self_ms).name if heavy else None,
        )
    ]
