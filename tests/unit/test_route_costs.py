"""Route costs: access-log requests matched to route templates, and a shared dependency's
time split among its routes by that evidence (endpoint samples without a log)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from asgiprof.analyze import analyze
from asgiprof.analyze.result import DependencySummary
from asgiprof.analyze.route_costs import EndpointTime, RequestOverhead, route_costs
from asgiprof.model import Frame, GilSamples, RequestCounts, Route
from asgiprof.reporters.html import render_html
from asgiprof.reporters.summary_json import summary
from asgiprof.reporters.terminal import print_summary
from asgiprof.store.access_log import RouteMatcher, count_requests
from tests.fastapi_frames import (
    CURRENT_USER,
    ENDPOINT,
    FASTAPI,
    ITEM,
    ORDER,
    PROFILE,
    ROUTES,
    SOLVE,
    SOURCE,
)
from tests.profile_builder import (
    HANDLE,
    IDLE,
    LOOP_BASE,
    ONE_EPISODE_IS_ENOUGH,
    RUN_ONCE,
    SITE,
    Builder,
    request,
    source_reader,
)

APP = "/srv/app/main.py"
TABLE = (
    Route("GET", "/users/me", "main.me", APP, 10, 12, True),
    Route("GET", "/users/{user_id}", "main.user", APP, 14, 16, True),
    Route("GET,POST", "/files/{name:path}", "main.files", APP, 18, 20, True),
    Route("DELETE", "/items/{item_id:int}", "main.delete", APP, 22, 24, True),
    Route("*", "/static", "StaticFiles", APP, 26, 26, False),
)

# Lines as uvicorn, gunicorn (--access-logfile -), hypercorn and daphne print them.
LOG = """\
INFO:     Started server process [4242]
INFO:     Uvicorn running on http://127.0.0.1:8000 (Press CTRL+C to quit)
INFO:     127.0.0.1:50312 - "GET /users/me HTTP/1.1" 200 OK
INFO:     127.0.0.1:50312 - "GET /users/me?verbose=1 HTTP/1.1" 200 OK
INFO:     127.0.0.1:50314 - "GET /users/17 HTTP/1.1" 200 OK
INFO:     127.0.0.1:50314 - "HEAD /users/17 HTTP/1.1" 200 OK
127.0.0.1 - - [06/Dec/2026:17:00:00 +0000] "POST /files/a/b.txt HTTP/1.1" 201 0 "-" "wrk"
[2026-12-06 17:00:00 +0000] [1] [INFO] 127.0.0.1:5 - - [06/Dec/2026:17:00:00 +0000] \
"GET /static/app.js HTTP/2" 200 10 "-" "curl"
127.0.0.1:45826 - - [06/Dec/2026:17:00:00] "GET /users/me" 200 9
INFO:     127.0.0.1:50316 - "DELETE /items/abc HTTP/1.1" 404 Not Found
INFO:     127.0.0.1:50316 - "DELETE /items/12 HTTP/1.1" 204 No Content
INFO:     127.0.0.1:50316 - "PUT /users/me HTTP/1.1" 405 Method Not Allowed
ERROR:    Exception in ASGI application "GET is not a request"
"""


def test_access_log_lines_are_counted_per_route_template(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text(LOG)
    counts = count_requests(log, TABLE)
    assert counts is not None
    assert dict(counts.by_route) == {
        "GET /users/me": 3,  # declared before /users/{user_id}: the router picks it
        "GET /users/{user_id}": 2,  # HEAD is served by the GET route
        "GET,POST /files/{name:path}": 1,
        "* /static": 1,
        "DELETE /items/{item_id:int}": 1,  # /items/abc is not an int: 404
    }
    assert (counts.total, counts.unmatched) == (10, 2)
    assert counts.by_route[0][1] >= counts.by_route[-1][1]  # most first


def test_no_request_lines_means_no_counts(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("INFO:     Started server process [1]\n")
    assert count_requests(log, TABLE) is None
    assert count_requests(tmp_path / "missing.log", TABLE) is None


def test_matcher_strips_query_and_respects_methods() -> None:
    m = RouteMatcher(TABLE)
    assert m.route("GET", "/users/me?x=/users/1") == "GET /users/me"
    assert m.route("POST", "/users/1") is None
    assert m.route("GET", "/users/1/extra") is None
    assert m.route("GET", "/static") == "* /static"
    assert m.route("GET", "/staticx") is None


def test_a_django_function_view_takes_any_method_on_its_path_only() -> None:
    m = RouteMatcher((Route("ANY", "/users/{user_id}/", "main.user", APP, 10, 12, True),))
    assert m.route("GET", "/users/7/") == "ANY /users/{user_id}/"
    assert m.route("POST", "/users/7/") == "ANY /users/{user_id}/"
    assert m.route("GET", "/users/7/orders/") is None  # not a mount: no prefix


def shared_dependency_profile() -> Builder:
    """current_user (used by /orders and /profile) blocks 40 ms; /orders' endpoint 10 ms."""
    b = Builder(routes=ROUTES)
    route = (FASTAPI, *ENDPOINT[:3])
    b.add(1, IDLE, 50)
    b.add(1, request(*route, SOLVE, CURRENT_USER), 4)
    b.add(1, IDLE, 20)
    b.add(1, request(*route, ENDPOINT[3], ORDER), 1)
    b.add(1, IDLE, 10)
    return b


