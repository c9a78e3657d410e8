"""Middleware, dependencies, threadpool and leak diagnostics on hand-built profiles."""

from __future__ import annotations

from dataclasses import replace

import pytest
from rich.console import Console

from asgiprof.analyze import analyze
from asgiprof.analyze.middleware import class_of
from asgiprof.analyze.result import AnalysisParams
from asgiprof.model import Frame, ResourcePoint, Route
from asgiprof.reporters.summary_json import summary
from asgiprof.reporters.terminal import print_summary
from tests.fastapi_frames import (
    APP,
    AUDIT,
    BASE_HTTP_EARLY,
    BOOTSTRAP,
    CALL_NEXT_TASK,
    CURRENT_USER,
    DEPS,
    ENDPOINT,
    EXCEPTIONS,
    FASTAPI,
    HANDLER,
    ITEM,
    LOG,
    MW,
    ORDER,
    OUTER,
    PARAMS,
    REPORT,
    ROUTE_HANDLE,
    ROUTER,
    ROUTES,
    RUN_ENDPOINT,
    SEND,
    SETTINGS,
    SIGN,
    SIGNING,
    SOLVE,
    SOLVE_NESTED,
    TIMING,
    TIMING_SEND,
    read_line,
    task,
)
from tests.profile_builder import (
    IDLE,
    ONE_EPISODE_IS_ENOUGH,
    QUEUE_GET,
    SITE,
    WORKER,
    Builder,
    request,
)


def middleware_profile() -> Builder:
    b = Builder(routes=ROUTES)
    b.add(1, IDLE, 100)
    b.add(1, request(*OUTER, AUDIT), 6)  # blocking dispatch: 60 ms episode
    b.add(1, IDLE, 10)
    b.add(1, request(*OUTER[:-1], SIGN), 1)  # signing: the layer's own helper method
    b.add(1, IDLE, 10)
    b.add(1, request(*OUTER[:-1], SIGNING), 1)  # 20 ms of signing in two requests
    b.add(1, IDLE, 10)
    b.add(1, request(*OUTER[:-1], BASE_HTTP_EARLY), 1)  # stopped before dispatch
    b.add(1, IDLE, 10)
    b.add(1, task(CALL_NEXT_TASK, EXCEPTIONS, *ENDPOINT, ITEM), 1)  # the inner task
    b.add(1, IDLE, 10)
    b.add(1, task(CALL_NEXT_TASK, EXCEPTIONS, *ENDPOINT, ITEM, TIMING_SEND), 1)
    b.add(1, IDLE, 10)
    b.add(1, request(*OUTER[:5]), 1)  # GZip's responder: GZip's own time
    b.add(1, IDLE, 10)
    b.add(1, request(*OUTER[:6], TIMING_SEND, SEND, LOG), 1)  # the access log: the server
    b.add(1, IDLE, 10)
    return b


def test_class_of_reads_qualified_names() -> None:
    assert class_of("GZipMiddleware.__call__") == "GZipMiddleware"
    assert class_of("TimingMiddleware.__call__.<locals>.send_wrapper") == "TimingMiddleware"
    assert class_of("Outer.Inner.dispatch") == "Inner"
    assert class_of("request_response.<locals>.app") is None
    assert class_of("dispatch") is None


