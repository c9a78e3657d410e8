"""The analysis on hand-built profiles: exact times, no processes."""

from __future__ import annotations

import pytest

from asgiprof.analyze import analyze
from asgiprof.analyze.processes import process_summaries
from asgiprof.analyze.result import AnalysisParams
from asgiprof.model import Frame, Route
from tests.profile_builder import (
    APP,
    IDLE,
    ONE_EPISODE_IS_ENOUGH,
    QUEUE_GET,
    RUNNER,
    SITE,
    WORKER,
    Builder,
    busy,
    request,
)

BLOCK = Frame("get_user", APP, 12)
HEALTHY = Frame("healthy", APP, 20)
SYNC = Frame("sync_route", APP, 30)
ROUTES = (
    Route("GET", "/users/{user_id}", "main.get_user", APP, 10, 14, True),
    Route("GET", "/healthy", "main.healthy", APP, 18, 22, True),
    Route("GET", "/sync", "main.sync_route", APP, 28, 32, False),
)


def source(file: str, line: int) -> str | None:
    return {12: "time.sleep(0.1)", 20: "await asyncio.sleep(0.1)"}.get(line)


def test_blocking_line_is_the_culprit_with_route_and_exact_time() -> None:
    # GIVEN a loop that idles, blocks 10 samples (100 ms) in get_user, 3 times
    b = Builder(routes=ROUTES)
    for _ in range(3):
        b.add(1, IDLE, 20)
        b.add(1, busy(BLOCK), 10)
    b.add(1, IDLE, 5)
    # WHEN analysed
    a = analyze(b.build(), read_line=source)
    # THEN one culprit, on the sleeping line, under its route, 300 ms in 3 episodes
    assert [(c.file, c.line, c.route) for c in a.culprits] == [(APP, 12, "GET /users/{user_id}")]
    c = a.culprits[0]
    assert c.blocked_ms == pytest.approx(300.0)
    assert c.episodes == 3 and c.max_ms == pytest.approx(100.0)
    assert c.code == "time.sleep(0.1)" and c.advice is not None and "asyncio.sleep" in c.advice
    assert c.kind == "io"  # no CPU measurements: the catalogue's kind
    assert a.loop.blocked_ms == pytest.approx(300.0)
    assert a.loop.idle_ms == pytest.approx(650.0)
    assert a.loop.utilization == pytest.approx(300 / 950)
    assert a.loop.longest_block_ms == pytest.approx(100.0)
    assert a.thread_roles == {(1, 1): "event-loop"}


def test_short_stretches_are_busy_not_blocked() -> None:
    b = Builder(routes=ROUTES)
    for _ in range(50):
        b.add(1, IDLE, 3)
        b.add(1, busy(HEALTHY), 1)  # 10 ms: below the 20 ms threshold
    a = analyze(b.build())
    assert a.culprits == []
    assert a.loop.episodes == 0 and a.loop.blocked_ms == 0
    assert a.loop.busy_ms == pytest.approx(500.0)
    assert [r.route for r in a.routes] == ["GET /healthy"]
    assert a.routes[0].loop_ms == pytest.approx(500.0)


def test_threshold_is_a_parameter() -> None:
    # GIVEN one 20 ms stretch (two samples: one sample alone shows no stickiness)
    b = Builder(routes=ROUTES)
    b.add(1, IDLE, 30)
    b.add(1, busy(HEALTHY), 2)
    b.add(1, IDLE, 30)
    # THEN it is a culprit under a 15 ms threshold and not under a 25 ms one
    a = analyze(b.build(), AnalysisParams(block_threshold_ms=15, one_off_factor=0))
    assert [c.line for c in a.culprits] == [20]
    a = analyze(b.build(), AnalysisParams(block_threshold_ms=25, one_off_factor=0))
    assert a.culprits == []


def test_a_stray_user_sample_in_a_framework_stretch_is_not_a_culprit() -> None:
    b = Builder(routes=ROUTES)
    b.add(1, IDLE, 3)
    b.add(1, busy(Frame("serialize", f"{SITE}/fastapi/encoders.py", 5)), 4)
    b.add(1, busy(HEALTHY), 1)
    b.add(1, IDLE, 3)
    a = analyze(b.build())
    assert a.loop.episodes == 1 and a.culprits == []
    assert any("no single line of your code" in n for n in a.notes)