def test_shared_dependency_is_split_by_access_log_requests() -> None:
    # GIVEN /orders served 30 requests, /profile 10, /items 5 (never sampled), /reports none
    profile = shared_dependency_profile().build()
    profile.requests = RequestCounts(
        "access-log",
        (("GET /orders/{order_id}", 30), ("GET /profile", 10), ("GET /items/{item_id}", 5)),
        total=45,
        unmatched=0,
    )
    a = analyze(profile, ONE_EPISODE_IS_ENOUGH, read_line=source_reader(SOURCE))
    # THEN the dependency's 40 ms go 3:1, on top of /orders' own 10 ms
    routes = {r.route: r for r in a.routes}
    assert a.routes_evidence == "access-log"
    assert routes["GET /orders/{order_id}"].loop_ms == pytest.approx(10.0 + 30.0)
    assert routes["GET /orders/{order_id}"].dependency_ms == pytest.approx(30.0)
    assert routes["GET /orders/{order_id}"].blocked_ms == pytest.approx(30.0)
    assert routes["GET /profile"].loop_ms == pytest.approx(10.0)
    assert routes["GET /profile"].samples == 0 and routes["GET /profile"].requests == 10
    # ... every route that served requests appears, the one with none does not
    assert set(routes) == {"GET /orders/{order_id}", "GET /profile", "GET /items/{item_id}"}
    assert routes["GET /items/{item_id}"].loop_ms == 0.0
    (dep,) = [d for d in a.dependencies.dependencies if d.name == "current_user"]
    assert dep.routes == ("GET /orders/{order_id}", "GET /profile")
    assert dep.shares == pytest.approx((0.75, 0.25)) and dep.split_by == "requests"
    data = summary(a)
    assert data["routes_evidence"] == "access-log"
    assert data["routes"][0]["route"] == "GET /orders/{order_id}"
    assert data["routes"][0]["requests"] == 30 and data["routes"][0]["dependency_ms"] == 30.0


def test_a_declared_route_without_requests_leaves_the_dependency_list() -> None:
    profile = shared_dependency_profile().build()
    profile.requests = RequestCounts("access-log", (("GET /profile", 7),), 7, 0)
    a = analyze(profile, ONE_EPISODE_IS_ENOUGH, read_line=source_reader(SOURCE))
    (dep,) = [d for d in a.dependencies.dependencies if d.name == "current_user"]
    assert dep.routes == ("GET /profile",) and dep.shares == (1.0,)
    routes = {r.route: r for r in a.routes}
    assert routes["GET /profile"].loop_ms == pytest.approx(40.0)
    # /orders served nothing by the log but its endpoint was sampled: its own time stays
    assert routes["GET /orders/{order_id}"].loop_ms == pytest.approx(10.0)


def test_without_a_log_endpoint_samples_split_and_unseen_routes_stay_listed() -> None:
    a = analyze(
        shared_dependency_profile().build(), ONE_EPISODE_IS_ENOUGH, read_line=source_reader(SOURCE)
    )
    assert a.routes_evidence == "endpoint-samples"
    (dep,) = [d for d in a.dependencies.dependencies if d.name == "current_user"]
    assert dep.routes == ("GET /orders/{order_id}", "GET /profile")
    assert dep.shares == (1.0, 0.0) and dep.split_by == "endpoint-samples"
    routes = {r.route: r for r in a.routes}
    assert routes["GET /orders/{order_id}"].loop_ms == pytest.approx(50.0)
    assert routes["GET /orders/{order_id}"].requests is None


def test_an_unseen_pair_of_routes_splits_equally() -> None:
    b = Builder(routes=ROUTES)
    b.add(1, IDLE, 10)
    b.add(1, request(FASTAPI, *ENDPOINT[:3], SOLVE, CURRENT_USER), 4)
    b.add(1, IDLE, 10)
    a = analyze(b.build(), ONE_EPISODE_IS_ENOUGH, read_line=source_reader(SOURCE))
    (dep,) = [d for d in a.dependencies.dependencies if d.name == "current_user"]
    assert dep.split_by == "equal" and dep.shares == (0.5, 0.5)
    assert [r.loop_ms for r in a.routes] == pytest.approx([20.0, 20.0])
    assert a.routes[0].dependency_ms == pytest.approx(20.0)