def test_middleware_layers_in_order_with_exact_self_time() -> None:
    # GIVEN requests through FastAPI, three library layers, two pure ASGI layers and a
    # BaseHTTPMiddleware whose dispatch blocks
    a = analyze(middleware_profile().build(), read_line=read_line)
    m = a.middleware
    # THEN the layers come outermost first, named by class (the BaseHTTPMiddleware by its
    # dispatch's class), the app objects marked as such
    assert [(layer.name, layer.role, layer.origin) for layer in m.layers] == [
        ("FastAPI", "app", "library"),
        ("Starlette", "app", "library"),
        ("ServerErrorMiddleware", "middleware", "library"),
        ("GZipMiddleware", "middleware", "library"),
        ("TimingMiddleware", "middleware", "user"),
        ("SigningMiddleware", "middleware", "user"),
        ("AuditMiddleware", "middleware", "user"),
        ("ExceptionMiddleware", "middleware", "library"),
    ]
    self_ms = {layer.name: layer.self_ms for layer in m.layers}
    # AuditMiddleware: 60 ms blocking + 10 ms before dispatch + 10 ms in call_next's task
    assert self_ms["AuditMiddleware"] == pytest.approx(70.0)
    assert self_ms["SigningMiddleware"] == pytest.approx(20.0)
    assert self_ms["GZipMiddleware"] == pytest.approx(10.0)
    assert self_ms["TimingMiddleware"] == pytest.approx(10.0)  # its send wrapper
    assert self_ms["ExceptionMiddleware"] == 0.0
    assert m.route_ms == pytest.approx(10.0)
    assert m.server_ms == pytest.approx(10.0)
    assert m.request_ms == pytest.approx(130.0)
    assert m.layers_ms == pytest.approx(110.0)
    audit = next(layer for layer in m.layers if layer.name == "AuditMiddleware")
    assert (audit.function, audit.file, audit.line) == ("AuditMiddleware.dispatch", MW, 61)
    assert audit.blocked_ms == pytest.approx(60.0)
    assert audit.share == pytest.approx(70.0 / 130.0)
    assert sum(layer.share for layer in m.layers) == pytest.approx(110.0 / 130.0)


def test_blocking_in_middleware_is_a_culprit_in_that_layer() -> None:
    params = AnalysisParams(finding_min_samples=1)  # a hand-built profile: 13 samples
    a = analyze(middleware_profile().build(), params, read_line=read_line)
    (culprit,) = a.culprits
    assert (culprit.file, culprit.line, culprit.function) == (MW, 61, "AuditMiddleware.dispatch")
    assert (culprit.context, culprit.context_name) == ("middleware", "AuditMiddleware")
    assert culprit.route is None and culprit.blocked_ms == pytest.approx(60.0)
    (finding,) = [f for f in a.findings if f.kind == "middleware-cost"]
    assert finding.subject == "AuditMiddleware" and finding.severity == "warning"
    assert "AuditMiddleware 54% (70 ms, 60 ms of it blocking)" in finding.detail
    assert "BaseHTTPMiddleware" in finding.advice


def test_a_callable_object_called_by_middleware_is_not_a_layer() -> None:
    # GIVEN a pure ASGI middleware that calls a user callable object (never passes on)
    signer = Frame("Signer.__call__", MW, 80)
    b = Builder(routes=ROUTES)
    b.add(1, IDLE, 10)
    b.add(1, request(FASTAPI, TIMING, signer), 3)
    b.add(1, IDLE, 10)
    b.add(1, request(FASTAPI, TIMING, *ENDPOINT, ITEM), 1)
    a = analyze(b.build())
    # THEN its time is the middleware's own
    assert [layer.name for layer in a.middleware.layers] == ["FastAPI", "TimingMiddleware"]
    assert a.middleware.layers[1].self_ms == pytest.approx(30.0)


