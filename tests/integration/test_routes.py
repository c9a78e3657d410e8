"""Route tables read by running the probe in a real interpreter against real apps."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from asgiprof.analyze.route_index import RouteIndex
from asgiprof.errors import AppImportError
from asgiprof.model import Route, RouteTable
from asgiprof.record import route_probe
from asgiprof.record.command import parse_server_command
from asgiprof.record.route_probe import MARKER
from asgiprof.record.routes import probe_argv, read_route_table, read_route_table_for

PYTHON = sys.executable  # has fastapi and starlette installed


def write_app(folder: Path, source: str, name: str = "main.py") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip("\n"))
    return path


def span(path: Path, first: str, last: str) -> tuple[str, int, int]:
    """(real file path, line of `first`, line of the first later line holding `last`)."""
    lines = path.read_text().splitlines()
    start = next(i for i, text in enumerate(lines) if first in text)
    end = next(i for i in range(start, len(lines)) if last in lines[i])
    # The probe's file names come from the child's cwd, which the OS reports resolved.
    return os.path.realpath(path), start + 1, end + 1


def route(
    method: str, path: str, endpoint: str, where: tuple[str, int, int], is_async: bool
) -> Route:
    file, first, last = where
    return Route(method, path, endpoint, file, first, last, is_async)


# --- FastAPI ----------------------------------------------------------------------------------

FASTAPI_APP = """
    import time
    from fastapi import APIRouter, FastAPI, WebSocket

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    users = APIRouter(prefix="/users")
    api = APIRouter(prefix="/api")


    @users.get("/{user_id}")
    def get_user(user_id: int) -> dict[str, int]:
        time.sleep(0.01)  # blocking in a def: runs in the threadpool
        return {"id": user_id}


    @users.api_route("/{user_id:int}/tags", methods=["PUT", "PATCH"])
    async def set_tags(user_id: int) -> None:
        time.sleep(0.01)  # blocking in an async def: holds the event loop
    # end set_tags


    api.include_router(users)


    @api.post("/items")
    async def create_item() -> dict[str, bool]:
        return {"ok": True}


    app.include_router(api)


    @app.get("/")
    async def home() -> str:
        return "home"


    @app.websocket("/ws")
    async def feed(ws: WebSocket) -> None:
        await ws.accept()
    # end feed