def test_a_dependency_culprit_names_its_routes_by_requests() -> None:
    # GIVEN /profile served most requests and /orders none, by the access log
    profile = shared_dependency_profile().build()
    profile.requests = RequestCounts(
        "access-log", (("GET /profile", 9), ("GET /items/{item_id}", 3)), 12, 0
    )
    a = analyze(profile, ONE_EPISODE_IS_ENOUGH, read_line=source_reader(SOURCE))
    # THEN the culprit in current_user is credited to /profile, never to the route
    # alphabetically first that served nothing
    (culprit,) = [c for c in a.culprits if c.context == "dependency"]
    assert (culprit.route, culprit.routes) == ("GET /profile", ("GET /profile",))


def test_the_reports_say_which_evidence_split_the_dependencies() -> None:
    profile = shared_dependency_profile().build()
    profile.requests = RequestCounts(
        "access-log", (("GET /orders/{order_id}", 30), ("GET /profile", 10)), 40, 0
    )
    a = analyze(profile, ONE_EPISODE_IS_ENOUGH, read_line=source_reader(SOURCE))
    page = render_html(a)
    assert "the requests each route served in the server's access log" in page
    assert '<th class="num">Requests</th>' in page and 'data-split="requests"' in page
    console = Console(record=True, width=200)
    print_summary(a, console)
    text = console.export_text()
    assert "shared dependencies and request overhead split by requests in the access" in text
    assert "GET /orders/{order_id} 75%" in text and "GET /profile 25%" in text
    # ... and without a log, that endpoint samples did
    b = analyze(
        shared_dependency_profile().build(), ONE_EPISODE_IS_ENOUGH, read_line=source_reader(SOURCE)
    )
    assert "the routes' endpoint samples (no access log" in render_html(b)


def test_request_overhead_is_split_by_requests_or_left_unattributed() -> None:
    # GIVEN 20 ms of request-path loop time in the router, no endpoint or dependency on it
    def with_overhead() -> Builder:
        b = shared_dependency_profile()
        b.add(1, request(FASTAPI, *ENDPOINT[:3]), 2)
        b.add(1, IDLE, 10)
        return b

    profile = with_overhead().build()
    profile.requests = RequestCounts(
        "access-log", (("GET /orders/{order_id}", 30), ("GET /profile", 10)), 40, 0
    )
    a = analyze(profile, ONE_EPISODE_IS_ENOUGH, read_line=source_reader(SOURCE))
    # THEN with an access log every request pays its share: 3:1
    routes = {r.route: r for r in a.routes}
    assert routes["GET /orders/{order_id}"].overhead_ms == pytest.approx(15.0)
    assert routes["GET /orders/{order_id}"].loop_ms == pytest.approx(10.0 + 30.0 + 15.0)
    assert routes["GET /profile"].overhead_ms == pytest.approx(5.0)
    assert a.request_overhead_ms == 0.0
    # ... and without one it is no route's: summary.json says how much
    b = analyze(with_overhead().build(), ONE_EPISODE_IS_ENOUGH, read_line=source_reader(SOURCE))
    assert b.request_overhead_ms == pytest.approx(20.0)
    assert all(r.overhead_ms == 0.0 for r in b.routes)
    assert summary(b)["request_overhead_ms"] == 20.0


def test_server_protocol_work_outside_the_asgi_call_is_request_overhead() -> None:
    # GIVEN uvicorn parsing a request (data_received), no ASGI call on its stack
    data_received = Frame(
        "H11Protocol.data_received", f"{SITE}/uvicorn/protocols/http/h11_impl.py", 221
    )
    b = shared_dependency_profile()
    b.add(1, (*LOOP_BASE, RUN_ONCE, HANDLE, data_received), 4)
    b.add(1, IDLE, 10)
    profile = b.build()
    profile.requests = RequestCounts("access-log", (("GET /profile", 1),), 1, 0)
    a = analyze(profile, ONE_EPISODE_IS_ENOUGH, read_line=source_reader(SOURCE))
    # THEN its 40 ms are the requests' overhead
    (profile_route,) = [r for r in a.routes if r.route == "GET /profile"]
    assert profile_route.overhead_ms == pytest.approx(40.0)


def test_request_overhead_never_makes_a_route_blocked() -> None:
    # GIVEN 20 ms of request overhead, 10 ms of it inside a blocking episode of /orders
    endpoints = {"GET /orders/{order_id}": EndpointTime(1, 40.0, 40.0, 0.0)}
    requests = RequestCounts(
        "access-log", (("GET /orders/{order_id}", 1), ("GET /profile", 9)), 10, 0
    )
    costs = route_costs(endpoints, DependencySummary(0.0), requests, RequestOverhead(20.0, 10.0))
    routes = {r.route: r for r in costs.routes}
    # THEN each route pays its requests' share of the overhead as loop time, but none of
    # the blocking: that was the blocking request's, whichever route it served
    assert routes["GET /profile"].overhead_ms == pytest.approx(18.0)
    assert routes["GET /profile"].loop_ms == pytest.approx(18.0)
    assert routes["GET /profile"].blocked_ms == 0.0
    assert routes["GET /orders/{order_id}"].blocked_ms == pytest.approx(40.0)