def test_django_s_handler_is_the_app_its_middlewares_layers_and_its_views_routes() -> None:
    # GIVEN Django under uvicorn: its ASGIHandler runs the request in a task, through its
    # middleware chain (each called by `convert_exception_to_response`'s `inner`: an
    # old-style one, then a function middleware of the app's that blocks 30 ms), to the
    # router (`_get_response_async`) and a view that blocks 60 ms
    handlers = f"{SITE}/django/core/handlers"
    inner = Frame("convert_exception_to_response.<locals>.inner", f"{handlers}/exception.py", 42)
    chain = (
        Frame("ASGIHandler.__call__", f"{handlers}/asgi.py", 162),
        Frame("ASGIHandler.handle.<locals>.process_request", f"{handlers}/asgi.py", 190),
        Frame("ASGIHandler.run_get_response", f"{handlers}/asgi.py", 248),
        Frame("BaseHandler.get_response_async", f"{handlers}/base.py", 162),
        inner,
        Frame("MiddlewareMixin.__acall__", f"{SITE}/django/utils/deprecation.py", 136),
        inner,
    )
    timing = Frame("timing.<locals>.middleware", APP, 30)
    b = Builder(routes=(Route("ANY", "/users/{user_id}/", "main.user", APP, 10, 13, True),))
    for _ in range(2):
        b.add(1, IDLE, 10)
        b.add(1, request(*chain, timing), 3)
        b.add(1, IDLE, 10)
        view = Frame("BaseHandler._get_response_async", f"{handlers}/base.py", 253)
        b.add(1, request(*chain, replace(timing, line=31), inner, view, Frame("user", APP, 12)), 6)
    a = analyze(b.build(), AnalysisParams(finding_min_samples=1))
    # THEN the handler is the app; its middlewares are layers, named by class or factory ...
    assert [(x.name, x.role) for x in a.middleware.layers] == [
        ("ASGIHandler", "app"),
        ("MiddlewareMixin", "middleware"),
        ("timing", "middleware"),
    ]
    assert a.middleware.route_ms == pytest.approx(120.0)
    # ... the view's line is the route's culprit, the middleware's its layer's
    by_line = {c.line: c for c in a.culprits}
    assert (by_line[12].route, by_line[12].context) == ("ANY /users/{user_id}/", "endpoint")
    assert (by_line[30].context, by_line[30].context_name) == ("middleware", "timing")


def dependency_profile() -> Builder:
    b = Builder(routes=ROUTES)
    route = (FASTAPI, *ENDPOINT[:3])
    b.add(1, IDLE, 50)
    b.add(1, request(*route, SOLVE, CURRENT_USER), 4)  # blocking async dependency: 40 ms
    b.add(1, IDLE, 20)
    b.add(1, request(*route, SOLVE, SOLVE_NESTED, PARAMS), 1)  # FastAPI parsing: solving
    b.add(1, IDLE, 20)
    b.add(1, request(*route, RUN_ENDPOINT, ORDER), 1)
    b.add(1, IDLE, 10)
    # a `def` dependency in a worker thread, then the worker idles
    b.add(2, (BOOTSTRAP, WORKER, SETTINGS), 30)
    b.add(2, (BOOTSTRAP, WORKER, QUEUE_GET), 77)
    return b


def test_blocking_async_dependency_is_a_culprit_of_every_route_using_it() -> None:
    a = analyze(dependency_profile().build(), ONE_EPISODE_IS_ENOUGH, read_line=read_line)
    (culprit,) = a.culprits
    assert (culprit.file, culprit.line) == (DEPS, 12)
    assert (culprit.context, culprit.context_name) == ("dependency", "current_user")
    assert culprit.routes == ("GET /orders/{order_id}", "GET /profile")
    assert culprit.route == "GET /orders/{order_id}"
    assert culprit.blocked_ms == pytest.approx(40.0)
    (finding,) = [f for f in a.findings if f.kind == "blocking-dependency"]
    assert finding.subject == "current_user"
    assert "GET /orders/{order_id}, GET /profile" in finding.detail


def test_dependency_time_on_the_loop_and_in_the_threadpool() -> None:
    a = analyze(dependency_profile().build(), ONE_EPISODE_IS_ENOUGH, read_line=read_line)
    d = a.dependencies
    assert d.solving_ms == pytest.approx(10.0)
    assert [(x.name, x.runs_on, x.file, x.line) for x in d.dependencies] == [
        ("get_settings", "threadpool", DEPS, 22),
        ("current_user", "loop", DEPS, 12),
    ]
    settings, user = d.dependencies
    assert settings.threadpool_ms == pytest.approx(300.0) and settings.loop_ms == 0.0
    assert settings.routes == ("GET /profile",)
    assert user.loop_ms == pytest.approx(40.0) and user.blocked_ms == pytest.approx(40.0)
    assert user.routes == ("GET /orders/{order_id}", "GET /profile")
    # the worker's time is the dependency's, in the threadpool summary too
    (holder,) = a.threadpool.holders
    assert (holder.name, holder.kind) == ("dependency get_settings", "dependency")
    assert holder.busy_ms == pytest.approx(300.0)


