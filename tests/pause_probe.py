"""The client side of tests/pause_app.py's `/stopped`, for tests/integration/test_pause_limit.py
and bench/pause_cost.py (importing the app itself would start its spinning clock thread in
the caller)."""

from __future__ import annotations

import httpx


def stopped(url: str, since: float, until: float) -> tuple[int, float]:
    """(the answering process's pid, the share of [since, until] it measured itself held
    stopped; -1 when it has too few marks in that window)."""
    got = httpx.get(
        f"{url}/stopped",
        params={"since": since, "until": until},
        timeout=10,
        trust_env=False,
    ).json()
    return int(got["pid"]), float(got["share"])
