"""Tasks an endpoint spawns (`gather`, `create_task`, ...): their stacks show no endpoint,
so the route comes from the endpoint's source (analyze/spawned.py)."""

from __future__ import annotations

import pytest

from asgiprof.analyze import analyze
from asgiprof.analyze.spawned import spawned_names
from asgiprof.model import Frame, Route
from tests.profile_builder import (
    APP,
    HANDLE,
    IDLE,
    LOOP_BASE,
    RUN_ASGI,
    RUN_ENDPOINT,
    RUN_ONCE,
    SITE,
    STDLIB,
    WORKER,
    Builder,
    busy,
    source_reader,
)

CLIENT_GET = Frame("AsyncClient.get", f"{SITE}/httpx/_client.py", 1768)
PARSE = Frame("H11Connection._receive_event", f"{SITE}/httpcore/_async/http11.py", 210)
QUOTE = Frame("quote", APP, 22)  # the gather line
ROUTES = (
    Route("GET", "/quotes/{item_id}", "main.quote", APP, 20, 24, True),
    Route("GET", "/items", "main.items", APP, 30, 33, True),
)
QUOTE_SOURCE = {
    (APP, 20): "async def quote(item_id: int) -> Quote:",
    (APP, 21): "first, second = await asyncio.gather(",
    (APP, 22): 'client.get(f"/quote/{item_id}"), client.get(f"/quote/{item_id + 1}")',
    (APP, 23): ")",
    (APP, 24): "return Quote(first=first.json(), second=second.json())",
    (APP, 30): "async def items() -> list[Item]:",
    (APP, 31): "rows = await db.scalars(select(Item))",
    (APP, 32): "rate = await client.get('/rate')",
    (APP, 33): "return [Item.model_validate(r) for r in rows]",
}


@pytest.mark.parametrize(
    ("code", "names"),
    [
        ("a, b = await asyncio.gather(client.get(u), client.get(v))", {"get"}),
        ("task = asyncio.create_task(refresh(cache, key=k))", {"refresh"}),
        ("tg.start_soon(notify, user.id)", {"notify"}),
        (
            "done, _ = await asyncio.wait([fetch(a), fetch_more(b)], timeout=1)",
            {"fetch", "fetch_more"},
        ),
        ("r = await asyncio.wait_for(client.post(url, json=body), 5)", {"post"}),
        ("r = await client.get(url)", set()),  # awaited in the endpoint's own task
    ],
)
def test_the_calls_an_endpoint_hands_to_a_task(code: str, names: set[str]) -> None:
    assert spawned_names(code) == names


def _fan_out_profile() -> Builder:
    """Each /quotes request: its endpoint's own step, then two spawned client.get tasks;
    /items awaits client.get in its own task (its endpoint is on the stack)."""
    b = Builder(routes=ROUTES)
    for _ in range(20):
        b.add(1, IDLE, 5)
        b.add(1, busy(QUOTE), 1)
        b.add(1, (*LOOP_BASE, RUN_ONCE, HANDLE, CLIENT_GET, PARSE), 2)
        b.add(1, busy(Frame("items", APP, 32), CLIENT_GET, PARSE), 1)
    return b


def test_spawned_tasks_count_for_the_route_whose_endpoint_spawned_them() -> None:
    # GIVEN the endpoint's source, WHEN analysed
    a = analyze(_fan_out_profile().build(), read_line=source_reader(QUOTE_SOURCE))
    routes = {r.route: r for r in a.routes}
    # THEN the spawned tasks' samples are /quotes' loop time (1 + 2 per request)
    assert routes["GET /quotes/{item_id}"].loop_ms == pytest.approx(
        3 * routes["GET /items"].loop_ms
    )
    # ... and without the source nothing says whose they are
    blind = analyze(_fan_out_profile().build())
    routes = {r.route: r for r in blind.routes}
    assert routes["GET /quotes/{item_id}"].loop_ms == pytest.approx(routes["GET /items"].loop_ms)


