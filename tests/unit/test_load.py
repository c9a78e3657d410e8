"""The load driver: loopback guard, argument checks, result math, and its bounds (request
cap, stop, failures) against a stdlib HTTP server in this process on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from asgiprof.record.loadgen import (
    LoadResult,
    PathStats,
    check_loopback,
    drive_load,
    free_port,
    percentile,
    start_load_thread,
    summarize,
)

# --- loopback guard -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000",
        "http://127.0.0.1:8000/",
        "https://127.0.0.1",
        "http://localhost:8000/prefix",
        "http://LOCALHOST:8000",
        "http://[::1]:8000",
    ],
)
def test_loopback_urls_are_accepted(url: str) -> None:
    check_loopback(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "http://10.0.0.1:8000",
        "http://127.0.0.2:8000",
        "http://0.0.0.0:8000",
        "http://localhost.example.com",
        "http://127.0.0.1@example.com/",  # userinfo trick: the host is example.com
        "ftp://127.0.0.1/",
        "127.0.0.1:8000",
        "",
    ],
)
def test_other_hosts_are_refused_before_any_request(url: str) -> None:
    with pytest.raises(ValueError):
        drive_load(url, ["/"], duration_s=1.0)
    with pytest.raises(ValueError):
        start_load_thread(url, ["/"], duration_s=1.0)


@pytest.mark.parametrize(
    "path", ["http://example.com/x", "//example.com/x", "x", "", "@example.com/x"]
)
def test_paths_that_could_leave_loopback_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="single '/'"):
        drive_load("http://127.0.0.1:8000", ["/ok", path], duration_s=1.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"duration_s": 0.0}, "duration_s"),
        ({"duration_s": 1.0, "concurrency": 0}, "concurrency"),
        ({"duration_s": 1.0, "timeout_s": 0.0}, "timeout_s"),
        ({"duration_s": 1.0, "max_requests": 0}, "max_requests"),
    ],
)
def test_bad_bounds_are_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        drive_load("http://127.0.0.1:8000", ["/"], **options)  # type: ignore[arg-type]


def test_no_paths_or_one_string_is_refused() -> None:
    with pytest.raises(ValueError, match="no paths"):
        drive_load("http://127.0.0.1:8000", [], duration_s=1.0)
    with pytest.raises(TypeError, match="sequence"):
        drive_load("http://127.0.0.1:8000", "/users", duration_s=1.0)


# --- result math --------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = [40.0, 10.0, 30.0, 20.0]
    assert percentile(values, 50) == 20.0
    assert percentile(values, 75) == 30.0
    assert percentile(values, 99) == 40.0
    assert percentile(values, 100) == 40.0
    assert percentile(values, 0) == 10.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([float(v) for v in range(1, 101)], 99) == 99.0


def test_percentile_of_nothing_or_out_of_range_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_counts_per_distinct_path_in_given_order() -> None:
    # GIVEN a weighted path list (/a twice), latencies for /a, failures for /b, none for /c
    result = summarize(
        ["/a", "/b", "/a", "/c"],
        {"/a": [3.0, 1.0, 2.0, 4.0]},
        {"/b": ["HTTP 500", "ConnectError: refused"], "/a": ["HTTP 404"]},
        elapsed_s=2.0,
    )
    # THEN each distinct path appears once, in first-seen order, with exact stats
    assert result == LoadResult(
        paths=(
            PathStats("/a", ok=4, failed=1, p50_ms=2.0, p99_ms=4.0, first_error="HTTP 404"),
            PathStats("/b", ok=0, failed=2, p50_ms=None, p99_ms=None, first_error="HTTP 500"),
            PathStats("/c", ok=0, failed=0, p50_ms=None, p99_ms=None),
        ),
        elapsed_s=2.0,
    )
    assert (result.total, result.ok, result.failed) == (7, 4, 3)
    assert result.requests_per_s == 3.5
    assert result.for_path("/b").requests == 2
    with pytest.raises(KeyError):
        result.for_path("/nope")


def test_empty_result_has_zero_rate() -> None:
    assert summarize(["/a"], {}, {}, elapsed_s=0.0).requests_per_s == 0.0


# --- bounds, against a real server on loopback --------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    held = threading.Event()  # /hold answers only once this is set
    seen = threading.Semaphore(0)  # released once per request received

    def do_GET(self) -> None:
        type(self).seen.release()
        if self.path == "/hold":
            type(self).held.wait(timeout=10.0)
        status = 404 if self.path == "/missing" else 200
        body = b"{}"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean


@pytest.fixture
def local_server() -> Iterator[str]:
    _Handler.held = threading.Event()
    _Handler.seen = threading.Semaphore(0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        _Handler.held.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5.0)


def test_request_cap_ends_the_load_before_the_duration(local_server: str) -> None:
    result = drive_load(
        local_server, ["/ok", "/missing"], duration_s=30.0, concurrency=4, max_requests=20
    )
    # Round-robin over two paths: exactly half of the capped requests went to each.
    assert result.total == 20
    ok = result.for_path("/ok")
    assert (ok.ok, ok.failed, ok.first_error) == (10, 0, None)
    missing = result.for_path("/missing")
    assert (missing.ok, missing.failed, missing.first_error) == (0, 10, "HTTP 404")
    assert result.elapsed_s < 10.0


def test_refused_connections_count_as_failures() -> None:
    result = drive_load(f"http://127.0.0.1:{free_port()}", ["/"], duration_s=10.0, max_requests=5)
    assert (result.ok, result.failed) == (0, 5)
    assert (result.for_path("/").first_error or "").startswith("ConnectError")


def test_stop_ends_a_thread_with_requests_in_flight(local_server: str) -> None:
    # GIVEN load on a route that holds every request until the test ends
    load = start_load_thread(local_server, ["/hold"], duration_s=60.0, concurrency=2)
    try:
        assert _Handler.seen.acquire(timeout=5.0), "no request reached the server"
        assert not load.join(timeout=0.0)
        with pytest.raises(RuntimeError, match="still running"):
            _ = load.result
    finally:
        # WHEN it is stopped
        load.stop()
        finished = load.join(timeout=5.0)
    # THEN it ends at once, the held requests cancelled and not counted
    assert finished
    assert load.result.total == 0
    assert load.result.elapsed_s < 5.0


def test_thread_reports_ok_latencies(local_server: str) -> None:
    with start_load_thread(local_server, ["/ok"], duration_s=0.3, concurrency=2) as load:
        assert load.join(timeout=10.0)
    stats = load.result.for_path("/ok")
    assert stats.ok > 0
    assert stats.failed == 0
    assert stats.p50_ms is not None and stats.p99_ms is not None
    assert 0 < stats.p50_ms <= stats.p99_ms


def test_a_request_timeout_is_a_failure(local_server: str) -> None:
    result = drive_load(local_server, ["/hold"], duration_s=0.2, timeout_s=0.2, concurrency=1)
    stats = result.for_path("/hold")
    assert stats.ok == 0
    assert stats.failed >= 1
    assert (stats.first_error or "").startswith("ReadTimeout")
