"""Drive HTTP GET load at a server on loopback, bounded by a duration and a request cap.

Used by `asgiprof demo` and by tests. Only 127.0.0.1, localhost and ::1 are accepted: any
other host raises ValueError before a single request is sent.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import httpx

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listened on a moment ago (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


DEFAULT_MAX_REQUESTS = 50_000
# Requests still in flight when the duration ends get this long (beyond their own timeout)
# before they are cancelled, so a server that trickles bytes cannot hold the driver.
_GRACE_S = 1.0


@dataclass(frozen=True, slots=True)
class PathStats:
    """Outcome of the requests sent to one path: `ok` answered below 400; `failed` got 4xx/5xx,
    a timeout or a connection error. Latencies cover successful requests only."""

    path: str
    ok: int
    failed: int
    p50_ms: float | None  # None when no request to this path succeeded
    p99_ms: float | None
    first_error: str | None = None  # the first failure, to explain a failing test or demo

    @property
    def requests(self) -> int:
        return self.ok + self.failed


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Per-path stats in the order the paths were first given, and the wall time taken."""

    paths: tuple[PathStats, ...]
    elapsed_s: float

    @property
    def total(self) -> int:
        return sum(p.requests for p in self.paths)

    @property
    def ok(self) -> int:
        return sum(p.ok for p in self.paths)

    @property
    def failed(self) -> int:
        return sum(p.failed for p in self.paths)

    @property
    def requests_per_s(self) -> float:
        return self.total / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def for_path(self, path: str) -> PathStats:
        for stats in self.paths:
            if stats.path == path:
                return stats
        raise KeyError(path)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (`q` in 0..100): always one of the measured values."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(
    paths: Sequence[str],
    latencies_ms: Mapping[str, Sequence[float]],
    failures: Mapping[str, Sequence[str]],
    elapsed_s: float,
) -> LoadResult:
    """Build the result from raw measurements: one entry per distinct path, in given order."""
    stats = []
    for path in dict.fromkeys(paths):
        ok = latencies_ms.get(path, ())
        errors = failures.get(path, ())
        stats.append(
            PathStats(
                path=path,
                ok=len(ok),
                failed=len(errors),
                p50_ms=percentile(ok, 50) if ok else None,
                p99_ms=percentile(ok, 99) if ok else None,
                first_error=errors[0] if errors else None,
            )
        )
    return LoadResult(paths=tuple(stats), elapsed_s=elapsed_s)


def check_loopback(base_url: str) -> httpx.URL:
    """The parsed URL if it is http(s) on a loopback host; ValueError otherwise."""
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"invalid URL {base_url!r}: {exc}") from exc
    if url.scheme not in ("http", "https"):
        raise ValueError(f"only http(s) URLs can be loaded, got {base_url!r}")
    if url.host.lower() not in LOOPBACK_HOSTS:
        raise ValueError(
            f"load may only go to loopback (127.0.0.1, localhost, ::1), got host {url.host!r}"
        )
    return url


def _request_urls(base_url: str, paths: Sequence[str]) -> list[str]:
    base = check_loopback(base_url)
    root = str(base).rstrip("/")
    urls = []
    for path in paths:
        # A path such as "//host/x" or "http://host/x" would leave loopback once joined.
        if not path.startswith("/") or path.startswith("//"):
            raise ValueError(f"paths must start with a single '/', got {path!r}")
        url = root + path
        check_loopback(url)
        urls.append(url)
    return urls