"""


def test_fastapi_routers_prefixes_and_path_params(tmp_path: Path) -> None:
    main = write_app(tmp_path, FASTAPI_APP)
    table = read_route_table("main:app", python=PYTHON, cwd=str(tmp_path))
    assert table == RouteTable(
        (
            route(
                "GET",
                "/api/users/{user_id}",
                "main.get_user",
                span(main, '@users.get("/{user_id}")', 'return {"id"'),
                False,
            ),
            route(
                "PUT,PATCH",
                "/api/users/{user_id}/tags",
                "main.set_tags",
                span(main, "@users.api_route", "time.sleep(0.01)  # blocking in an async"),
                True,
            ),
            route(
                "POST",
                "/api/items",
                "main.create_item",
                span(main, '@api.post("/items")', 'return {"ok"'),
                True,
            ),
            route("GET", "/", "main.home", span(main, '@app.get("/")', 'return "home"'), True),
            route(
                "WS", "/ws", "main.feed", span(main, '@app.websocket("/ws")', "ws.accept()"), True
            ),
        ),
        "app",
    )


def test_fastapi_docs_routes_are_listed(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        """
        from fastapi import FastAPI
        app = FastAPI()
        """,
    )
    table = read_route_table("main:app", python=PYTHON, cwd=str(tmp_path))
    assert [r.name for r in table.routes] == [
        "GET /openapi.json",
        "GET /docs",
        "GET /docs/oauth2-redirect",
        "GET /redoc",
    ]
    assert all("fastapi" in r.file and r.first_line > 0 for r in table.routes)


def test_frames_match_the_route_of_their_endpoint(tmp_path: Path) -> None:
    # GIVEN the real table of an app
    main = write_app(tmp_path, FASTAPI_APP)
    table = read_route_table("main:app", python=PYTHON, cwd=str(tmp_path))
    index = RouteIndex(table)
    file, _, _ = span(main, "import time", "import time")
    _, sleep_in_def, _ = span(main, "time.sleep(0.01)  # blocking in a def", "blocking")
    _, sleep_in_async, _ = span(main, "time.sleep(0.01)  # blocking in an async", "blocking")
    _, between, _ = span(main, "api.include_router(users)", "include_router")
    # WHEN frames at the blocking lines are matched THEN their routes answer
    assert index.match(file, sleep_in_def) == table.routes[0]
    assert index.match(file, sleep_in_async) == table.routes[1]
    # the way py-spy names files imported through a relative sys.path entry on 3.9
    dotted = os.path.join(os.path.dirname(file), ".", os.path.basename(file))
    assert index.match(dotted, sleep_in_def) == table.routes[0]
    # module-level code and other files belong to no route
    assert index.match(file, between) is None
    assert index.match(file + ".other", sleep_in_def) is None


# --- Starlette ---------------------------------------------------------------------------------

STARLETTE_APP = """
    import functools
    from starlette.applications import Starlette
    from starlette.endpoints import HTTPEndpoint, WebSocketEndpoint
    from starlette.responses import PlainTextResponse
    from starlette.routing import Host, Mount, Route, Router, WebSocketRoute
    from starlette.staticfiles import StaticFiles


    async def ping(request):
        return PlainTextResponse("pong")


    def report(request, fmt):
        return PlainTextResponse(fmt)


    class Orders(HTTPEndpoint):
        async def get(self, request):
            return PlainTextResponse("list")

        def post(self, request):
            return PlainTextResponse("created")
    # end Orders


    class Echo(WebSocketEndpoint):
        async def on_receive(self, websocket, data):
            await websocket.send_text(data)
    # end Echo


    async def version(request):
        return PlainTextResponse("1")


    admin = Starlette(routes=[Route("/stats/{day:str}", ping)])
    v1 = Router([Route("/version", version, methods=["GET", "POST"])])

    app = Starlette(
        routes=[
            Route("/ping", ping),
            Route("/report", functools.partial(report, fmt="csv")),
            Route("/orders", Orders),
            WebSocketRoute("/echo", Echo),
            Mount("/admin", app=admin),
            Mount("/v1", routes=[Mount("/meta", app=v1)]),
            Mount("/static", app=StaticFiles(directory=".", check_dir=False)),
            Host("api.example.com", app=Router([Route("/hosted", version)])),
        ]
    )
