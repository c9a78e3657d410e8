"""Issue 15 end to end: profile.pb.gz read by real pprof readers, `asgiprof push` against a
real HTTP server speaking the documented APIs, and `asgiprof merge` of three real runs.

Three uvicorn servers of examples/blocking_sleep.py are profiled at once under real load:
runs `a` and `b` get the blocking route, run `c` only the awaiting and `def` routes, so the
sleeping line blocks in two of the three runs.
"""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
import socket
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from asgiprof.push import PYROSCOPE_PATH, Upload, UploadRefusedError, send
from asgiprof.record.loadgen import free_port
from tests.pprof_reader import (
    decode_pprof,
    go_pprof,
    go_regexp,
    go_tags_ms,
    go_total_ms,
    needs_go,
)
from tests.profiling import Profiled, asgiprof, attach_under_load, culprit_at, summary
from tests.servers import HOST, ServerProcess, planted_lines

pytestmark = [pytest.mark.integration]

DURATION_S = 6.0
RUNS = {
    "a": ("/users/1", "/users/2", "/healthy"),
    "b": ("/users/3", "/healthy", "/sync"),
    "c": ("/healthy", "/sync"),
}
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(frozen=True, slots=True)
class FleetRuns:
    outs: dict[str, Path]
    profiled: dict[str, Profiled]
    pids: dict[str, int]
    examples: Path


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, examples_dir: Path, ptrace_check: Any
) -> Iterator[FleetRuns]:
    if not ptrace_check.ok:
        pytest.skip(ptrace_check.reason)
    base = tmp_path_factory.mktemp("fleet")
    servers = {
        name: ServerProcess("blocking_sleep", cwd=examples_dir, log_dir=base) for name in RUNS
    }
    outs = {name: base / f"run-{name}" for name in RUNS}
    results: dict[str, Profiled] = {}
    errors: list[BaseException] = []

    def one(name: str) -> None:
        try:
            results[name] = attach_under_load(
                servers[name], RUNS[name], outs[name], duration_s=DURATION_S, concurrency=3
            )
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    try:
        for server in servers.values():
            server.start()
        threads = [threading.Thread(target=one, args=(name,)) for name in RUNS]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DURATION_S + 150)
        assert not any(t.is_alive() for t in threads), "a profile did not finish"
        if errors:
            raise errors[0]
        pids = {name: s.pid for name, s in servers.items()}
    finally:
        for server in servers.values():
            server.stop()
    yield FleetRuns(outs, results, pids, examples_dir)


# --- profile.pb.gz and its readers ---------------------------------------------------


def _on_its_stacks_ms(route: dict[str, Any]) -> float:
    """A route's time that its own stacks show, as pprof labels it: its cost without the
    shares of request overhead and dependencies split to it by the access log."""
    cost = route["loop_ms"] + route["threadpool_ms"]
    return float(cost - route["overhead_ms"] - route["dependency_ms"])


