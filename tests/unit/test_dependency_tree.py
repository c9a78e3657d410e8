"""Routes' dependency trees: read by the probe from FastAPI itself, kept in routes.json, and
used to attribute dependency culprits and time to exactly the routes whose tree holds them."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
import textwrap
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType

import orjson
import pytest

from asgiprof import store
from asgiprof.analyze import analyze
from asgiprof.analyze.dependencies import DependencyTrees
from asgiprof.errors import CorruptProfileError
from asgiprof.model import Frame, Route, RouteDependency, RouteTable, SamplingInfo
from asgiprof.record import route_probe
from asgiprof.record.route_probe import DependencyRecord, RouteRecord
from asgiprof.store import ROUTES, load_routes, write_routes
from tests.profile_builder import (
    IDLE,
    ONE_EPISODE_IS_ENOUGH,
    QUEUE_GET,
    SITE,
    STDLIB,
    WORKER,
    Builder,
    request,
    source_reader,
)
from tests.pyspy_chunks import profile_dir

# --- the probe, in process, on a real FastAPI app ---------------------------------------------

APP_SOURCE = """
    import functools
    from dataclasses import dataclass
    from typing import Annotated

    from fastapi import APIRouter, Depends, FastAPI, Security
    from fastapi.security import OAuth2PasswordBearer


    async def app_wide():
        return None


    async def router_wide():
        return None


    async def at_include():
        return None


    async def get_db():
        yield "db"


    async def get_user(db: Annotated[str, Depends(get_db)]):
        return {"db": db}
    # end get_user


    CurrentUser = Annotated[dict, Depends(get_user)]


    class Pager:
        def __init__(self, user: CurrentUser, page: int = 1):
            self.page = page
        # end Pager.__init__


    @dataclass
    class Filters:
        q: str = ""
    # end Filters


    class Checker:
        async def __call__(self, db: Annotated[str, Depends(get_db)]):
            return True
        # end Checker.__call__


    def scoped(scope: str):
        return scope


    oauth = OAuth2PasswordBearer(tokenUrl="token")
    app = FastAPI(dependencies=[Depends(app_wide)], docs_url=None, redoc_url=None,
                  openapi_url=None)
    items = APIRouter(prefix="/items", dependencies=[Depends(router_wide)])


    @items.get("/{item_id}")
    async def get_item(item_id: int, user: CurrentUser, pager: Annotated[Pager, Depends()]):
        return {"id": item_id}


    @items.get("/")
    async def list_items(
        filters: Annotated[Filters, Depends()],
        ok: Annotated[bool, Depends(Checker())],
        scope: Annotated[str, Depends(functools.partial(scoped, "read"))],
        token: Annotated[str, Security(oauth)],
    ):
        return []


    app.include_router(items, dependencies=[Depends(at_include)])


    @app.get("/health")
    async def health():
        return "ok"