"""


def test_starlette_mounts_routers_hosts_and_endpoints(tmp_path: Path) -> None:
    main = write_app(tmp_path, STARLETTE_APP)
    table = read_route_table("main:app", python=PYTHON, cwd=str(tmp_path))
    assert table.source == "app"
    static = table.routes[7]
    # StaticFiles has no routes: the mount itself is the route, its code the endpoint
    assert (static.method, static.path, static.endpoint) == (
        "*",
        "/static",
        "starlette.staticfiles.StaticFiles.__call__",
    )
    assert static.is_async and "starlette" in static.file
    version = span(main, "async def version", 'return PlainTextResponse("1")')
    assert table.routes[:7] + table.routes[8:] == (
        route("GET", "/ping", "main.ping", span(main, "async def ping", '"pong"'), True),
        route("GET", "/report", "main.report", span(main, "def report", "(fmt)"), False),
        route("GET", "/orders", "main.Orders.get", span(main, "async def get", '"list"'), True),
        route("POST", "/orders", "main.Orders.post", span(main, "def post", '"created"'), False),
        route("WS", "/echo", "main.Echo", span(main, "class Echo", "send_text"), True),
        route(
            "GET", "/admin/stats/{day}", "main.ping", span(main, "async def ping", '"pong"'), True
        ),
        route("GET,POST", "/v1/meta/version", "main.version", version, True),
        # Host keeps the path: the host is not part of the route's name
        route("GET", "/hosted", "main.version", version, True),
    )


def test_app_wrapped_in_middleware_and_mounted_fastapi(tmp_path: Path) -> None:
    main = write_app(
        tmp_path,
        """
        from fastapi import FastAPI
        from starlette.applications import Starlette
        from starlette.middleware.gzip import GZipMiddleware
        from starlette.routing import Mount


        class TimingMiddleware:  # pure ASGI middleware, the common hand-written kind
            def __init__(self, app):
                self.app = app

            async def __call__(self, scope, receive, send):
                await self.app(scope, receive, send)


        inner = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


        @inner.get("/items/{item_id}")
        def read_item(item_id: int):
            return {"item_id": item_id}


        root = Starlette(routes=[Mount("/v2", app=GZipMiddleware(inner))])
        app = TimingMiddleware(GZipMiddleware(root))
        """,
    )
    table = read_route_table("main:app", python=PYTHON, cwd=str(tmp_path))
    assert table == RouteTable(
        (
            route(
                "GET",
                "/v2/items/{item_id}",
                "main.read_item",
                span(main, "@inner.get", 'return {"item_id"'),
                False,
            ),
        ),
        "app",
    )


def test_factory_and_app_dir(tmp_path: Path) -> None:
    # GIVEN `uvicorn --factory service:create_app --app-dir src` run from tmp_path
    service = write_app(
        tmp_path / "src",
        """
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route


        async def health(request):
            return PlainTextResponse("ok")


        def create_app():
            return Starlette(routes=[Route("/health", health)])
        """,
        name="service.py",
    )
    command = parse_server_command(
        ["uvicorn", "--factory", "service:create_app", "--app-dir", "src"]
    )
    # WHEN the table is read for that command
    table = read_route_table_for(command, python=PYTHON, cwd=str(tmp_path))
    # THEN the factory's app is walked
    where = span(service, "async def health", 'PlainTextResponse("ok")')
    assert table == RouteTable((route("GET", "/health", "service.health", where, True),), "app")


def test_gunicorn_chdir_and_missing_spec(tmp_path: Path) -> None:
    write_app(
        tmp_path / "srv",
        """
        from starlette.applications import Starlette
        application = Starlette()
        """,
    )
    command = parse_server_command(["gunicorn", "--chdir", "srv", "main"])
    # cwd is the server's own working directory (gunicorn has changed into srv/ by then)
    srv = str(tmp_path / "srv")
    assert read_route_table_for(command, python=PYTHON, cwd=srv) == RouteTable((), "app")
    no_spec = parse_server_command(["fastapi", "run"])
    assert read_route_table_for(no_spec, python=PYTHON, cwd=str(tmp_path)).source == "none"


# --- Django -----------------------------------------------------------------------------------

DJANGO_APP = """
    import django
    from django.conf import settings

    settings.configure(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"], SECRET_KEY="k" * 50)
    django.setup()

    from django.core.asgi import get_asgi_application
    from django.http import HttpResponse
    from django.urls import include, path, re_path
    from django.views import View
    from django.views.generic import TemplateView


    async def user(request, user_id):
        return HttpResponse(str(user_id))


    def article(request, year, slug):
        return HttpResponse(slug)


    class Orders(View):
        async def get(self, request):
            return HttpResponse("list")

        async def post(self, request):
            return HttpResponse("created")


    api = [
        path("users/<int:user_id>/", user),
        re_path(r"^articles/(?P<year>[0-9]{4})/(?P<slug>[-\\w]+)\\.html$", article),
    ]
    urlpatterns = [
        path("api/v<int:version>/", include(api)),
        path("orders/", Orders.as_view()),
        path("about/", TemplateView.as_view(template_name="about.html")),
    ]

    application = get_asgi_application()
"""


def test_django_url_patterns_includes_regexes_and_class_views(tmp_path: Path) -> None:
    main = write_app(tmp_path, DJANGO_APP)
    table = read_route_table("main:application", python=PYTHON, cwd=str(tmp_path))
    # A function view answers any method: ANY; a class-based view one route per handler,
    # Django's own among them (not View.options, which every class-based view has)
    *mine, about = table.routes
    assert (about.method, about.path, about.endpoint) == (
        "GET",
        "/about/",
        "django.views.generic.base.TemplateView.get",
    )
    assert RouteTable(tuple(mine), table.source) == RouteTable(
        (
            route(
                "ANY",
                "/api/v{version}/users/{user_id}/",
                "main.user",
                span(main, "async def user", "str(user_id)"),
                True,
            ),
            route(
                "ANY",
                "/api/v{version}/articles/{year}/{slug}.html",
                "main.article",
                span(main, "def article", "(slug)"),
                False,
            ),
            route("GET", "/orders/", "main.Orders.get", span(main, "def get", '"list"'), True),
            route(
                "POST", "/orders/", "main.Orders.post", span(main, "def post", '"created"'), True
            ),
        ),
        "app",
    )


# --- apps that misbehave -----------------------------------------------------------------------


def test_app_printing_to_stdout_at_import(tmp_path: Path) -> None:
    main = write_app(
        tmp_path,
        f"""
        import os, sys
        print("starting up", {MARKER!r})
        sys.stdout.write("no newline")
        os.write(1, b"raw fd write without newline")  # bypasses sys.stdout
        from starlette.applications import Starlette
        from starlette.routing import Route


        async def home(request):
            print("never called")


        app = Starlette(routes=[Route("/", home)])
        print("ready")
        """,
    )
    table = read_route_table("main:app", python=PYTHON, cwd=str(tmp_path))
    where = span(main, "async def home", "never called")
    assert table == RouteTable((route("GET", "/", "main.home", where, True),), "app")


@pytest.mark.parametrize(
    ("source", "spec", "message"),
    [
        (
            "x = 1\n",
            "nomodule:app",
            "ModuleNotFoundError: No module named 'nomodule'",
        ),
        (
            "import not_installed_dependency\n",
            "main:app",
            "ModuleNotFoundError: No module named 'not_installed_dependency'",
        ),
        ("x = 1\n", "main:app", 'AttributeError: Attribute "app" not found in module "main"'),
        (
            "raise RuntimeError('no DATABASE_URL\\nset')\n",
            "main:app",
            "RuntimeError: no DATABASE_URL set",
        ),
        ("def broken(:\n", "main:app", "SyntaxError: "),
        (
            "raise ConnectionError('cannot reach postgresql://app:hunter2@db/app')\n",
            "main:app",
            "ConnectionError: cannot reach postgresql://app:***@db/app",
        ),
        ("import sys\nsys.exit(3)\n", "main:app", "SystemExit: 3"),
        (
            "def make():\n    raise ValueError('bad config')\n",
            "main:make",
            "the app factory raised ValueError: bad config",
        ),
    ],
    ids=[
        "no-module",
        "missing-dependency",
        "no-attribute",
        "raises",
        "syntax",
        "secret-in-message",
        "exit",
        "factory",
    ],
)
def test_import_failures_are_one_clear_line(
    tmp_path: Path, source: str, spec: str, message: str
) -> None:
    (tmp_path / "main.py").write_text(source)
    with pytest.raises(AppImportError) as raised:
        read_route_table(spec, python=PYTHON, cwd=str(tmp_path), factory=spec == "main:make")
    text = raised.value.message
    assert text.startswith(f"could not import app {spec!r} with {PYTHON} in {tmp_path}: ")
    assert message in text
    assert "\n" not in text and "Traceback" not in text and "hunter2" not in text
    assert text.endswith("and that this interpreter has the app's packages installed")
    assert raised.value.exit_code == 2


def test_unknown_framework_gives_no_table(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        """
        async def app(scope, receive, send):
            pass
        """,
    )
    table = read_route_table("main:app", python=PYTHON, cwd=str(tmp_path))
    assert table == RouteTable(
        (), "none", "the app (function) has no route table (.routes or .router)"
    )


def test_routes_of_an_unknown_shape_give_no_table(tmp_path: Path) -> None:
    # A framework whose routes hold handlers under other names (like Litestar's
    # route_handlers): an empty "app" table would hide that nothing was understood.
    write_app(
        tmp_path,
        """
        class HTTPRoute:
            path = "/items"
            route_handlers = []


        class App:
            routes = [HTTPRoute(), HTTPRoute()]


        app = App()
        """,
    )
    table = read_route_table("main:app", python=PYTHON, cwd=str(tmp_path))
    reason = "no route of the app could be read (unrecognised: HTTPRoute)"
    assert table == RouteTable((), "none", reason)


def test_probe_runs_as_a_file_too(tmp_path: Path) -> None:
    # `python route_probe.py MODULE:ATTR --app-dir DIR`, with asgiprof's folder kept off
    # sys.path so it cannot shadow the app's modules.
    write_app(
        tmp_path / "src",
        """
        import sys
        assert not any(p.rstrip("/").endswith("asgiprof/record") for p in sys.path), sys.path


        class App:
            routes = []


        app = App()
        """,
    )
    probe = Path(route_probe.__file__)
    proc = subprocess.run(
        [PYTHON, str(probe), "main:app", "--app-dir", "src"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == MARKER + json.dumps(
        {"framework": "main", "protocol": 1, "routes": [], "skipped": [], "status": "ok"}
    )


def test_app_whose_attributes_raise_gives_no_table(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        """
        class Broken:
            @property
            def routes(self):
                raise RuntimeError("boom")

            @property
            def router(self):
                raise RuntimeError("boom")


        app = Broken()
        """,
    )
    table = read_route_table("main:app", python=PYTHON, cwd=str(tmp_path))
    assert table == RouteTable(
        (), "none", "the app (Broken) has no route table (.routes or .router)"
    )


def test_route_table_that_cannot_be_walked_gives_no_table(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        """
        class Meta(type):
            @property
            def __wrapped__(cls):  # inspect.unwrap only expects AttributeError
                raise RuntimeError("boom")


        class Endpoint(metaclass=Meta):
            pass


        class Route:
            path = "/x"
            endpoint = Endpoint


        class App:
            routes = [Route()]


        app = App()
        """,
    )
    table = read_route_table("main:app", python=PYTHON, cwd=str(tmp_path))
    assert table == RouteTable((), "none", "reading the route table failed: RuntimeError: boom")


def test_mount_cycles_end(tmp_path: Path) -> None:
    # GIVEN a mount whose routes hold itself twice (2**depth walks without a cycle check)
    write_app(
        tmp_path,
        """
        async def leaf(request):
            pass


        class Route:
            path = "/leaf"
            endpoint = staticmethod(leaf)
            methods = ["GET"]


        class SelfMount:
            path = "/loop"

            @property
            def routes(self):
                return [self, Route(), self]


        class App:
            routes = [SelfMount()]


        app = App()
        """,
    )
    table = read_route_table("main:app", python=PYTHON, cwd=str(tmp_path), timeout_s=60)
    assert [r.name for r in table.routes] == ["GET /loop/leaf"]


def test_app_threads_that_never_end_do_not_hang_the_probe(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        """
        import threading, time
        threading.Thread(target=time.sleep, args=(3600,)).start()  # not a daemon
        from starlette.applications import Starlette
        app = Starlette()
        """,
    )
    started = time.monotonic()
    table = read_route_table("main:app", python=PYTHON, cwd=str(tmp_path), timeout_s=60)
    assert table == RouteTable((), "app")
    assert time.monotonic() - started < 30  # it did not wait for the thread


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is gone for our purposes


def test_timeout_kills_the_probe_and_what_it_started(tmp_path: Path) -> None:
    # GIVEN an app whose import hangs after starting a child process
    write_app(
        tmp_path,
        """
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        with open("pids.txt", "w") as f:
            f.write(f"{os.getpid()} {child.pid}")
        time.sleep(3600)
        """,
    )
    # WHEN the table is read with a short timeout
    table = read_route_table("main:app", python=PYTHON, cwd=str(tmp_path), timeout_s=3)
    # THEN there is no table, and neither the probe nor its child survives
    assert table == RouteTable((), "none", "importing the app 'main:app' took longer than 3 s")
    pids = [int(p) for p in (tmp_path / "pids.txt").read_text().split()]
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)


def test_missing_interpreter_and_cwd(tmp_path: Path) -> None:
    with pytest.raises(AppImportError, match=r"could not run /nonexistent/python .*"):
        read_route_table("main:app", python="/nonexistent/python", cwd=str(tmp_path))
    with pytest.raises(AppImportError, match="working directory .* does not exist"):
        read_route_table("main:app", python=PYTHON, cwd=str(tmp_path / "gone"))


def test_interpreter_that_is_not_python(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'not python' >&2\nexit 9\n")
    fake.chmod(0o755)
    with pytest.raises(AppImportError, match="exited with status 9: not python"):
        read_route_table("main:app", python=str(fake), cwd=str(tmp_path))


def test_probe_never_needs_asgiprof(tmp_path: Path) -> None:
    # -I: no site-packages, no PYTHONPATH, no cwd: asgiprof cannot be imported, yet the
    # probe runs, from its source text alone.
    write_app(
        tmp_path,
        """
        class App:
            routes = []
        app = App()
        """,
    )
    argv = probe_argv(PYTHON, "main:app")
    argv.insert(1, "-I")
    proc = subprocess.run(
        argv, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        f'{MARKER}{{"framework": "main", "protocol": 1, "routes": [], "skipped": []' in proc.stdout
    )


# --- other CPython versions -----------------------------------------------------------------

# A stdlib-only app with the shape frameworks share (`.routes`, `path`, `methods`,
# `endpoint`, `.app`): proves the probe's own code runs on every supported CPython.
FAKE_FRAMEWORK_APP = """
    import functools


    class Route:
        def __init__(self, path, endpoint, methods=None):
            self.path = path
            self.endpoint = endpoint
            self.methods = methods


    class Mount:
        def __init__(self, path, app):
            self.path = path
            self.app = app


    class Router:
        def __init__(self, routes):
            self.routes = routes


    class Middleware:
        def __init__(self, app):
            self.app = app


    def home():
        return "home"


    async def user(user_id):
        return user_id


    def decorated(function):
        @functools.wraps(function)
        async def wrapper(*args):
            return await function(*args)
        return wrapper


    @decorated
    async def orders():
        return []
    # end orders


    class Handler:
        async def __call__(self, scope, receive, send):
            pass


    users = Router([Route("/{user_id:int}", user, {"GET", "HEAD"})])
    app = Middleware(
        Router(
            [
                Route("/", home, ["GET"]),
                Mount("/users/", users),
                Route("/orders", orders, ["POST", "DELETE"]),
                Route("/hook", Handler(), None),
                Mount("/raw", Handler()),
            ]
        )
    )
"""


def _pyenv_root() -> Path | None:
    pyenv = shutil.which("pyenv")
    if pyenv is not None:
        proc = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30)
        if proc.returncode == 0 and proc.stdout.strip():
            return Path(proc.stdout.strip())
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    return Path(root) if os.path.isdir(root) else None


def _cpython(minor: str) -> str | None:
    root = _pyenv_root()
    if root is None:
        return None
    found = sorted(glob.glob(str(root / "versions" / f"{minor}.*" / "bin" / f"python{minor}")))
    return found[-1] if found else None


@pytest.mark.parametrize("minor", ["3.9", "3.10", "3.11", "3.12", "3.13"])
def test_probe_runs_on_every_supported_cpython(tmp_path: Path, minor: str) -> None:
    python = _cpython(minor)
    if python is None:
        pytest.skip(f"no CPython {minor} under pyenv (pyenv install {minor})")
    main = write_app(tmp_path, FAKE_FRAMEWORK_APP)
    table = read_route_table("main:app", python=python, cwd=str(tmp_path))
    handler = span(main, "async def __call__", "pass")
    assert table == RouteTable(
        (
            route("GET", "/", "main.home", span(main, "def home", '"home"'), False),
            route(
                "GET",
                "/users/{user_id}",
                "main.user",
                span(main, "async def user", "return user_id"),
                True,
            ),
            route(
                "POST,DELETE", "/orders", "main.orders", span(main, "@decorated", "return []"), True
            ),
            route("*", "/hook", "main.Handler.__call__", handler, True),
            route("*", "/raw", "main.Handler.__call__", handler, True),
        ),
        "app",
    )


# --- RouteIndex on hand-built tables ---------------------------------------------------------


def _r(name: str, file: str, first: int, last: int) -> Route:
    method, path = name.split(" ")
    return Route(method, path, f"m.{path}", file, first, last, True)


def test_route_index_nested_and_adjacent_spans() -> None:
    # GIVEN spans: a class endpoint 10-40 holding methods 12-20 and 22-30, a function 41-45
    outer = _r("* /cls", "/a.py", 10, 40)
    get = _r("GET /cls", "/a.py", 12, 20)
    post = _r("POST /cls", "/a.py", 22, 30)
    after = _r("GET /after", "/a.py", 41, 45)
    other = _r("GET /b", "/b.py", 1, 100)
    index = RouteIndex([after, post, outer, other, get])
    # THEN each line answers with the innermost span holding it
    expected = {
        9: None,
        10: outer,
        12: get,
        20: get,
        21: outer,
        22: post,
        31: outer,
        40: outer,
        41: after,
        45: after,
        46: None,
    }
    assert {line: index.match("/a.py", line) for line in expected} == expected
    assert index.match("/b.py", 50) == other
    assert index.match("/c.py", 50) is None


def test_route_index_shared_endpoint_answers_with_the_first_route() -> None:
    first = _r("GET /a", "/x.py", 5, 9)
    second = _r("GET /b", "/x.py", 5, 9)
    assert RouteIndex(RouteTable((first, second), "app")).match("/x.py", 7) == first


def test_route_index_ignores_routes_without_source() -> None:
    builtin = Route("GET", "/b", "builtins.print", "", 0, 0, False)
    index = RouteIndex(RouteTable((builtin,), "app"))
    assert index.match("", 0) is None