def test_threadpool_time_is_not_loop_blocking() -> None:
    b = Builder(routes=ROUTES)
    b.add(1, IDLE, 100)
    b.add(
        2, (Frame("Thread._bootstrap", "/usr/lib/python3.11/threading.py", 1002), WORKER, SYNC), 60
    )
    b.add(
        2,
        (Frame("Thread._bootstrap", "/usr/lib/python3.11/threading.py", 1002), WORKER, QUEUE_GET),
        40,
    )
    a = analyze(b.build())
    assert a.culprits == [] and a.loop.blocked_ms == 0
    assert a.thread_roles[(1, 2)] == "threadpool"
    (sync,) = [r for r in a.routes if r.route == "GET /sync"]
    assert sync.threadpool_ms == pytest.approx(600.0) and sync.loop_ms == 0


def test_uvloop_idle_shows_no_frame_above_the_entry() -> None:
    b = Builder(routes=ROUTES)
    uv_idle = (RUNNER,)
    uv_busy = (RUNNER, Frame("RequestResponseCycle.run_asgi", f"{SITE}/uvicorn/x.py", 1), BLOCK)
    b.add(1, uv_idle, 10)
    b.add(1, uv_busy, 5)
    b.add(1, uv_idle, 10)
    a = analyze(b.build(), ONE_EPISODE_IS_ENOUGH)
    assert a.loop.idle_ms == pytest.approx(200.0)
    assert [c.line for c in a.culprits] == [12]
    assert a.culprits[0].blocked_ms == pytest.approx(50.0)


def test_views_and_timeline_cover_the_loop() -> None:
    b = Builder(routes=ROUTES)
    b.add(1, IDLE, 10)
    b.add(1, busy(BLOCK), 10)
    a = analyze(b.build(), AnalysisParams(timeline_bins=2))
    assert sum(a.views["all"].values()) == pytest.approx(200.0)
    assert sum(a.views["blocking"].values()) == pytest.approx(100.0)
    assert sum(a.views["route:GET /users/{user_id}"].values()) == pytest.approx(100.0)
    first, second = a.timeline
    assert first.idle_ms == pytest.approx(100.0) and first.blocked_ms == 0
    assert second.idle_ms == 0 and second.blocked_ms == pytest.approx(100.0)


def test_without_route_table_routes_fall_back_to_function_names() -> None:
    b = Builder()
    b.add(1, IDLE, 3)
    b.add(1, busy(BLOCK), 5)
    a = analyze(b.build(), ONE_EPISODE_IS_ENOUGH)
    assert a.culprits[0].route == "get_user"
    assert any("route table not read" in n for n in a.notes)


def test_back_to_back_requests_of_different_routes_are_separate_episodes() -> None:
    # GIVEN a saturated loop: one route's blocking call follows another's, no idle between
    other = Frame("report", APP, 40)
    routes = (*ROUTES, Route("GET", "/report", "main.report", APP, 38, 42, True))
    b = Builder(routes=routes)
    b.add(1, IDLE, 3)
    b.add(1, busy(BLOCK), 10)
    b.add(1, busy(other), 5)
    b.add(1, IDLE, 3)
    a = analyze(b.build(), ONE_EPISODE_IS_ENOUGH)
    # THEN two episodes, each with its own culprit and route
    assert [e.route for e in a.episodes] == ["GET /users/{user_id}", "GET /report"]
    assert [e.duration_ms for e in a.episodes] == [pytest.approx(100.0), pytest.approx(50.0)]
    assert [c.line for c in a.culprits] == [12, 40]


def test_a_framework_sample_between_two_requests_splits_them() -> None:
    b = Builder(routes=ROUTES)
    b.add(1, IDLE, 3)
    b.add(1, busy(BLOCK), 10)
    b.add(1, busy(), 1)  # sending the response: no user frame
    b.add(1, busy(BLOCK), 10)
    b.add(1, IDLE, 3)
    a = analyze(b.build())
    assert [c.episodes for c in a.culprits] == [2]
    # the framework sample is the next request's, not the blocking line's time
    assert a.culprits[0].max_ms == pytest.approx(100.0)
    assert a.culprits[0].blocked_ms == pytest.approx(200.0)


def test_timeline_bins_take_exactly_their_share() -> None:
    b = Builder(routes=ROUTES)
    for _ in range(7):
        b.add(1, IDLE, 3)  # 30 ms runs straddling 0.07 s bins
    a = analyze(b.build(), AnalysisParams(timeline_bins=3))
    assert [round(x.idle_ms, 6) for x in a.timeline] == [70.0, 70.0, 70.0]


def test_console_scripts_are_not_user_code() -> None:
    from asgiprof.analyze.frames import file_kind

    assert file_kind("/srv/app/.venv/bin/uvicorn") == "library"
    assert file_kind("/srv/app/main.py") == "user"
    assert file_kind("/usr/lib/python3.11/asyncio/events.py") == "stdlib"
    assert file_kind("/venv/lib/python3.11/site-packages/fastapi/routing.py") == "library"