def test_on_uvloop_the_task_starts_right_above_the_loop_entry() -> None:
    # GIVEN a uvloop server (its loop is C: a task's coroutine sits right above the Python
    # frame that entered the loop), /quotes' spawned client.get tasks among its requests
    entry = (
        Frame("Server.run", f"{SITE}/uvicorn/server.py", 66),
        Frame("asyncio_run", f"{SITE}/uvicorn/_compat.py", 30),
        Frame("Runner.run", f"{STDLIB}/asyncio/runners.py", 118),
    )
    request = (*entry, RUN_ASGI, RUN_ENDPOINT)
    b = Builder(routes=ROUTES)
    for _ in range(20):
        b.add(1, entry, 5)  # idle: nothing above the entry
        b.add(1, (*request, QUOTE), 1)
        b.add(1, (*entry, CLIENT_GET, PARSE), 2)
    a = analyze(b.build(), read_line=source_reader(QUOTE_SOURCE))
    # THEN the tasks are /quotes' time too
    (quotes,) = [r for r in a.routes if r.route == "GET /quotes/{item_id}"]
    assert quotes.loop_ms == pytest.approx(600.0)


def test_a_name_two_endpoints_spawn_is_nobodys() -> None:
    # GIVEN /items spawning client.get too
    source = {**QUOTE_SOURCE, (APP, 32): "rate, = await asyncio.gather(client.get('/rate'))"}
    a = analyze(_fan_out_profile().build(), read_line=source_reader(source))
    routes = {r.route: r for r in a.routes}
    # THEN the spawned tasks go to neither route
    assert routes["GET /quotes/{item_id}"].loop_ms == pytest.approx(routes["GET /items"].loop_ms)


def test_a_background_task_counts_for_the_route_that_added_it() -> None:
    # GIVEN an endpoint that adds an async background task, which blocks 50 ms after the
    # response: its stack is the request's, below Starlette's BackgroundTask, not the
    # endpoint ...
    starlette = f"{SITE}/starlette"
    route = Route("POST", "/users/{user_id}", "main.create_user", APP, 50, 53, True)
    source = {
        (APP, 50): "async def create_user(user_id: int, tasks: BackgroundTasks) -> User:",
        (APP, 51): "tasks.add_task(send_welcome_email, user_id)",
        (APP, 52): "tasks.add_task(archive_signup, user_id)",
        (APP, 53): "return User(id=user_id)",
    }
    task = (
        *LOOP_BASE,
        *(RUN_ONCE, HANDLE, RUN_ASGI),
        Frame("Response.__call__", f"{starlette}/responses.py", 167),
        Frame("BackgroundTasks.__call__", f"{starlette}/background.py", 42),
        Frame("BackgroundTask.__call__", f"{starlette}/background.py", 26),
        Frame("send_welcome_email", APP, 41),
    )
    # ... and a `def` one, which runs in a threadpool worker, 30 ms a request
    archive = (WORKER, Frame("archive_signup", APP, 46))
    b = Builder(routes=(route,))
    for _ in range(10):
        b.add(1, IDLE, 10)
        b.add(1, task, 5)
        b.add(2, archive, 3)
    a = analyze(b.build(), read_line=source_reader(source))
    # THEN its line is that route's culprit, and its time the route's blocked time ...
    (culprit,) = a.culprits
    assert (culprit.line, culprit.route) == (41, "POST /users/{user_id}")
    (cost,) = [r for r in a.routes if r.route == "POST /users/{user_id}"]
    assert cost.blocked_ms == pytest.approx(500.0)
    # ... and the `def` task's worker time its threadpool time
    assert cost.threadpool_ms == pytest.approx(300.0)


def test_background_task_additions_are_spawns() -> None:
    assert spawned_names("background_tasks.add_task(send_email, to=user.email)") == {"send_email"}
    assert spawned_names("task = BackgroundTask(notify, user.id)") == {"notify"}