def test_counts_of_merged_runs_add_up_only_when_every_run_had_a_log() -> None:
    a = RequestCounts("access-log", (("GET /a", 3), ("GET /b", 1)), 5, 1)
    b = RequestCounts("access-log", (("GET /b", 4),), 4, 0)
    merged = RequestCounts.combined([a, b])
    assert merged is not None
    assert merged.by_route == (("GET /b", 5), ("GET /a", 3))
    assert (merged.total, merged.unmatched) == (9, 1)
    assert RequestCounts.combined([a, None]) is None


def test_gil_windows_of_merged_runs_keep_their_threads_apart() -> None:
    merged = GilSamples(windows=1, seconds=1.0, held={(7, 7): {0: 5}})
    merged.add(GilSamples(2, 2.0, {(7, 9): {1: 3}}), pid_map={7: 8199}, stack_map=[4, 6])
    assert (merged.windows, merged.seconds) == (3, 3.0)
    assert merged.held == {(7, 7): {0: 5}, (8199, 9): {6: 3}}
    assert merged.samples == 8


ASYNC_GET = Frame("AsyncSession.get", f"{SITE}/sqlalchemy/ext/asyncio/session.py", 592)
SPAWN = Frame("greenlet_spawn", f"{SITE}/sqlalchemy/util/_concurrency_py3k.py", 201)
# What py-spy reads while the ORM runs in its greenlet: no loop, no task, no route below.
IN_GREENLET = (
    Frame("Session.get", f"{SITE}/sqlalchemy/orm/session.py", 3680),
    Frame("Session._get_impl", f"{SITE}/sqlalchemy/orm/session.py", 3850),
    Frame("load_on_pk_identity", f"{SITE}/sqlalchemy/orm/loading.py", 690),
)


def session_profile() -> Builder:
    """/orders and /items use an AsyncSession (a few samples catch it handing work to its
    greenlet); /profile does not; 60 ms of ORM work ran in the greenlet."""
    b = Builder(routes=ROUTES)
    route = (FASTAPI, *ENDPOINT)
    b.add(1, IDLE, 10)
    b.add(1, request(*route, ORDER, ASYNC_GET, SPAWN), 1)
    b.add(1, IN_GREENLET, 3)
    b.add(1, IDLE, 10)
    b.add(1, request(*route, ITEM, ASYNC_GET, SPAWN), 1)
    b.add(1, IN_GREENLET, 3)
    b.add(1, IDLE, 10)
    b.add(1, request(*route, PROFILE), 2)
    b.add(1, IDLE, 10)
    return b


def test_orm_work_in_greenlets_goes_to_the_routes_using_the_session_by_requests() -> None:
    # GIVEN /orders served 20 requests, /items 10, /profile 30 (it never uses the session)
    profile = session_profile().build()
    profile.requests = RequestCounts(
        "access-log",
        (("GET /orders/{order_id}", 20), ("GET /items/{item_id}", 10), ("GET /profile", 30)),
        total=60,
        unmatched=0,
    )
    a = analyze(profile, ONE_EPISODE_IS_ENOUGH, read_line=source_reader(SOURCE))
    routes = {r.route: r for r in a.routes}
    # THEN the greenlet's 60 ms go 2:1 to the two routes seen using the session
    assert routes["GET /orders/{order_id}"].session_ms == pytest.approx(40.0)
    assert routes["GET /items/{item_id}"].session_ms == pytest.approx(20.0)
    assert routes["GET /orders/{order_id}"].loop_ms == pytest.approx(10.0 + 40.0)
    # ... none to the route that never showed it
    assert routes["GET /profile"].session_ms == 0.0
    assert routes["GET /profile"].loop_ms == pytest.approx(20.0)


def test_without_a_log_orm_work_is_split_by_the_routes_endpoint_samples() -> None:
    b = session_profile()
    b.add(1, request(FASTAPI, *ENDPOINT, ORDER), 2)  # /orders: 3 endpoint samples, /items 1
    a = analyze(b.build(), ONE_EPISODE_IS_ENOUGH, read_line=source_reader(SOURCE))
    routes = {r.route: r for r in a.routes}
    assert routes["GET /orders/{order_id}"].session_ms == pytest.approx(45.0)
    assert routes["GET /items/{item_id}"].session_ms == pytest.approx(15.0)