def test_without_declarations_an_unknown_worker_function_is_other_work() -> None:
    b = Builder(routes=ROUTES)
    b.add(1, IDLE, 10)
    b.add(2, (BOOTSTRAP, WORKER, SETTINGS), 5)
    a = analyze(b.build())  # no source: no Depends(...) read
    assert a.dependencies.dependencies == ()
    assert [(h.name, h.kind) for h in a.threadpool.holders] == [("other: get_settings", "other")]


def threadpool_profile(workers: int) -> Builder:
    """`workers` anyio workers: each holds GET /reports/slow for 50 samples, the first one
    starts 10 samples late, then all idle."""
    b = Builder(routes=ROUTES)
    b.add(1, IDLE, 100)
    for k in range(workers):
        tid = 10 + k
        if k == 0:
            b.add(tid, (BOOTSTRAP, WORKER, QUEUE_GET), 10)
            b.add(tid, (BOOTSTRAP, WORKER, REPORT), 50)
            b.add(tid, (BOOTSTRAP, WORKER, QUEUE_GET), 40)
        else:
            b.add(tid, (BOOTSTRAP, WORKER, REPORT), 50)
            b.add(tid, (BOOTSTRAP, WORKER, QUEUE_GET), 50)
    return b


def test_threadpool_time_at_the_limit_and_who_held_the_workers() -> None:
    # GIVEN 3 workers, busy together from 0.1 s to 0.5 s; a limit of 3
    params = AnalysisParams(threadpool_limit=3, timeline_bins=10)
    a = analyze(threadpool_profile(3).build(), params)
    t = a.threadpool
    assert (t.limit, t.workers_seen, t.max_busy) == (3, 3, 3)
    assert t.busy_ms == pytest.approx(1500.0)
    assert t.at_limit_ms == pytest.approx(400.0)
    assert t.at_limit_share == pytest.approx(0.4)
    assert t.mean_busy == pytest.approx(1.5)
    (holder,) = t.holders
    assert (holder.name, holder.kind, holder.share) == ("GET /reports/slow", "route", 1.0)
    assert holder.at_limit_ms == pytest.approx(1200.0)  # 3 workers x 0.4 s
    assert [round(x.mean_busy, 6) for x in t.timeline] == [2, 3, 3, 3, 3, 1, 0, 0, 0, 0]
    assert [x.max_busy for x in t.timeline] == [2, 3, 3, 3, 3, 1, 0, 0, 0, 0]
    (finding,) = [f for f in a.findings if f.kind == "threadpool-saturation"]
    assert finding.subject == "GET /reports/slow"
    assert "all 3 worker threads busy 40% of the time" in finding.title


def test_below_the_limit_there_is_no_saturation() -> None:
    a = analyze(threadpool_profile(3).build())  # default limit: 40
    assert a.threadpool.at_limit_ms == 0 and a.threadpool.max_busy == 3
    assert not [f for f in a.findings if f.kind == "threadpool-saturation"]


def resource_profile(fds: list[int], rss_mb: list[float] | None = None) -> Builder:
    b = Builder(routes=ROUTES)
    b.add(1, IDLE, 100)
    for i, n in enumerate(fds):
        rss = int((rss_mb[i] if rss_mb else 50.0) * 1024 * 1024)
        b.profile.resources.points.append(ResourcePoint(float(i), 1, rss, n, 4, 3))
    return b