@needs_go
@pytest.mark.timeout(300)
def test_go_tool_pprof_reads_the_profile_and_agrees_with_summary_json(fleet: FleetRuns) -> None:
    out = fleet.outs["a"]
    data = summary(out)
    pb = out / "profile.pb.gz"

    # -top names the planted function, in wall time, the default sample type
    top = go_pprof(pb, "-top")
    assert "Type: wall" in top
    assert re.search(r"\bget_user\b", top), top
    # Python's `<module>` frames keep their name (readers demangle a C++-style system name)
    assert "<module>" in go_pprof(pb, "-top", "-nodefraction=0")

    # every label name is one Pyroscope accepts; values are the bounded sets
    tags_out = go_pprof(pb, "-tags")
    names = re.findall(r"^\s*(\S+): Total", tags_out, flags=re.M)
    assert set(names) <= {"http_route", "loop_state", "block_kind", "thread_role", "worker"}
    assert {"http_route", "loop_state", "thread_role", "worker"} <= set(names), tags_out
    assert all(LABEL_NAME.fullmatch(n) for n in names)
    assert set(go_tags_ms(pb, "loop_state")) <= {"idle", "busy", "blocked"}
    assert set(go_tags_ms(pb, "block_kind")) <= {"cpu", "io", "unknown"}
    assert set(go_tags_ms(pb, "thread_role")) <= {"event_loop", "threadpool", "other"}
    assert set(go_tags_ms(pb, "worker")) == {str(fleet.pids["a"])}
    # (attach reads the servers' access logs: a route that served requests no sample shows
    # is listed with no samples, and has no label)
    sampled = [r for r in data["routes"] if r["samples"] > 0]
    assert set(go_tags_ms(pb, "http_route")) == {r["route"] for r in sampled}

    # blocked, idle and busy totals equal summary.json's (go prints 0.01 ms)
    loop = data["event_loop"]
    assert loop["blocked_ms"] > 500, loop
    blocked = go_total_ms(pb, "-tagfocus=loop_state=^blocked$")
    assert blocked == pytest.approx(loop["blocked_ms"], abs=0.02)
    idle = go_total_ms(pb, "-tagfocus=loop_state=^idle$")
    assert idle == pytest.approx(loop["idle_ms"], abs=0.02)
    busy = go_total_ms(pb, "-tagfocus=loop_state=^(busy|blocked)$")
    assert busy == pytest.approx(loop["busy_ms"], abs=0.02)

    # per route: samples, wall time (loop + threadpool) and blocked time
    blocked_by_route = go_tags_ms(pb, "http_route", "-tagfocus=loop_state=^blocked$")
    for r in sampled:
        focus = f"-tagfocus=http_route={go_regexp(r['route'])}"
        assert go_total_ms(pb, focus, "-sample_index=samples") == r["samples"], r
        wall = go_total_ms(pb, focus)
        assert wall == pytest.approx(_on_its_stacks_ms(r), abs=0.02), r
        # -tags prints 0.1 ms
        assert blocked_by_route.get(r["route"], 0.0) == pytest.approx(r["blocked_ms"], abs=0.06)
    assert blocked_by_route["GET /users/{user_id}"] > 500


@pytest.mark.timeout(300)
def test_protobuf_reader_agrees_with_summary_json(fleet: FleetRuns) -> None:
    out = fleet.outs["b"]
    data = summary(out)
    profile = decode_pprof((out / "profile.pb.gz").read_bytes())
    meta = json.loads((out / "meta.json").read_text())

    assert profile.sample_types == (("samples", "count"), ("wall", "nanoseconds"))
    assert profile.period_type == ("wall", "nanoseconds")
    # the period py-spy kept: chunk wall time per sampling instant, which summary.json gives
    # as the instants plus how far py-spy fell behind the rate
    # (behind_s is 0 when py-spy's random spacing ran ahead of the rate: its intervals are
    # exponential, so their mean over N of them has a relative sd of 1/sqrt(N); a CI run
    # had 0.934 of the asked interval over ~600)
    sampling = data["sampling"]
    asked_s = 1 / sampling["rate_hz"]
    if sampling["behind_s"] > 0:
        span_s = sampling["behind_s"] + sampling["intervals"] * asked_s
        assert profile.period / 1e9 == pytest.approx(span_s / sampling["intervals"], abs=2e-6)
    else:
        lowest = asked_s * (1 - 4 / math.sqrt(sampling["intervals"]))
        assert lowest <= profile.period / 1e9 <= asked_s + 1e-9
    assert profile.time_nanos == round(meta["sampling"]["started_at"] * 1e9)
    assert profile.duration_nanos == pytest.approx(data["sampling"]["duration_s"] * 1e9, abs=1e6)
    # every stack py-spy recorded is in it, once
    assert profile.total(0) == data["sampling"]["samples"]

    # `asgiprof report` writes it again, the same bytes
    before = (out / "profile.pb.gz").read_bytes()
    (out / "profile.pb.gz").unlink()
    again = asgiprof("report", str(out), cwd=out)
    assert again.returncode == 0, again.stderr
    assert (out / "profile.pb.gz").read_bytes() == before

    loop = data["event_loop"]
    assert profile.total(1, loop_state="blocked") / 1e6 == pytest.approx(
        loop["blocked_ms"], abs=0.01
    )
    by_route = profile.by_label(0, "http_route")
    blocked_by_route = profile.by_label(1, "http_route", loop_state="blocked")
    for r in data["routes"]:
        assert by_route.get(r["route"], 0) == r["samples"]
        assert blocked_by_route.get(r["route"], 0) / 1e6 == pytest.approx(r["blocked_ms"], abs=0.01)
    # a blocked sample always says its kind; no other sample does
    for s in profile.samples:
        assert ("block_kind" in s.labels) == (s.labels.get("loop_state") == "blocked"), s.labels
        assert all(line > 0 or name == "(no Python frames)" for name, _f, line in s.frames[:1])
    (line,) = planted_lines(fleet.examples / "blocking_sleep.py")
    sleeping = [s for s in profile.samples if s.frames and s.frames[0][2] == line]
    assert sleeping and all(s.labels["http_route"] == "GET /users/{user_id}" for s in sleeping)