@dataclass(slots=True)
class _Driver:
    """State of one load run; `run` executes it on a fresh event loop in the calling thread."""

    paths: tuple[str, ...]
    urls: tuple[str, ...]
    duration_s: float
    concurrency: int
    timeout_s: float
    max_requests: int
    _stopping: threading.Event = field(init=False, default_factory=threading.Event)
    _loop: asyncio.AbstractEventLoop | None = field(init=False, default=None)
    _workers: list[asyncio.Task[None]] = field(init=False, default_factory=list)
    _issued: int = field(init=False, default=0)
    _latencies_ms: dict[str, list[float]] = field(init=False, default_factory=dict)
    _failures: dict[str, list[str]] = field(init=False, default_factory=dict)

    def run(self) -> LoadResult:
        started = time.perf_counter()
        asyncio.run(self._main())
        return summarize(
            self.paths, self._latencies_ms, self._failures, time.perf_counter() - started
        )

    def stop(self) -> None:
        """Thread-safe: stop issuing requests and cancel those in flight (not counted)."""
        self._stopping.set()
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._cancel_workers)
        except RuntimeError:  # the loop already closed: nothing left to cancel
            pass

    def _cancel_workers(self) -> None:
        for task in self._workers:
            task.cancel()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.duration_s
        limits = httpx.Limits(
            max_connections=self.concurrency, max_keepalive_connections=self.concurrency
        )
        # trust_env=False: a proxy from HTTP_PROXY would carry "loopback" traffic elsewhere.
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout_s),
            limits=limits,
            trust_env=False,
            follow_redirects=False,
        ) as client:
            self._workers = [
                asyncio.create_task(self._worker(client, deadline)) for _ in range(self.concurrency)
            ]
            if self._stopping.is_set():  # stop() came before the workers existed
                self._cancel_workers()
            done, pending = await asyncio.wait(
                self._workers,
                timeout=self.duration_s + self.timeout_s + _GRACE_S,
                return_when=asyncio.FIRST_EXCEPTION,
            )
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=_GRACE_S)
            for task in done:
                error = None if task.cancelled() else task.exception()
                if error is not None:  # a bug in the driver, not a failed request
                    raise error

    async def _worker(self, client: httpx.AsyncClient, deadline: float) -> None:
        while (
            not self._stopping.is_set()
            and time.monotonic() < deadline
            and self._issued < self.max_requests
        ):
            # One event loop: claiming the next index cannot race between workers.
            index = self._issued
            self._issued += 1
            path = self.paths[index % len(self.paths)]
            started = time.perf_counter()
            try:
                response = await client.get(self.urls[index % len(self.urls)])
            except httpx.HTTPError as exc:
                self._failures.setdefault(path, []).append(f"{type(exc).__name__}: {exc}")
                continue
            latency_ms = (time.perf_counter() - started) * 1000
            if response.status_code < 400:
                self._latencies_ms.setdefault(path, []).append(latency_ms)
            else:
                self._failures.setdefault(path, []).append(f"HTTP {response.status_code}")


def _driver(
    base_url: str,
    paths: Sequence[str],
    *,
    duration_s: float,
    concurrency: int,
    timeout_s: float,
    max_requests: int,
) -> _Driver:
    if isinstance(paths, str):
        raise TypeError("paths must be a sequence of paths, not one string")
    if not paths:
        raise ValueError("no paths to load")
    if not duration_s > 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    if max_requests < 1:
        raise ValueError(f"max_requests must be at least 1, got {max_requests}")
    urls = _request_urls(base_url, paths)
    return _Driver(
        paths=tuple(paths),
        urls=tuple(urls),
        duration_s=duration_s,
        concurrency=concurrency,
        timeout_s=timeout_s,
        max_requests=max_requests,
    )


def drive_load(
    base_url: str,
    paths: Sequence[str],
    *,
    duration_s: float,
    concurrency: int = 8,
    timeout_s: float = 5.0,
    max_requests: int = DEFAULT_MAX_REQUESTS,
) -> LoadResult:
    """GET `paths` round-robin (repeat a path to weight it) from `concurrency` clients until
    `duration_s` passes or `max_requests` were sent. Blocks; runs its own event loop, so call
    it from a thread without a running loop (or use `start_load_thread`)."""
    driver = _driver(
        base_url,
        paths,
        duration_s=duration_s,
        concurrency=concurrency,
        timeout_s=timeout_s,
        max_requests=max_requests,
    )
    return driver.run()


class LoadThread:
    """Load running in a background thread: `stop()` ends it early, `join()` waits, and
    `result` holds the outcome (re-raising the load's error if it failed)."""

    def __init__(self, driver: _Driver) -> None:
        self._driver = driver
        self._result: LoadResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="asgiprof-load", daemon=True)

    def _run(self) -> None:
        try:
            self._result = self._driver.run()
        except BaseException as exc:  # handed to the caller through `result`
            self._error = exc

    def start(self) -> LoadThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._driver.stop()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds; True when the load has finished."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def result(self) -> LoadResult:
        if self._thread.is_alive() or (self._result is None and self._error is None):
            raise RuntimeError("the load is still running: join() it first")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def __enter__(self) -> LoadThread:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self.join(self._driver.timeout_s + 2 * _GRACE_S)


def start_load_thread(
    base_url: str,
    paths: Sequence[str],
    *,
    duration_s: float,
    concurrency: int = 8,
    timeout_s: float = 5.0,
    max_requests: int = DEFAULT_MAX_REQUESTS,
) -> LoadThread:
    """Like `drive_load`, in a daemon thread; arguments are checked before it starts."""
    driver = _driver(
        base_url,
        paths,
        duration_s=duration_s,
        concurrency=concurrency,
        timeout_s=timeout_s,
        max_requests=max_requests,
    )
    return LoadThread(driver).start()