def test_steady_growth_after_warmup_is_a_possible_leak() -> None:
    # GIVEN 5 s of warm-up (fds 10 -> 200) then +20 fds and +4 MiB a second for 10 s
    fds = [10, 60, 120, 160, 200] + [200 + 20 * i for i in range(11)]
    rss = [40.0] * 5 + [50.0 + 4 * i for i in range(11)]
    a = analyze(resource_profile(fds, rss).build())
    (proc,) = a.resources.processes
    assert proc.t_s == tuple(float(i) for i in range(16)) and proc.fds == tuple(fds)
    growth = {g.metric: g for g in proc.growth}
    assert growth["fds"].leak and growth["rss_bytes"].leak
    assert growth["fds"].points == 11 and growth["fds"].r2 == pytest.approx(1.0)
    assert growth["fds"].slope_per_min == pytest.approx(1200.0)
    assert growth["fds"].start_value == pytest.approx(200.0)
    assert not growth["threads"].leak and not growth["connections"].leak
    leaks = [f for f in a.findings if f.kind == "possible-leak"]
    assert [f.subject for f in leaks] == ["rss_bytes", "fds"]
    assert leaks[1].title == "possible leak: open file descriptors of PID 1 kept growing"
    assert "from 200 to 400 (+1,200/min) in a straight line (r\u00b2=1.00, 11 polls over 10 s" in (
        leaks[1].detail
    )
    assert "no request was seen" in leaks[1].detail  # the warm-up counted from the first poll
    assert "yield" in leaks[1].advice


def _requests_from(b: Builder, start_s: float, end_s: float) -> None:
    """Loop thread: idle until `start_s`, then requests (busy on the request path) to `end_s`."""
    b.add(2, IDLE, int(start_s * 100))
    for _ in range(int((end_s - start_s) * 10)):
        b.add(2, request(FASTAPI, ROUTER, ROUTE_HANDLE, HANDLER, RUN_ENDPOINT, ITEM), 2)
        b.add(2, IDLE, 8)


def test_the_warmup_starts_at_the_first_request_and_a_warmup_only_run_is_no_leak() -> None:
    # GIVEN a server idle for 6 s, then under load from 6 s: its caches fill for ~5 s (fds and
    # RSS grow by a lot) and stay flat to the end at 16 s
    fds = [10] * 6 + [10 + 40 * i for i in range(6)] + [210] * 5
    rss = [40.0] * 6 + [40.0 + 6 * i for i in range(6)] + [70.0] * 5
    # (the level-off rule is off here: this is about where the warm-up starts)
    params = AnalysisParams(leak_min_late_slope=0.0, leak_min_trend_s=4.0)
    for rule in (params, AnalysisParams()):
        b = resource_profile(fds, rss)
        _requests_from(b, 6.0, 16.0)
        a = analyze(b.build(), rule)
        # THEN the warm-up counts from the first request, not the first poll ...
        assert a.resources.first_request_s == pytest.approx(6.0, abs=0.01)
        # ... and the load's warm-up is no leak
        assert not [f for f in a.findings if f.kind == "possible-leak"]
        assert not any(g.leak for g in a.resources.processes[0].growth)
    # Control: counted from the first poll (the old rule), the same polls read as a leak.
    control = analyze(resource_profile(fds, rss).build(), params)
    assert [f.subject for f in control.findings if f.kind == "possible-leak"]


def test_a_trend_needs_time_and_must_not_level_off() -> None:
    params = AnalysisParams()
    # Steady growth for 5 s after the warm-up: too short to call a trend.
    short = [10] * 5 + [10 + 30 * i for i in range(6)]
    a = analyze(resource_profile(short).build(), params)
    fd = next(g for g in a.resources.processes[0].growth if g.metric == "fds")
    assert not fd.leak and fd.not_leak is not None and "too short" in fd.not_leak
    # 12 s of growth that levels off: +40 a second, then +4.
    levelling = [10] * 5 + [10 + 40 * i for i in range(7)] + [250 + 4 * i for i in range(1, 7)]
    a = analyze(resource_profile(levelling).build(), params)
    fd = next(g for g in a.resources.processes[0].growth if g.metric == "fds")
    assert fd.r2 >= params.leak_min_r2  # a straight-enough line ...
    assert not fd.leak and fd.not_leak is not None and "levels off" in fd.not_leak


def test_polls_after_the_process_exited_are_left_out() -> None:
    fds = [20] * 12
    b = resource_profile(fds)
    b.profile.resources.points.append(ResourcePoint(12.0, 1, 0, -1, 0, -1))
    a = analyze(b.build())
    (proc,) = a.resources.processes
    assert len(proc.t_s) == 12 and min(proc.rss_bytes) > 0


