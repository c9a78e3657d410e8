"""What each thread is: a server's event-loop thread, a threadpool worker, or something else.

A process can run more than one loop: gunicorn's master runs a control-socket loop in a
thread, and apps start background loops in threads of their own. Per process, the
event-loop threads are the loop threads that serve the app (their stacks pass through an
ASGI server's code); when none shows a server, the loop on the main thread; when there is
none either, every loop thread that is not a known non-serving loop. Other loop threads
are threadpool workers when they run in one, else "other".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Final

from asgiprof.analyze.frames import bare_function
from asgiprof.analyze.loop import LoopClassifier
from asgiprof.analyze.result import ThreadRole
from asgiprof.model import NO_STACK, Frame, Profile, ThreadTimeline

# (path suffix, bare function) of the run loop of threadpool workers that run sync code.
WORKER_FRAMES: Final = frozenset(
    {
        ("anyio/_backends/_asyncio.py", "run"),  # anyio WorkerThread.run (FastAPI/Starlette)
        ("concurrent/futures/thread.py", "_worker"),  # loop.run_in_executor default pool
    }
)
# Packages of ASGI servers. A loop thread with one of them on a stack serves the app: below
# the loop (`uvicorn/server.py` Server.run, `uvicorn/workers.py` UvicornWorker.run,
# `hypercorn/asyncio/run.py`, `granian/server/mp.py`) or above it (`uvicorn/protocols/`,
# `hypercorn/protocol/`, `granian/_futures.py` run each request).
SERVER_PACKAGES: Final = frozenset({"uvicorn", "uvicorn_worker", "hypercorn", "granian", "daphne"})
# (path suffix, bare function) of loops that servers run beside the app's and that never
# serve requests: gunicorn (23+) master's control socket.
BACKGROUND_LOOP_FRAMES: Final = frozenset({("gunicorn/ctl/server.py", "_run_loop")})
_PACKAGE_ROOTS: Final = frozenset({"site-packages", "dist-packages"})


def _matches(frame: Frame, table: frozenset[tuple[str, str]]) -> bool:
    file = frame.file.replace("\\", "/")
    function = bare_function(frame.function)
    return any(file.endswith(suffix) and function == name for suffix, name in table)


def is_worker_entry(frame: Frame) -> bool:
    """The run loop of a threadpool worker (anyio's, or an executor's)."""
    return _matches(frame, WORKER_FRAMES)


def _in_server_package(frame: Frame) -> bool:
    """True for `.../site-packages/uvicorn/server.py`; a venv in `/opt/uvicorn/` is no server."""
    folders = frame.file.replace("\\", "/").split("/")[:-1]
    for i in range(len(folders) - 2, -1, -1):
        if folders[i] in _PACKAGE_ROOTS:
            return folders[i + 1] in SERVER_PACKAGES
    return False


def _frame_ids(test: Iterable[bool]) -> set[int]:
    return {fid for fid, hit in enumerate(test) if hit}


def thread_roles(profile: Profile, classifier: LoopClassifier) -> dict[tuple[int, int], ThreadRole]:
    frames = profile.frames
    workers = _frame_ids(_matches(f, WORKER_FRAMES) for f in frames)
    servers = _frame_ids(_in_server_package(f) for f in frames)
    background = _frame_ids(_matches(f, BACKGROUND_LOOP_FRAMES) for f in frames)

    def on_stacks(stack_ids: set[int], wanted: set[int]) -> bool:
        return bool(wanted) and any(wanted.intersection(profile.stacks[s]) for s in stack_ids)

    stacks_of: dict[tuple[int, int], set[int]] = {}
    loops_by_pid: dict[int, list[ThreadTimeline]] = defaultdict(list)
    for tl in profile.threads:
        key = (tl.thread.pid, tl.thread.tid)
        stacks_of[key] = {s for s in tl.stack if s != NO_STACK}
        if classifier.is_loop_thread(stacks_of[key]):
            loops_by_pid[tl.thread.pid].append(tl)

    serving: set[tuple[int, int]] = set()
    for pid, loops in loops_by_pid.items():
        candidates = [
            (tl.thread.pid, tl.thread.tid)
            for tl in loops
            if not on_stacks(stacks_of[(tl.thread.pid, tl.thread.tid)], background)
        ]
        chosen = [key for key in candidates if on_stacks(stacks_of[key], servers)]
        if not chosen:
            # An unknown server (or one the samples never caught serving): servers run
            # their loop on the main thread, whose OS thread id is the process id.
            chosen = [key for key in candidates if key[1] == pid] or candidates
        serving.update(chosen)

    roles: dict[tuple[int, int], ThreadRole] = {}
    for tl in profile.threads:
        key = (tl.thread.pid, tl.thread.tid)
        if key in serving:
            roles[key] = "event-loop"
        elif on_stacks(stacks_of[key], workers):
            roles[key] = "threadpool"
        else:
            roles[key] = "other"
    return roles


def threads_with_role(
    profile: Profile, roles: dict[tuple[int, int], ThreadRole], role: ThreadRole
) -> list[ThreadTimeline]:
    return [t for t in profile.threads if roles.get((t.thread.pid, t.thread.tid)) == role]