def test_the_users_main_below_the_loop_is_never_the_culprit() -> None:
    main = Frame("main", APP, 99)
    b = Builder(routes=ROUTES)
    b.add(1, (main, *IDLE), 3)
    b.add(1, (main, *busy(Frame("slow_lib", f"{SITE}/lib/x.py", 1))), 5)
    b.add(1, (main, *IDLE), 3)
    a = analyze(b.build())
    assert a.loop.episodes == 1 and a.culprits == []


def test_a_single_short_stall_is_a_note_not_a_culprit() -> None:
    b = Builder(routes=ROUTES)
    b.add(1, IDLE, 10)
    b.add(1, busy(HEALTHY), 3)  # 30 ms once: below 3 x 20 ms
    b.add(1, IDLE, 10)
    b.add(1, busy(BLOCK), 7)  # 70 ms once: long enough to rank
    b.add(1, IDLE, 10)
    a = analyze(b.build())
    assert [c.line for c in a.culprits] == [12]
    assert any("blocked the loop only once" in n for n in a.notes)
    assert a.loop.episodes == 2


def test_a_worker_importing_the_app_in_its_loop_is_startup_not_a_culprit() -> None:
    bootstrap = Frame("_call_with_frames_removed", "<frozen importlib._bootstrap>", 241)
    module = Frame("<module>", APP, 3)
    b = Builder(routes=ROUTES)
    b.add(1, IDLE, 3)
    b.add(1, busy(bootstrap, module), 30)
    b.add(1, IDLE, 3)
    a = analyze(b.build())
    assert a.loop.episodes == 1 and a.culprits == []


def test_a_saturated_loop_of_short_framework_callbacks_is_busy_not_blocked() -> None:
    # GIVEN back-to-back requests: every sample in another framework frame, no idle
    frames = [Frame(f"step{i}", f"{SITE}/starlette/x.py", i) for i in range(6)]
    b = Builder(routes=ROUTES)
    b.add(1, IDLE, 3)
    for f in frames:
        b.add(1, busy(f), 1)
    b.add(1, IDLE, 3)
    a = analyze(b.build())
    assert a.loop.episodes == 0 and a.loop.blocked_ms == 0
    assert a.loop.busy_ms == pytest.approx(60.0)
    assert any("saturated" in n for n in a.notes)


def test_a_blocking_library_call_without_user_code_is_still_an_episode() -> None:
    b = Builder(routes=ROUTES)
    b.add(1, IDLE, 3)
    b.add(1, busy(Frame("slow_auth", f"{SITE}/authlib/x.py", 9)), 6)
    b.add(1, IDLE, 3)
    a = analyze(b.build())
    assert a.loop.episodes == 1 and a.loop.blocked_ms == pytest.approx(60.0)


def test_a_line_whose_call_blocks_in_a_helper_and_then_itself_is_one_culprit() -> None:
    # GIVEN one synchronous stretch at line 12: 30 ms inside a helper it calls, then 50 ms
    helper = Frame("check_token", APP, 5)
    b = Builder(routes=ROUTES)
    for _ in range(2):
        b.add(1, IDLE, 5)
        b.add(1, busy(BLOCK, helper), 3)
        b.add(1, busy(BLOCK), 5)
    b.add(1, IDLE, 5)
    a = analyze(b.build())
    # THEN the line that stays put holds the whole 80 ms, the helper is among its calls
    assert a.loop.episodes == 2
    assert [(c.line, c.episodes) for c in a.culprits] == [(12, 2)]
    assert [c.blocked_ms for c in a.culprits] == [pytest.approx(160.0)]
    assert [c.route for c in a.culprits] == ["GET /users/{user_id}"]
    # ... and the per-process split credits it the same way
    (proc,) = process_summaries(a)
    assert [(c.line, c.episodes) for c in proc.culprits] == [(12, 2)]
    assert [c.blocked_ms for c in proc.culprits] == pytest.approx([160.0])


def test_bin_overlaps_never_overfill_a_bin_at_float_edges() -> None:
    from asgiprof.analyze.timeline import overlaps

    width, bins = 0.07, 100
    got = [(b, s) for b, s in overlaps(0.21, 6.93, width, bins) if s > 1e-9]
    assert all(seconds <= width + 1e-12 for _, seconds in got)
    assert sum(seconds for _, seconds in got) == pytest.approx(6.72)
    assert [b for b, _ in got] == list(range(3, 99))