# --- push -----------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Engine:
    """A real HTTP server on 127.0.0.1 that answers as told and keeps every request."""

    statuses: list[int]
    requests: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://{HOST}:{self.server.server_address[1]}"


@pytest.fixture
def engine() -> Iterator[Engine]:
    state = Engine(statuses=[])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length", "0"))
            path, _, query = self.path.partition("?")
            state.requests.append(
                Received("POST", path, query, dict(self.headers.items()), self.rfile.read(length))
            )
            status = state.statuses.pop(0) if state.statuses else 200
            payload = b"{}" if status == 200 else b'{"code":"invalid_argument","message":"nope"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, free_port()), Handler)
    state.server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _series_labels(pairs: list[dict[str, str]]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in pairs}


@pytest.mark.timeout(300)
def test_push_sends_pyroscopes_documented_request_and_the_body_decodes_to_the_profile(
    fleet: FleetRuns, engine: Engine
) -> None:
    out = fleet.outs["a"]
    raw = (out / "profile.pb.gz").read_bytes()
    # --dry-run prints the documented request and sends nothing
    dry = asgiprof("push", str(out), "--pyroscope", engine.url, "--dry-run", cwd=out)
    assert dry.returncode == 0, dry.stderr
    assert f"pyroscope: POST {engine.url}/push.v1.PusherService/Push" in dry.stdout
    assert "Content-Type: application/json" in dry.stdout
    assert '"rawProfile": "<' + str(len(raw)) + " bytes of profile.pb.gz, base64>" in dry.stdout
    assert engine.requests == []

    # the first answer is a 503: the upload is retried and then taken
    engine.statuses = [503, 200]
    done = asgiprof(
        "push", str(out), "--pyroscope", engine.url, "--label", "env=ci", "--host", "pod-a",
        "--tenant", "team-1", cwd=out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "pushed" in done.stdout
    assert len(engine.requests) == 2
    req = engine.requests[-1]
    assert (req.method, req.path, req.query) == ("POST", "/push.v1.PusherService/Push", "")
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["X-Scope-OrgID"] == "team-1"
    body = json.loads(req.body)
    (series,) = body["series"]
    labels = _series_labels(series["labels"])
    assert labels["__name__"] == "wall"
    assert labels["service_name"] == "blocking_sleep"
    assert labels["host"] == "pod-a"
    assert labels["asgi_server"] == "uvicorn"
    assert labels["env"] == "ci"
    assert labels["run_id"].endswith(f"-{fleet.pids['a']}")
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", labels["asgiprof_version"])
    assert all(LABEL_NAME.fullmatch(n) for n in labels)
    (sample,) = series["samples"]
    assert re.fullmatch(r"[0-9a-f-]{36}", sample["ID"])
    sent = base64.b64decode(sample["rawProfile"])
    assert sent == raw
    assert decode_pprof(sent) == decode_pprof(raw)


def test_send_retries_with_backoff_then_reports_the_refusal(engine: Engine, tmp_path: Path) -> None:
    # every answer a 503: 1 + 3 retries, waiting 0.5, 1 and 2 s between them
    engine.statuses = [503] * 4
    waits: list[float] = []
    upload = Upload("pyroscope", engine.url + PYROSCOPE_PATH, {}, {}, b"{}")
    with pytest.raises(UploadRefusedError) as info:
        send(upload, timeout_s=5.0, retries=3, sleep=waits.append)
    assert len(engine.requests) == 4
    assert waits == [0.5, 1.0, 2.0]
    assert info.value.exit_code == 1 and "HTTP 503" in info.value.message


def test_send_gives_up_on_a_server_that_does_not_answer_in_time(tmp_path: Path) -> None:
    # a real listening socket that never answers: each attempt times out
    with socket.socket() as silent:
        silent.bind((HOST, 0))
        silent.listen(8)
        url = f"http://{HOST}:{silent.getsockname()[1]}{PYROSCOPE_PATH}"
        waits: list[float] = []
        with pytest.raises(UploadRefusedError) as info:
            send(
                Upload("pyroscope", url, {}, {}, b"{}"),
                timeout_s=0.3,
                retries=1,
                sleep=waits.append,
            )
    assert "no answer within 0.3 s" in info.value.message
    assert waits == [0.5]


@pytest.mark.timeout(300)
def test_push_to_parca_uses_writeraw_and_dry_run_sends_nothing(
    fleet: FleetRuns, engine: Engine
) -> None:
    out = fleet.outs["b"]
    dry = asgiprof("push", str(out), "--parca", engine.url, "--dry-run", cwd=out)
    assert dry.returncode == 0, dry.stderr
    assert engine.requests == []
    assert f"POST {engine.url}/profiles/writeraw" in dry.stdout
    assert '"service_name"' in dry.stdout and "bytes of profile.pb.gz, base64" in dry.stdout

    done = asgiprof("push", str(out), "--parca", engine.url + "/", cwd=out)
    assert done.returncode == 0, done.stderr
    (req,) = engine.requests
    assert req.path == "/profiles/writeraw"
    body = json.loads(req.body)
    (series,) = body["series"]
    assert _series_labels(series["labels"]["labels"])["asgi_server"] == "uvicorn"
    (sample,) = series["samples"]
    sent = decode_pprof(base64.b64decode(sample["rawProfile"]))
    assert sent == decode_pprof((out / "profile.pb.gz").read_bytes())


@pytest.mark.timeout(300)
def test_push_reports_a_refused_upload_and_bad_input(
    fleet: FleetRuns, engine: Engine, tmp_path: Path
) -> None:
    out = fleet.outs["c"]
    engine.statuses = [400]
    refused = asgiprof("push", str(out), "--pyroscope", engine.url, cwd=out)
    assert refused.returncode == 1
    assert "HTTP 400" in refused.stderr and "nope" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert len(engine.requests) == 1  # a 400 is not retried

    # one engine refusing does not keep the profile from the other
    engine.statuses = [400, 200]
    both = asgiprof("push", str(out), "--pyroscope", engine.url, "--parca", engine.url, cwd=out)
    assert both.returncode == 1 and "pyroscope" in both.stderr
    assert "pushed" in both.stdout and "parca" in both.stdout
    assert [r.path for r in engine.requests[1:]] == [PYROSCOPE_PATH, "/profiles/writeraw"]
    engine.requests.clear()

    bad_label = asgiprof("push", str(out), "--pyroscope", engine.url, "-l", "a.b=1", cwd=out)
    assert bad_label.returncode == 2 and "--label" in bad_label.stderr
    nothing = asgiprof("push", str(tmp_path), "--pyroscope", engine.url, cwd=tmp_path)
    assert nothing.returncode == 2 and "asgiprof report" in nothing.stderr
    no_engine = asgiprof("push", str(out), cwd=out)
    assert no_engine.returncode == 2 and "--pyroscope" in no_engine.stderr
    assert engine.requests == []  # bad input sends nothing


# --- merge ------------------------------------------------------------------------------


def _culprit_episodes(run: dict[str, Any]) -> int:
    return sum(c["episodes"] for p in run["processes"] for c in p.get("culprits", []))


def _episodes_of_lines_new_in_the_merge(
    merged: dict[str, Any], parts: Iterable[dict[str, Any]]
) -> int:
    """Episodes the merged profile gives, per process, to culprit lines that process's own
    run did not rank."""
    own = {
        p["pid"]: {(c["file"], c["line"]) for c in p.get("culprits", [])}
        for run in parts
        for p in run["processes"]
    }
    return sum(
        c["episodes"]
        for p in merged["processes"]
        for c in p.get("culprits", [])
        if (c["file"], c["line"]) not in own.get(p["pid"], set())
    )


@pytest.mark.timeout(300)
def test_merge_of_three_runs_sums_them_and_ranks_culprits_across_the_fleet(
    fleet: FleetRuns, tmp_path: Path
) -> None:
    merged = tmp_path / "merged"
    runs = [str(fleet.outs[name]) for name in RUNS]
    done = asgiprof("merge", *runs, "--out", str(merged), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Fleet: 3 runs merged" in done.stdout
    data = summary(merged)
    parts = {name: summary(fleet.outs[name]) for name in RUNS}

    # totals are the sum of the three runs
    assert data["sampling"]["samples"] == sum(p["sampling"]["samples"] for p in parts.values())
    for key in ("busy_ms", "idle_ms"):
        total = sum(p["event_loop"][key] for p in parts.values())
        assert data["event_loop"][key] == pytest.approx(total, abs=0.01), key
    # Blocked time and episodes are sums too, up to the stretches on the edge of the rule: a
    # line's evidence (stickiness, its callees' share) is weighed across the whole profile,
    # so in the merged one a borderline stretch may flip (seen: 27 ms of 10.8 s).
    blocked = sum(p["event_loop"]["blocked_ms"] for p in parts.values())
    assert data["event_loop"]["blocked_ms"] == pytest.approx(blocked, rel=0.02)
    # Culprit lines' episodes likewise; a line that is a culprit only in the merged profile
    # (a lightly loaded run gave too little evidence alone) also gets its short stretches
    # there (promote_short_stretches): those are the merged profile's own. (Framework-only
    # episodes, with no line, are weighed per stack across the profile: not compared.)
    episodes = sum(_culprit_episodes(p) for p in parts.values())
    promoted = _episodes_of_lines_new_in_the_merge(data, parts.values())
    assert abs(_culprit_episodes(data) - promoted - episodes) <= max(2, 0.02 * episodes)
    # A route's samples too, up to its torn samples: the stack standing in for one (and so
    # its route) is chosen among the whole profile's stacks (analyze/torn.py).
    for r in data["routes"]:
        samples = sum(
            x["samples"] for p in parts.values() for x in p["routes"] if x["route"] == r["route"]
        )
        assert abs(r["samples"] - samples) <= max(2, 0.01 * samples), (r, samples)
    assert sorted(data["target"]["pids"]) == sorted(fleet.pids.values())

    # the sleeping line blocked in runs a and b only: one row, two sources
    script = fleet.examples / "blocking_sleep.py"
    (line,) = planted_lines(script)
    row = culprit_at(data, script, line)
    assert row is not None and row["rank"] == 1, data["culprits"]
    sources = {s["source"]: s for s in row["sources"]}
    assert set(sources) == {"run-a", "run-b"}
    for name in ("a", "b"):
        own = culprit_at(parts[name], script, line)
        assert own is not None
        assert sources[f"run-{name}"]["blocked_ms"] == pytest.approx(own["blocked_ms"], abs=0.01)
        assert sources[f"run-{name}"]["episodes"] == own["episodes"]
    assert culprit_at(parts["c"], script, line) is None
    assert row["blocked_ms"] == pytest.approx(
        sum(s["blocked_ms"] for s in row["sources"]), abs=0.01
    )
    assert row["episodes"] == sum(s["episodes"] for s in row["sources"])
    fleet_sources = {s["name"]: s for s in data["fleet"]["sources"]}
    assert set(fleet_sources) == {"run-a", "run-b", "run-c"}
    for name in RUNS:
        assert fleet_sources[f"run-{name}"]["samples"] == parts[name]["sampling"]["samples"]
        # A source's blocked time is the merged analysis's labels of its samples: the same
        # borderline stretches may flip as above (seen in CI: 4,660 ms vs 4,695 ms alone; and
        # the healthy run's only episode, 27.8 ms alone, was busy code in the merge): 2%, or
        # two stretches just over the 20 ms threshold ...
        assert fleet_sources[f"run-{name}"]["event_loop"]["blocked_ms"] == pytest.approx(
            parts[name]["event_loop"]["blocked_ms"], rel=0.02, abs=2 * 30.0
        )
    # ... and the sources add up to the merged figure they are shares of.
    assert sum(s["event_loop"]["blocked_ms"] for s in fleet_sources.values()) == pytest.approx(
        data["event_loop"]["blocked_ms"], abs=0.05
    )

    # every output as for one run; the pprof keeps the runs' workers apart
    for name in ("report.html", "profile.speedscope.json", "stacks.folded", "profile.pb.gz"):
        assert (merged / name).stat().st_size > 0, name
    html = (merged / "report.html").read_text(encoding="utf-8")
    assert 'id="fleet"' in html and "run-a" in html and "run-c" in html
    profile = decode_pprof((merged / "profile.pb.gz").read_bytes())
    workers = profile.by_label(0, "worker")
    assert set(workers) == {f"run-{n}:{fleet.pids[n]}" for n in RUNS}
    assert profile.total(0) == data["sampling"]["samples"]

    # `report` re-merges from merge.json and writes the same summary
    before = (merged / "summary.json").read_bytes()
    again = asgiprof("report", str(merged), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (merged / "summary.json").read_bytes() == before


@pytest.mark.timeout(300)
def test_merge_keeps_colliding_pids_apart_and_refuses_another_app(
    fleet: FleetRuns, tmp_path: Path
) -> None:
    # the same run copied as a second host's: every pid collides
    host2 = tmp_path / "host2"
    shutil.copytree(fleet.outs["a"], host2)
    merged = tmp_path / "merged"
    done = asgiprof("merge", str(fleet.outs["a"]), str(host2), "--out", str(merged), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    one, both = summary(fleet.outs["a"]), summary(merged)
    assert both["event_loop"]["blocked_ms"] == pytest.approx(
        2 * one["event_loop"]["blocked_ms"], abs=0.01
    )
    assert len(both["event_loop"]["threads"]) == 2 * len(one["event_loop"]["threads"])
    assert len(both["processes"]) == 2 * len(one["processes"])
    host_pids = [p["host_pid"] for s in both["fleet"]["sources"] for p in s["pids"]]
    assert host_pids == [fleet.pids["a"], fleet.pids["a"]]

    # a run of another app (its app spec says so) is refused with the reason
    other = tmp_path / "other-app"
    shutil.copytree(fleet.outs["b"], other)
    meta = json.loads((other / "meta.json").read_text())
    meta["target"]["app_spec"] = "billing.main:app"
    (other / "meta.json").write_text(json.dumps(meta))
    refused = asgiprof(
        "merge", str(fleet.outs["a"]), str(other), "--out", str(tmp_path / "no"), cwd=tmp_path
    )
    assert refused.returncode == 2
    assert "different apps" in refused.stderr and "billing.main:app" in refused.stderr
    assert not (tmp_path / "no").exists()
