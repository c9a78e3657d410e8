"""Helpers in another module than the routes that call them: the culprit line is here.

`fetch_profile` stands for a sync client call (requests, a sync SDK), `score` for CPU work
in pure Python; the healthy twin calls them through the threadpool, or awaits instead.
"""

from __future__ import annotations

import asyncio
import time


def fetch_profile(seconds: float) -> dict[str, str]:
    time.sleep(seconds)  # planted: helper-io
    return {"profile": "ok"}


def score(seconds: float) -> int:
    deadline = time.perf_counter() + seconds
    next(t for t in iter(time.perf_counter, None) if t >= deadline)  # planted: helper-cpu
    return 42


async def fetch_profile_async(seconds: float) -> dict[str, str]:
    await asyncio.sleep(seconds)
    return {"profile": "ok"}