"""


def span(path: Path, first: str, last: str) -> tuple[str, int, int]:
    """(file, line of `first`, line of the first later line holding `last`)."""
    lines = path.read_text().splitlines()
    start = next(i for i, text in enumerate(lines) if first in text)
    end = next(i for i in range(start, len(lines)) if last in lines[i])
    return str(path), start + 1, end + 1


def dep(function: str, where: tuple[str, int, int], depth: int) -> DependencyRecord:
    file, first, last = where
    return DependencyRecord(
        function=function, file=file, first_line=first, last_line=last, depth=depth
    )


@pytest.fixture
def app_module(tmp_path: Path) -> Iterator[ModuleType]:
    """APP_SOURCE imported as a module of its own file (a unique name, removed afterwards)."""
    path = tmp_path / "deps_app.py"
    path.write_text(textwrap.dedent(APP_SOURCE).lstrip("\n"))
    name = f"deps_app_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[name]


def routes_by_name(result: route_probe.ProbeResult) -> dict[str, RouteRecord]:
    return {f"{r['method']} {r['path']}": r for r in result["routes"]}


def test_probe_flattens_every_route_dependency_tree(app_module: ModuleType) -> None:
    # GIVEN an app whose dependencies come from the app, a router, include_router, an
    # Annotated alias, nesting, classes, a callable instance, a partial and a security scheme
    path = Path(app_module.__file__ or "")
    m = app_module.__name__
    app_wide = dep(f"{m}.app_wide", span(path, "async def app_wide", "return None"), 1)
    get_db = span(path, "async def get_db", 'yield "db"')
    get_user = span(path, "async def get_user", "return {")
    # WHEN the probe reads its route table
    result = route_probe.probe_app(app_module.app)
    # THEN every route lists its whole tree, depth first, as FastAPI solves it
    assert result["status"] == "ok" and "dependency_error" not in result
    routes = routes_by_name(result)
    assert list(routes) == ["GET /items/{item_id}", "GET /items/", "GET /health"]
    assert routes["GET /items/{item_id}"]["dependencies"] == [
        app_wide,
        dep(f"{m}.at_include", span(path, "async def at_include", "return None"), 1),
        dep(f"{m}.router_wide", span(path, "async def router_wide", "return None"), 1),
        dep(f"{m}.get_user", get_user, 1),  # through the CurrentUser alias
        dep(f"{m}.get_db", get_db, 2),
        # a class runs its __init__, which depends on the alias in turn
        dep(f"{m}.Pager.__init__", span(path, "def __init__", "self.page = page"), 1),
        dep(f"{m}.get_user", get_user, 2),
        dep(f"{m}.get_db", get_db, 3),
    ]
    listed = routes["GET /items/"]["dependencies"]
    assert listed[:3] == routes["GET /items/{item_id}"]["dependencies"][:3]
    assert listed[3:7] == [
        # a dataclass's generated __init__ has no source: the class stands in
        dep(f"{m}.Filters", span(path, "@dataclass", "q: str"), 1),
        dep(f"{m}.Checker.__call__", span(path, "async def __call__", "return True"), 1),
        dep(f"{m}.get_db", get_db, 2),
        dep(f"{m}.scoped", span(path, "def scoped", "return scope"), 1),
    ]
    (oauth,) = listed[7:]
    assert oauth["function"] == "fastapi.security.oauth2.OAuth2PasswordBearer.__call__"
    assert oauth["file"].endswith("fastapi/security/oauth2.py") and oauth["depth"] == 1
    assert 0 < oauth["first_line"] < oauth["last_line"]
    assert routes["GET /health"]["dependencies"] == [app_wide]


def test_probe_gives_a_broken_tree_no_list_and_says_why_once(app_module: ModuleType) -> None:
    # GIVEN a route whose tree holds a node that is no Dependant
    app = app_module.app
    broken = [r for r in app.router.routes if getattr(r, "path", "") == "/health"]
    assert broken, "the app's own route is a plain APIRoute"
    broken[0].dependant.dependencies.append("not a dependant")
    # WHEN the probe reads the table
    result = route_probe.probe_app(app)
    # THEN those routes get no list, the others keep theirs, and one sentence says why
    routes = routes_by_name(result)
    assert routes["GET /health"]["dependencies"] == []
    assert len(routes["GET /items/{item_id}"]["dependencies"]) == 8
    assert result["dependency_error"] == (
        "the dependency trees of 1 route(s) could not be read, so their dependencies are "
        "found by name (first: GET /health: TypeError: str has no list of dependencies)"
    )


def test_probe_bounds_the_depth_of_a_tree(tmp_path: Path) -> None:
    # GIVEN a chain of 40 dependencies, each depending on the next
    from fastapi import Depends, FastAPI

    async def leaf() -> int:
        return 0

    chain: Callable[..., Awaitable[int]] = leaf
    for _ in range(40):

        async def link(value: int = Depends(chain)) -> int:
            return value + 1

        chain = link
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/deep")
    async def deep(value: int = Depends(chain)) -> int:
        return value

    @app.get("/flat")
    async def flat(value: int = Depends(leaf)) -> int:
        return value

    # WHEN the probe reads it THEN the deep route has no list, and the probe goes on
    result = route_probe.probe_app(app)
    routes = routes_by_name(result)
    assert routes["GET /deep"]["dependencies"] == []
    assert [d["depth"] for d in routes["GET /flat"]["dependencies"]] == [1]
    assert "GET /deep: ValueError: dependencies nested deeper than 32" in result.get(
        "dependency_error", ""
    )


class Settings(argparse.Namespace):
    """A class dependency whose __init__ lives in argparse.py."""

    verbose = False


def test_describe_dependency_of_a_class_with_an_init_from_another_file() -> None:
    # An __init__ from another file is shared by every subclass: the class stands in.
    name, file, first, last = route_probe.describe_dependency(Settings)
    assert (name, file) == (f"{__name__}.Settings", __file__)
    where = Path(__file__).read_text().splitlines()[first - 1 : last]
    assert where[0].startswith("class Settings(") and where[-1].endswith("verbose = False")


# --- routes.json ------------------------------------------------------------------------------

TREE_ROUTE = Route(
    "GET",
    "/items/{item_id}",
    "main.get_item",
    "/srv/app/main.py",
    30,
    34,
    True,
    (
        RouteDependency("deps.get_user", "/srv/app/deps.py", 10, 14, 1),
        RouteDependency("deps.get_db", "/srv/app/deps.py", 3, 6, 2),
    ),
)
PLAIN_ROUTE = Route("GET", "/health", "main.health", "/srv/app/main.py", 40, 42, True)


def test_route_table_with_trees_round_trips(tmp_path: Path) -> None:
    table = RouteTable((TREE_ROUTE, PLAIN_ROUTE), "app", None, "the dependency trees of 1...")
    write_routes(tmp_path, table)
    assert load_routes(tmp_path) == table


def test_routes_json_written_before_trees_still_loads(tmp_path: Path) -> None:
    # GIVEN a routes.json as asgiprof wrote it before routes had dependencies
    old = {
        "source": "app",
        "error": None,
        "routes": [
            {
                "method": "GET",
                "path": "/health",
                "endpoint": "main.health",
                "file": "/srv/app/main.py",
                "first_line": 40,
                "last_line": 42,
                "is_async": True,
            }
        ],
    }
    (tmp_path / ROUTES).write_bytes(orjson.dumps(old))
    # THEN it loads, every route without a tree
    assert load_routes(tmp_path) == RouteTable((PLAIN_ROUTE,), "app")
    assert PLAIN_ROUTE.dependencies == ()


@pytest.mark.parametrize(
    "dependencies",
    [
        {"function": "f"},
        [{"function": "f", "file": "/a.py", "first_line": 1, "last_line": 2}],
        [{"function": "f", "file": "/a.py", "first_line": 1, "last_line": 2, "depth": True}],
    ],
)
def test_malformed_dependencies_in_routes_json_are_corrupt(
    tmp_path: Path, dependencies: object
) -> None:
    write_routes(tmp_path, RouteTable((PLAIN_ROUTE,), "app"))
    data = orjson.loads((tmp_path / ROUTES).read_bytes())
    data["routes"][0]["dependencies"] = dependencies
    (tmp_path / ROUTES).write_bytes(orjson.dumps(data))
    with pytest.raises(CorruptProfileError, match="route"):
        load_routes(tmp_path)


def test_why_trees_were_not_read_reaches_the_analysis_notes(tmp_path: Path) -> None:
    # GIVEN an output directory whose route probe could not read one tree
    out = profile_dir(tmp_path / "out", SamplingInfo(100, 1000.0, 1.0, 0, 0))
    frames = [{"name": "thread (7): MainThread", "file": "", "line": 0}]
    chunk = {"type": "sampled", "name": "t", "samples": [[0]] * 3, "weights": [0.01] * 3}
    data = orjson.dumps({"shared": {"frames": frames}, "profiles": [chunk]})
    (out / "raw" / f"{store.chunk_name(1)}.speedscope.json").write_bytes(data)
    store.write_chunk_meta(out, 1, start_s=0.0, end_s=1.0, samples=3, errors=0, rc=0)
    why = "the dependency trees of 1 route(s) could not be read (first: GET /x: TypeError)"
    write_routes(out, RouteTable((PLAIN_ROUTE,), "app", dependency_error=why))
    # WHEN it is loaded and analysed THEN the report says why, once
    profile = store.load_profile(out)
    assert profile.problems.count(why) == 1
    assert analyze(profile).notes.count(why) == 1


# --- attribution in the analysis --------------------------------------------------------------

APP = "/srv/app/main.py"
DEPS = "/srv/app/deps.py"
HANDLER = Frame("get_request_handler.<locals>.app", f"{SITE}/fastapi/routing.py", 528)
RUN_ENDPOINT = Frame("run_endpoint_function", f"{SITE}/fastapi/routing.py", 381)
SOLVE = Frame("solve_dependencies", f"{SITE}/fastapi/dependencies/utils.py", 762)
SOLVE_NESTED = Frame("solve_dependencies", f"{SITE}/fastapi/dependencies/utils.py", 726)
RUN_SYNC = Frame("run_in_threadpool", f"{SITE}/starlette/concurrency.py", 42)
BOOTSTRAP = Frame("Thread._bootstrap", f"{STDLIB}/threading.py", 1002)

# deps.py: load_session 10-14 (via an alias), audit 20-23 (router-level), check_quota 30-34
# (nested under Pager.__init__ 40-44, a `def` dependency: it runs in the threadpool)
SESSION = RouteDependency("deps.load_session", DEPS, 10, 14, 1)
AUDIT = RouteDependency("deps.audit", DEPS, 20, 23, 1)
PAGER = RouteDependency("deps.Pager.__init__", DEPS, 40, 44, 1)
QUOTA = RouteDependency("deps.check_quota", DEPS, 30, 34, 2)
TREE_ROUTES = (
    Route("GET", "/accounts/me", "main.me", APP, 10, 12, True, (SESSION,)),
    Route("GET", "/catalog", "main.catalog", APP, 20, 22, True, (SESSION, PAGER, QUOTA)),
    Route("GET", "/admin/stats", "main.stats", APP, 30, 32, True, (AUDIT,)),
    Route("GET", "/admin/users", "main.users", APP, 40, 42, True, (AUDIT, PAGER, QUOTA)),
    # no tree (as from another framework or an old output directory): its source is read
    Route("GET", "/legacy", "main.legacy", APP, 50, 53, True),
)
SOURCE = {
    (APP, 50): '@app.get("/legacy")',
    (APP, 51): "async def legacy(s: dict = Depends(load_session)):",
    (APP, 52): "    return s",
}
read_line = source_reader(SOURCE)


def handled(*frames: Frame) -> tuple[Frame, ...]:
    """A request's loop stack inside FastAPI's request handler."""
    return request(HANDLER, *frames)


def tree_profile() -> Builder:
    b = Builder(routes=TREE_ROUTES)
    b.add(1, IDLE, 50)
    b.add(1, handled(SOLVE, Frame("load_session", DEPS, 12)), 4)  # 40 ms
    b.add(1, IDLE, 20)
    b.add(1, handled(SOLVE, Frame("audit", DEPS, 22)), 3)  # 30 ms
    b.add(1, IDLE, 20)
    # a nested async dependency runs above FastAPI's recursive solve_dependencies
    b.add(1, handled(SOLVE, SOLVE_NESTED, Frame("check_quota", DEPS, 33)), 5)  # 50 ms
    b.add(1, IDLE, 20)
    b.add(1, handled(RUN_ENDPOINT, Frame("me", APP, 11)), 1)
    b.add(1, IDLE, 10)
    # the `def` class dependency in a worker: recognised by its span, not by a name
    b.add(2, (BOOTSTRAP, WORKER, Frame("Pager.__init__", DEPS, 42)), 20)
    b.add(2, (BOOTSTRAP, WORKER, QUEUE_GET), 100)
    return b


def test_dependency_culprits_belong_to_exactly_the_routes_whose_tree_holds_them() -> None:
    a = analyze(tree_profile().build(), ONE_EPISODE_IS_ENOUGH, read_line=read_line)
    found = {(c.line, c.context, c.context_name): c.routes for c in a.culprits}
    assert found == {
        # the alias's dependency, and the legacy route naming it in its source
        (12, "dependency", "load_session"): (
            "GET /accounts/me",
            "GET /catalog",
            "GET /legacy",
        ),
        (22, "dependency", "audit"): ("GET /admin/stats", "GET /admin/users"),
        (33, "dependency", "check_quota"): ("GET /admin/users", "GET /catalog"),
    }
    quota = next(c for c in a.culprits if c.line == 33)
    assert quota.route == "GET /admin/users" and quota.blocked_ms == pytest.approx(50.0)


def test_dependency_summary_routes_come_from_the_trees() -> None:
    a = analyze(tree_profile().build(), ONE_EPISODE_IS_ENOUGH, read_line=read_line)
    deps = {d.name: d for d in a.dependencies.dependencies}
    assert set(deps) == {"load_session", "audit", "check_quota", "Pager.__init__"}
    assert deps["audit"].routes == ("GET /admin/stats", "GET /admin/users")
    assert deps["audit"].blocked_ms == pytest.approx(30.0)
    assert deps["check_quota"].routes == ("GET /admin/users", "GET /catalog")
    pager = deps["Pager.__init__"]
    assert (pager.runs_on, pager.routes) == ("threadpool", ("GET /admin/users", "GET /catalog"))
    assert pager.threadpool_ms == pytest.approx(200.0)
    holders = {(h.name, h.kind) for h in a.threadpool.holders}
    assert holders == {("dependency Pager.__init__", "dependency")}
    (finding,) = [f for f in a.findings if f.kind == "blocking-dependency" and f.subject == "audit"]
    assert "GET /admin/stats, GET /admin/users" in finding.detail


def test_without_trees_or_source_a_dependency_has_no_routes() -> None:
    # GIVEN the same samples, but a table from before trees were read, and no source
    b = tree_profile()
    b.profile.routes = RouteTable(
        tuple(dataclasses.replace(r, dependencies=()) for r in TREE_ROUTES), "app"
    )
    a = analyze(b.build(), ONE_EPISODE_IS_ENOUGH)
    # THEN the loop's dependencies are still found (above solve_dependencies), with no route,
    # and the worker's function is no known dependency
    assert {c.context_name: c.routes for c in a.culprits} == {
        "load_session": (),
        "audit": (),
        "check_quota": (),
    }
    assert {(h.name, h.kind) for h in a.threadpool.holders} == {("other: Pager.__init__", "other")}


def test_tree_spans_answer_innermost_and_match_dotted_paths() -> None:
    outer = RouteDependency("deps.outer", DEPS, 10, 30, 1)
    inner = RouteDependency("deps.outer.<locals>.inner", DEPS, 15, 20, 2)
    trees = DependencyTrees(
        [
            Route("GET", "/a", "main.a", APP, 1, 2, True, (outer,)),
            Route("GET", "/b", "main.b", APP, 3, 4, True, (outer, inner)),
        ]
    )
    assert trees.routes_at(DEPS, 12) == ("GET /a", "GET /b")
    assert trees.routes_at(DEPS, 16) == ("GET /b",)
    # the way py-spy names files imported through a relative sys.path entry on 3.9
    assert trees.routes_at("/srv/app/./deps.py", 16) == ("GET /b",)
    assert trees.routes_at(DEPS, 31) is None
    assert trees.routes_at(APP, 12) is None


def test_torn_samples_inside_a_dependency_count_for_it() -> None:
    # GIVEN an async dependency whose samples py-spy read whole and, alternately, only in
    # part (its innermost frames, no loop below: a greenlet, or --nonblocking racing)
    query = Frame("Session.execute", f"{SITE}/sqlalchemy/orm/session.py", 2300)
    b = Builder(routes=TREE_ROUTES)
    for _ in range(10):
        b.add(1, IDLE, 20)
        b.add(1, handled(SOLVE, Frame("load_session", DEPS, 12), query), 1)
        b.add(1, (Frame("load_session", DEPS, 12), query), 1)
    b.add(1, IDLE, 20)
    a = analyze(b.build(), read_line=read_line)
    # THEN all 20 samples are the dependency's loop time (the torn ones through the stack
    # standing in for them, analyze/torn.py), as they are the loop's busy time
    deps = {d.name: d for d in a.dependencies.dependencies}
    assert deps["load_session"].loop_ms == pytest.approx(200.0)
    assert a.loop.busy_ms == pytest.approx(200.0)
