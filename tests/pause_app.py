"""A server that measures how long it is held stopped: a thread that never sleeps reads
its own scheduler times every 20 ms; time neither run nor waited for a CPU is time it was
stopped (by py-spy's ptrace). 20 idle pool threads make each sample read many frames."""

import hashlib
import os
import queue
import threading
import time

from fastapi import FastAPI

THREADS = int(os.environ.get("PAUSE_APP_THREADS", "20"))
marks: list[tuple[float, int, int]] = []  # (wall s, ran ns, waited for a CPU ns)


def idle(n: int, q: queue.Queue[int]) -> None:
    if n:
        idle(n - 1, q)
    else:
        q.get()


def clock() -> None:
    path = f"/proc/self/task/{threading.get_native_id()}/schedstat"
    next_mark = 0.0
    block = bytes(1 << 16)
    while True:
        # hashlib lets go of the GIL for inputs this size: the thread seldom waits for it,
        # so what it does not run or wait a CPU for is time it was held stopped.
        hashlib.sha256(block).digest()
        now = time.time()
        if now >= next_mark:
            with open(path, "rb") as f:
                ran, waited = (int(x) for x in f.read().split()[:2])
            marks.append((now, ran, waited))
            del marks[:-30000]
            next_mark = now + 0.02


pools: list[queue.Queue[int]] = [queue.Queue() for _ in range(THREADS)]
for q in pools:
    threading.Thread(target=idle, args=(5, q), daemon=True).start()
threading.Thread(target=clock, daemon=True).start()

app = FastAPI()


@app.get("/")
async def root() -> dict[str, int]:
    return {"ok": 1}


@app.get("/stopped")
async def stopped(since: float, until: float) -> dict[str, float]:
    """The share of [since, until] the clock thread was neither running nor runnable."""
    inside = [m for m in list(marks) if since <= m[0] <= until]
    if len(inside) < 2:
        return {"share": -1.0, "wall": 0.0, "pid": os.getpid()}
    (t0, r0, w0), (t1, r1, w1) = inside[0], inside[-1]
    wall = t1 - t0
    share = max(0.0, wall - (r1 - r0) / 1e9 - (w1 - w0) / 1e9) / wall
    return {"share": share, "wall": wall, "pid": os.getpid()}