def test_a_line_blocking_before_routing_does_not_borrow_the_next_requests_route() -> None:
    # GIVEN a middleware (no endpoint frame yet) blocking, merged with the request it runs
    mw = Frame("AuditMiddleware.__call__", f"{APP[:-7]}mw.py", 20)
    b = Builder(routes=ROUTES)
    for _ in range(2):
        b.add(1, IDLE, 5)
        b.add(1, (*busy()[:-1], mw), 6)  # same callback as the request, before its endpoint
        b.add(1, busy(BLOCK), 3)
    b.add(1, IDLE, 5)
    a = analyze(b.build())
    by_line = {c.line: c.route for c in a.culprits}
    assert by_line[20] is None and by_line[12] == "GET /users/{user_id}"


def test_a_middlewares_pass_through_line_is_not_blamed_for_framework_work() -> None:
    # GIVEN a pure ASGI middleware whose `await self.app(...)` leads into the framework and
    # on to the endpoint, and long framework-only stretches under that line (writing the
    # response while threads hold the GIL)
    mw = Frame("AuditMiddleware.__call__", f"{APP[:-7]}mw.py", 40)
    router = Frame("Router.__call__", f"{SITE}/starlette/routing.py", 715)
    render = Frame("JSONResponse.render", f"{SITE}/starlette/responses.py", 180)
    mw_base = (*busy()[:-2], mw, router)  # the middleware runs before the endpoint frames
    b = Builder(routes=ROUTES)
    for _ in range(4):
        b.add(1, IDLE, 5)
        b.add(1, (*mw_base, *busy(HEALTHY)[len(busy()) - 2 :]), 1)
        b.add(1, (*mw_base, render), 5)
    b.add(1, IDLE, 5)
    # WHEN analysed
    a = analyze(b.build(), params=ONE_EPISODE_IS_ENOUGH)
    # THEN the middleware line is no culprit; the stalls are noted as framework time
    assert a.culprits == []
    assert any("no single line of your code" in n for n in a.notes)


def test_a_line_that_blocks_under_a_middleware_is_still_the_culprit() -> None:
    # GIVEN the same middleware, and an endpoint line blocking under it
    mw = Frame("AuditMiddleware.__call__", f"{APP[:-7]}mw.py", 40)
    router = Frame("Router.__call__", f"{SITE}/starlette/routing.py", 715)
    mw_base = (*busy()[:-2], mw, router)
    b = Builder(routes=ROUTES)
    for _ in range(3):
        b.add(1, IDLE, 5)
        b.add(1, (*mw_base, *busy(BLOCK)[len(busy()) - 2 :]), 6)
    b.add(1, IDLE, 5)
    # WHEN analysed
    a = analyze(b.build(), params=ONE_EPISODE_IS_ENOUGH)
    # THEN the endpoint's line is the culprit, with all of its time
    assert [c.line for c in a.culprits] == [12]
    assert a.culprits[0].blocked_ms == pytest.approx(180.0)


def test_a_pass_through_into_a_framework_app_is_known_without_endpoint_samples() -> None:
    # GIVEN framework-only stretches under a middleware's `await self.app(...)` into
    # Starlette's ExceptionMiddleware, and no endpoint ever sampled (they are all fast)
    mw = Frame("AuditMiddleware.__call__", f"{APP[:-7]}mw.py", 40)
    inner = Frame("ExceptionMiddleware.__call__", f"{SITE}/starlette/middleware/exceptions.py", 62)
    render = Frame("JSONResponse.render", f"{SITE}/starlette/responses.py", 180)
    b = Builder(routes=ROUTES)
    for _ in range(4):
        b.add(1, IDLE, 5)
        b.add(1, (*busy()[:-2], mw, inner, render), 5)
    b.add(1, IDLE, 5)
    # WHEN analysed
    a = analyze(b.build(), params=ONE_EPISODE_IS_ENOUGH)
    # THEN the middleware line is still no culprit
    assert a.culprits == []


def test_a_user_line_calling_a_callable_object_of_a_library_can_be_the_culprit() -> None:
    # GIVEN an endpoint line calling a (non-web-framework) library object's __call__ that
    # computes for 60 ms, e.g. a model's inference
    infer = Frame("Module._call_impl", f"{SITE}/torch/nn/modules/module.py", 1527)
    call = Frame("Module.__call__", f"{SITE}/torch/nn/modules/module.py", 1518)
    b = Builder(routes=ROUTES)
    for _ in range(3):
        b.add(1, IDLE, 5)
        b.add(1, busy(BLOCK, call, infer), 6)
    b.add(1, IDLE, 5)
    # WHEN analysed THEN that line is the culprit
    a = analyze(b.build(), params=ONE_EPISODE_IS_ENOUGH)
    assert [c.line for c in a.culprits] == [12]


