"""The request path of a FastAPI app on uvicorn as py-spy shows it (frames, outermost
first), with a small route table and its source: shared by the diagnostics, route-cost and
findings tests."""

from __future__ import annotations

from asgiprof.model import Frame, Route
from tests.profile_builder import HANDLE, LOOP_BASE, RUN_ONCE, SITE, STDLIB, source_reader

APP = "/srv/app/main.py"
MW = "/srv/app/middleware.py"
DEPS = "/srv/app/deps.py"

# The request path as uvicorn + FastAPI show it, outermost first.
FASTAPI = Frame("FastAPI.__call__", f"{SITE}/fastapi/applications.py", 1054)
STARLETTE = Frame("Starlette.__call__", f"{SITE}/starlette/applications.py", 96)
SERVER_ERRORS = Frame(
    "ServerErrorMiddleware.__call__", f"{SITE}/starlette/middleware/errors.py", 164
)
GZIP = Frame("GZipMiddleware.__call__", f"{SITE}/starlette/middleware/gzip.py", 79)
GZIP_RESPONDER = Frame("IdentityResponder.__call__", f"{SITE}/starlette/middleware/gzip.py", 104)
TIMING = Frame("TimingMiddleware.__call__", MW, 20)
TIMING_SEND = Frame("TimingMiddleware.__call__.<locals>.send_wrapper", MW, 16)
SIGNING = Frame("SigningMiddleware.__call__", MW, 40)
SIGN = Frame("SigningMiddleware.sign", MW, 47)
BASE_HTTP = Frame("BaseHTTPMiddleware.__call__", f"{SITE}/starlette/middleware/base.py", 203)
BASE_HTTP_EARLY = Frame("BaseHTTPMiddleware.__call__", f"{SITE}/starlette/middleware/base.py", 108)
AUDIT = Frame("AuditMiddleware.dispatch", MW, 61)
CALL_NEXT_TASK = Frame(
    "BaseHTTPMiddleware.__call__.<locals>.call_next.<locals>.coro",
    f"{SITE}/starlette/middleware/base.py",
    149,
)
EXCEPTIONS = Frame("ExceptionMiddleware.__call__", f"{SITE}/starlette/middleware/exceptions.py", 63)
ROUTER = Frame("Router.__call__", f"{SITE}/starlette/routing.py", 715)
ROUTE_HANDLE = Frame("Route.handle", f"{SITE}/starlette/routing.py", 289)
HANDLER = Frame("get_request_handler.<locals>.app", f"{SITE}/fastapi/routing.py", 528)
RUN_ENDPOINT = Frame("run_endpoint_function", f"{SITE}/fastapi/routing.py", 381)
SOLVE = Frame("solve_dependencies", f"{SITE}/fastapi/dependencies/utils.py", 762)
SOLVE_NESTED = Frame("solve_dependencies", f"{SITE}/fastapi/dependencies/utils.py", 726)
PARAMS = Frame("request_params_to_args", f"{SITE}/fastapi/dependencies/utils.py", 984)
SEND = Frame("RequestResponseCycle.send", f"{SITE}/uvicorn/protocols/http/h11_impl.py", 490)
LOG = Frame("Logger.info", f"{STDLIB}/logging/__init__.py", 1489)
BOOTSTRAP = Frame("Thread._bootstrap", f"{STDLIB}/threading.py", 1002)

ITEM = Frame("get_item", APP, 30)
ORDER = Frame("get_order", APP, 40)
PROFILE = Frame("get_profile", APP, 50)
REPORT = Frame("slow_report", APP, 60)
CURRENT_USER = Frame("current_user", DEPS, 12)
SETTINGS = Frame("get_settings", DEPS, 22)

ROUTES = (
    Route("GET", "/items/{item_id}", "main.get_item", APP, 28, 32, True),
    Route("GET", "/orders/{order_id}", "main.get_order", APP, 36, 42, True),
    Route("GET", "/profile", "main.get_profile", APP, 46, 52, True),
    Route("GET", "/reports/slow", "main.slow_report", APP, 58, 62, False),
)

# Source of the endpoints, as the route table's spans read it (decorators included).
SOURCE = {
    (MW, 20): "await self.app(scope, receive, send_wrapper)",
    (MW, 40): "await self.app(scope, receive, send)",
    (APP, 36): '@app.get("/orders/{order_id}")',
    (APP, 37): "async def get_order(",
    (APP, 38): "    order_id: int,",
    (APP, 39): "    user: Annotated[User, Depends(current_user)],",
    (APP, 40): ") -> Order:",
    (APP, 46): '@app.get("/profile")',
    (APP, 47): "async def get_profile(",
    (APP, 48): "    user: Annotated[User, Depends(deps.current_user)],",
    (APP, 49): "    settings: Settings = Depends(get_settings),",
    (APP, 50): ") -> Profile:  # Depends(not_a_dependency) after the signature is ignored",
    (APP, 51): "    return Profile(user, settings)",
    (APP, 52): "    # Depends(not_scanned)",
    (DEPS, 12): "time.sleep(0.03)",
    (MW, 61): "time.sleep(0.03)",
}

read_line = source_reader(SOURCE)


def task(*frames: Frame) -> tuple[Frame, ...]:
    """A loop stack running another task (BaseHTTPMiddleware's inner app)."""
    return (*LOOP_BASE, RUN_ONCE, HANDLE, *frames)


OUTER = (FASTAPI, STARLETTE, SERVER_ERRORS, GZIP, GZIP_RESPONDER, TIMING, SIGNING, BASE_HTTP)
ENDPOINT = (ROUTER, ROUTE_HANDLE, HANDLER, RUN_ENDPOINT)