def test_startup_growth_and_flat_series_are_not_leaks() -> None:
    # growth only during the 5 s warm-up, then flat with noise
    fds = [10, 60, 120, 160, 200] + [200, 201, 199, 200, 202, 200, 199, 201, 200, 200, 201]
    a = analyze(resource_profile(fds).build())
    assert not any(g.leak for g in a.resources.processes[0].growth)
    assert not [f for f in a.findings if f.kind == "possible-leak"]


def test_small_steady_growth_is_below_the_absolute_minimum() -> None:
    fds = [20] * 5 + [20 + i for i in range(8)]  # +7 fds: steady, but under 10
    a = analyze(resource_profile(fds).build())
    fd = next(g for g in a.resources.processes[0].growth if g.metric == "fds")
    assert fd.r2 == pytest.approx(1.0) and not fd.leak


def test_connections_per_remote_port() -> None:
    from asgiprof.model import ConnectionSeries

    b = resource_profile([10] * 16)
    t = tuple(float(i) for i in range(16))
    pg = [2] * 5 + [2 + 3 * i for i in range(11)]
    series = ConnectionSeries(
        1, t, tuple(pg), tuple({5432: n, 6379: 1} for n in pg), tuple({} for _ in t)
    )
    profile = b.build()
    profile.resources.connections = {1: series}
    a = analyze(profile)
    (proc,) = a.resources.processes
    assert proc.remote_ports == ((5432, tuple(pg)), (6379, (1,) * 16))
    growth = {g.metric: g for g in proc.growth}
    assert growth["port:5432"].leak and not growth["port:6379"].leak
    (finding,) = [f for f in a.findings if f.kind == "possible-leak"]
    assert finding.title == "possible leak: connections to remote port 5432 of PID 1 kept growing"


def test_culprit_lists_the_library_calls_it_made() -> None:
    execute = Frame("Session.execute", f"{SITE}/sqlalchemy/orm/session.py", 2351)
    do_execute = Frame("DefaultDialect.do_execute", f"{SITE}/sqlalchemy/engine/default.py", 951)
    b = Builder(routes=ROUTES)
    b.add(1, IDLE, 10)
    b.add(1, request(FASTAPI, *ENDPOINT, ITEM, execute, do_execute), 5)
    a = analyze(
        b.build(),
        AnalysisParams(one_off_factor=0),  # one short episode is enough here
        read_line=lambda f, n: "rows = session.execute(query).all()",
    )
    (c,) = a.culprits
    assert c.context == "endpoint" and c.route == "GET /items/{item_id}"
    assert c.calls == (
        f"Session.execute ({SITE}/sqlalchemy/orm/session.py:2351)",
        f"DefaultDialect.do_execute ({SITE}/sqlalchemy/engine/default.py:951)",
    )
    assert c.advice is not None and "AsyncSession" in c.advice and "asyncpg" in c.advice


def test_summary_json_and_terminal_carry_every_section() -> None:
    b = middleware_profile()
    a = analyze(b.build(), AnalysisParams(threadpool_limit=1), read_line=read_line)
    data = summary(a)
    # schema 1 keys stay; new ones are added
    assert {"schema", "target", "sampling", "event_loop", "culprits", "routes"} <= set(data)
    assert {"middleware", "dependencies", "threadpool", "resources", "findings"} <= set(data)
    assert data["culprits"][0]["context"] == "middleware"
    assert data["culprits"][0]["context_name"] == "AuditMiddleware"
    assert [x["name"] for x in data["middleware"]["layers"]][-2:] == [
        "AuditMiddleware",
        "ExceptionMiddleware",
    ]
    assert data["findings"][0]["kind"] == "middleware-cost"
    console = Console(width=120, record=True, color_system=None)
    print_summary(a, console)
    out = console.export_text()
    assert "middleware AuditMiddleware" in out
    assert "Middleware: own time per layer" in out
    assert "middleware takes 85% of request time on the event loop" in out