def test_framework_work_queued_behind_a_block_is_not_the_blocking_lines_time() -> None:
    # GIVEN a 60 ms block followed, with no idle sample, by 40 ms of framework-only work
    # (the requests that queued behind it being parsed and routed, slowed by threads)
    router = Frame("Router.__call__", f"{SITE}/starlette/routing.py", 715)
    b = Builder(routes=ROUTES)
    for _ in range(3):
        b.add(1, IDLE, 5)
        b.add(1, busy(BLOCK), 6)
        b.add(1, (*busy()[:-1], router), 4)  # the next request's task, routing
    b.add(1, IDLE, 5)
    # WHEN analysed
    a = analyze(b.build(), params=ONE_EPISODE_IS_ENOUGH)
    # THEN the line is credited its own 3 x 60 ms, the framework tail is its own stall
    assert [c.line for c in a.culprits] == [12]
    assert a.culprits[0].blocked_ms == pytest.approx(180.0)
    assert a.loop.blocked_ms == pytest.approx(300.0)


def test_a_culprits_stretches_sampled_under_the_threshold_count_as_its_blocked_time() -> None:
    # GIVEN a line blocking 3 times with 3 samples, and twice caught by 1 sample only (a
    # 30 ms block at 100 Hz gets 0 or 1 sample a fifth of the time), and another line with
    # only 1-sample stretches
    b = Builder(routes=ROUTES)
    for samples in (3, 1, 3, 1, 3):
        b.add(1, IDLE, 5)
        b.add(1, busy(BLOCK), samples)
        b.add(1, IDLE, 5)
        b.add(1, busy(HEALTHY), 1)
    b.add(1, IDLE, 5)
    # WHEN analysed
    a = analyze(b.build())
    # THEN the culprit has all 11 samples of its line, in 5 episodes, its longest unchanged;
    # the line that never reached the threshold is no culprit and its time is busy
    assert [c.line for c in a.culprits] == [12]
    c = a.culprits[0]
    assert c.blocked_ms == pytest.approx(110.0)
    assert c.episodes == 5 and c.max_ms == pytest.approx(30.0)
    assert a.loop.blocked_ms == pytest.approx(110.0)
    assert a.loop.busy_ms == pytest.approx(160.0)


def test_a_worker_importing_the_app_at_an_endpoints_decorator_line_is_startup() -> None:
    # GIVEN a worker whose loop imports the app, sampled while the module's code runs the
    # route decorator on the endpoint's first line (inside the endpoint's line span)
    importer = Frame("_call_with_frames_removed", "<frozen importlib._bootstrap>", 241)
    module = Frame("<module>", APP, 10)
    decorator = Frame("APIRouter.api_route.<locals>.decorator", f"{SITE}/fastapi/routing.py", 3284)
    b = Builder(routes=ROUTES)
    b.add(1, IDLE, 5)
    b.add(1, (*busy()[:-2], importer, module, decorator), 9)
    b.add(1, IDLE, 5)
    # WHEN analysed THEN no route is read into it and nothing is a culprit
    a = analyze(b.build())
    assert a.culprits == [] and a.routes == []


def test_the_coverage_note_is_not_given_for_an_idle_server() -> None:
    from asgiprof.model import COVERAGE_NOTE

    note = f"{COVERAGE_NOTE}400 of the 500 instants asked for (80%): it fell 1.0 s behind"
    idle = Builder()
    idle.add(1, IDLE, 400)
    profile = idle.build()
    profile.problems.append(note)
    a = analyze(profile)
    assert a.traffic.level == "none" and note not in a.notes
    # Control: the same note on a server that was serving stays.
    serving = Builder(routes=ROUTES)
    serving.add(1, IDLE, 200)
    serving.add(1, busy(HEALTHY), 200)
    profile = serving.build()
    profile.problems.append(note)
    assert note in analyze(profile).notes


def test_one_stray_sample_on_the_request_path_is_not_traffic() -> None:
    # An idle server whose loop was seen once inside the ASGI app (its lifespan task, a
    # connection opened and closed) served no request; three such samples may have.
    app_call = Frame("FastAPI.__call__", f"{SITE}/fastapi/applications.py", 1054)
    levels = {}
    for stray in (1, 3):
        b = Builder(routes=ROUTES)
        b.add(1, IDLE, 200)
        b.add(1, request(app_call), stray)
        b.add(1, IDLE, 200)
        levels[stray] = analyze(b.build()).traffic.level
    assert levels == {1: "none", 3: "low"}
