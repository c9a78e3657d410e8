"""What each thread is: an event-loop thread, a threadpool worker, or something else."""

from __future__ import annotations

from typing import Final

from asgiprof.analyze.frames import bare_function
from asgiprof.analyze.loop import LoopClassifier
from asgiprof.analyze.result import ThreadRole
from asgiprof.model import NO_STACK, Profile, ThreadTimeline

# (path suffix, bare function) of the run loop of threadpool workers that run sync code.
WORKER_FRAMES: Final = frozenset(
    {
        ("anyio/_backends/_asyncio.py", "run"),  # anyio WorkerThread.run (FastAPI/Starlette)
        ("concurrent/futures/thread.py", "_worker"),  # loop.run_in_executor default pool
    }
)


def thread_roles(profile: Profile, classifier: LoopClassifier) -> dict[tuple[int, int], ThreadRole]:
    workers = {
        fid
        for fid, f in enumerate(profile.frames)
        if any(
            f.file.replace("\\", "/").endswith(sfx) and bare_function(f.function) == fn
            for sfx, fn in WORKER_FRAMES
        )
    }
    roles: dict[tuple[int, int], ThreadRole] = {}
    for tl in profile.threads:
        stack_ids = {s for s in tl.stack if s != NO_STACK}
        key = (tl.thread.pid, tl.thread.tid)
        if classifier.is_loop_thread(stack_ids):
            roles[key] = "event-loop"
        elif any(workers.intersection(profile.stacks[s]) for s in stack_ids):
            roles[key] = "threadpool"
        else:
            roles[key] = "other"
    return roles


def threads_with_role(
    profile: Profile, roles: dict[tuple[int, int], ThreadRole], role: ThreadRole
) -> list[ThreadTimeline]:
    return [t for t in profile.threads if roles.get((t.thread.pid, t.thread.tid)) == role]
