"""Issue 6: nothing lost, no harm to the target, bounded memory, untrusted text stays text.

Real uvicorn servers, real py-spy, `python -m asgiprof` in a subprocess, signals as a user
(or a supervisor, or the OOM killer) sends them, and ps/psutil checks after every scenario.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import pytest

from asgiprof.demo import uvicorn_command
from asgiprof.record.loadgen import drive_load, free_port, start_load_thread
from tests.profiling import (
    Finished,
    asgiprof,
    finish,
    start_asgiprof,
    summary,
    wait_until_serving,
)
from tests.servers import HOST, ServerFactory, planted_lines

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("needs_ptrace")]

# Secrets the server's command line and environment carry: no output may hold them.
SECRETS = {
    "flag": "hunter2-cmdline-secret",  # --ssl-keyfile-password X
    "url": "pg-password-in-argv",  # postgres://user:X@host in an argument
    "assignment": "key-assigned-in-argv",  # env PAYMENTS_API_KEY=X uvicorn ...
    "env_url": "pg-password-in-env",
    "env_key": "key-in-env-9f8e7d",
}

LIFECYCLE_APP = '''
"""Blocks the loop on /block, exits on /exit/N, marks each graceful shutdown in a file."""
import asyncio
import os
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI

MARK = os.environ.get("SHUTDOWN_MARK", "")


@asynccontextmanager
async def lifespan(app):
    yield
    if MARK:
        open(f"{MARK}.{os.getpid()}", "w").close()


app = FastAPI(lifespan=lifespan)


@app.get("/block")
async def block():
    time.sleep(0.05)  # planted: blocks the event loop
    return {"ok": True}


@app.get("/exit/{status}")
async def exit_with(status: int):
    asyncio.get_running_loop().call_later(0.1, os._exit, status)
    return {"exiting": status}
'''


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    path = tmp_path / "app"
    path.mkdir()
    (path / "lifecycle.py").write_text(LIFECYCLE_APP)
    return path


def wait_for(path: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout_s} s"
        time.sleep(0.05)


def _a_pyspy_of(pid: int, timeout_s: float = 10.0) -> psutil.Process:
    deadline = time.monotonic() + timeout_s
    while True:
        for p in tree(pid):
            try:
                if "py-spy" in p.name():
                    return p
            except psutil.Error:
                continue
        assert time.monotonic() < deadline, "asgiprof ran no py-spy"
        time.sleep(0.02)


def tree(pid: int) -> list[psutil.Process]:
    try:
        children: list[psutil.Process] = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    return children


def assert_all_gone(procs: list[psutil.Process], timeout_s: float = 15.0) -> None:
    """Every process listed is gone (or a zombie of ours) within the timeout."""
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [f"{p.pid}: {' '.join(p.cmdline())[:120]}" for p in alive]


def thread_states(pid: int) -> dict[int, str]:
    """/proc/PID/task/*/status State of each thread: "S", "R", "t" (tracing stop), "T"..."""
    states: dict[int, str] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("State:"):
                states[int(task.name)] = line.split()[1]
    return states


def assert_running_and_serving(pid: int, url: str) -> None:
    """Not stopped, not left in a tracing stop (checked for a while), and answering."""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        states = thread_states(pid)
        assert not {s for s in states.values() if s in "tT"}, states
        time.sleep(0.1)
    after = drive_load(url, ["/healthy"], duration_s=0.5, concurrency=2)
    assert after.ok >= 1 and after.failed == 0, after


def assert_no_secret(out: Path, *texts: str) -> None:
    """No file in OUT (raw py-spy output included), nor any of `texts`, holds a secret."""
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in SECRETS.values():
                assert secret.encode() not in data, f"{secret} in {path}"
    for text in texts:
        for secret in SECRETS.values():
            assert secret not in text


def secret_env(mark: Path | None = None) -> dict[str, str]:
    env = {
        "DATABASE_URL": f"postgresql://app:{SECRETS['env_url']}@db.internal/app",
        "PAYMENTS_API_KEY": SECRETS["env_key"],
    }
    if mark is not None:
        env["SHUTDOWN_MARK"] = str(mark)
    return env


# --- 1. nothing lost --------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_asgiprof_killed_keeps_its_samples_and_its_server_and_workers_end(
    tmp_path: Path, app_dir: Path
) -> None:
    # GIVEN `asgiprof run` of a two-worker server with secrets in its command line and
    # environment, under load on a blocking route
    port, out = free_port(), tmp_path / "out"
    mark = tmp_path / "shutdown"
    argv = [
        "env",
        f"PAYMENTS_API_KEY={SECRETS['assignment']}",
        *uvicorn_command("lifecycle", port, "--workers", "2"),
        "--ssl-keyfile-password",
        SECRETS["flag"],
        "--root-path",
        f"postgres://app:{SECRETS['url']}@db.internal/app",
    ]
    proc = start_asgiprof("run", "--out", str(out), "--", *argv, cwd=app_dir, env=secret_env(mark))
    load = None
    try:
        wait_until_serving(port, path="/block")
        load = start_load_thread(f"http://{HOST}:{port}", ["/block"], duration_s=30, concurrency=2)
        wait_for(out / "raw" / "chunk-0002.json")
        time.sleep(1.0)  # well inside the third chunk
        # WHEN asgiprof is killed outright (kill -9, the OOM killer)
        children = tree(proc.pid)
        assert any("py-spy" in p.name() for p in children)
        assert sum(p.name().startswith("python") for p in children) >= 3  # master + 2
        started_at = orjson.loads((out / "meta.json").read_bytes())["sampling"]["started_at"]
        killed_after_s = time.time() - started_at
        proc.kill()
        proc.communicate(timeout=10)
        # THEN py-spy, the server and its workers all end (the server gracefully: it
        # finishes the requests in flight, so the clients stop and a loaded box gets time)
        load.stop()
        assert_all_gone(children, timeout_s=40.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if load is not None:
            load.stop()
            load.join(10)
    assert len(list(tmp_path.glob("shutdown.*"))) == 2, "each worker ran its lifespan shutdown"

    # ... and `asgiprof report` rebuilds everything, up to the moment asgiprof died
    done = asgiprof("report", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = summary(out)
    assert data["sampling"]["stopped_by"] == "unfinished"
    assert data["sampling"]["chunks"] >= 3
    assert data["sampling"]["duration_s"] >= killed_after_s - 0.5  # the in-flight chunk too
    assert any("asgiprof stopped before it finished" in n for n in data["notes"])
    (line,) = planted_lines(app_dir / "lifecycle.py")
    assert [(c["file"], c["line"]) for c in data["culprits"]][:1] == [
        (str(app_dir / "lifecycle.py"), line)
    ]
    # ... and no output, raw py-spy chunks included, holds a secret
    command = " ".join(data["target"]["command"])
    assert "--ssl-keyfile-password ***" in command and "postgres://app:***@db" in command
    assert_no_secret(out, done.stdout, done.stderr)


@pytest.mark.timeout(120)
def test_a_launched_server_that_exits_is_reported_with_its_status(
    tmp_path: Path, app_dir: Path
) -> None:
    port, out = free_port(), tmp_path / "out"
    proc = start_asgiprof(
        "run", "--out", str(out), "--", *uvicorn_command("lifecycle", port), cwd=app_dir
    )
    try:
        wait_until_serving(port, path="/block")
        drive_load(f"http://{HOST}:{port}", ["/block"], duration_s=1.0, concurrency=1)
        wait_for(out / "raw" / "chunk-0001.json")
        # WHEN the server dies in the middle of the profile
        httpx.get(f"http://{HOST}:{port}/exit/3", timeout=5, trust_env=False)
        done = finish(proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    # THEN the report is written from what was sampled and says how the target ended
    assert done.returncode == 0, done.stderr
    data = summary(out)
    assert data["target"]["exit_status"] == 3
    assert data["sampling"]["stopped_by"] == "target-exit"
    note = "the target exited with status 3 while sampled"
    assert any(note in n for n in data["notes"])
    assert note in " ".join(done.stdout.split())
    assert data["culprits"], "what was sampled before the exit is analysed"


@pytest.mark.timeout(120)
def test_an_attached_server_that_is_killed_is_reported(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    server = server_factory("blocking_sleep")
    out = tmp_path / "out"
    proc = start_asgiprof("attach", str(server.pid), "--out", str(out), cwd=tmp_path)
    try:
        wait_for(out / "raw" / "chunk-0001.json")
        server.proc.kill()
        done = finish(proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert done.returncode == 0, done.stderr
    data = summary(out)
    assert data["sampling"]["stopped_by"] == "target-exit"
    assert any("its exit status is known only to its parent" in n for n in data["notes"])


# --- 2. no harm ---------------------------------------------------------------------------------


def _end_attach(proc: subprocess.Popen[str], how: str) -> Finished | None:
    if how == "duration":
        return finish(proc, 60)
    if how == "kill":
        proc.kill()
        proc.communicate(timeout=10)
        return None
    if how == "pyspy-killed":
        # py-spy itself killed mid-chunk, twice: asgiprof starts the next chunk each time
        for _ in range(2):
            deadline = time.monotonic() + 10
            while True:  # chunks overlap at handover: the py-spy picked may end by itself
                spy = _a_pyspy_of(proc.pid)  # between two chunks there is briefly none
                time.sleep(0.5)
                try:
                    spy.kill()
                    break
                except psutil.NoSuchProcess:
                    assert time.monotonic() < deadline, "no py-spy lived long enough to kill"
            deadline = time.monotonic() + 10
            while not [p for p in tree(proc.pid) if "py-spy" in p.name() and p.pid != spy.pid]:
                assert time.monotonic() < deadline, "no py-spy after the killed one"
                time.sleep(0.02)
        return finish(proc, 60)
    proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGINT)
    if how == "double-sigint":
        time.sleep(0.02)  # asgiprof is now stopping py-spy: abort that
        proc.send_signal(signal.SIGINT)
    return finish(proc, 60)


@pytest.mark.timeout(180)
def test_the_attached_server_runs_on_however_asgiprof_ends(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    # GIVEN one server under steady load, attached to again and again
    server = server_factory("blocking_sleep")
    load = start_load_thread(server.url, ["/healthy", "/users/1"], duration_s=120, concurrency=2)
    try:
        for how in ("duration", "sigint", "sigterm", "double-sigint", "kill", "pyspy-killed"):
            out = tmp_path / how
            # --blocking: the mode in which py-spy stops the target's threads for each sample
            args = ["attach", str(server.pid), "--out", str(out), "--blocking"]
            duration = {"duration": "3", "pyspy-killed": "8"}.get(how)
            proc = start_asgiprof(
                *args, *(["--duration", duration] if duration else []), cwd=tmp_path
            )
            try:
                wait_for(out / "raw" / "chunk-0001.json")
                spies = [p for p in tree(proc.pid) if "py-spy" in p.name()]
                # WHEN asgiprof ends: normally, by Ctrl-C, SIGTERM, two Ctrl-C, or kill -9
                done = _end_attach(proc, how)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
            # THEN py-spy is gone, and the server is neither stopped nor traced and serves
            assert_all_gone(spies)
            assert_running_and_serving(server.pid, server.url)
            if how in ("duration", "sigint", "sigterm", "pyspy-killed"):
                assert done is not None and done.returncode == 0, (how, done)
                assert summary(out)["sampling"]["stopped_by"] == (
                    "interrupt" if how.startswith("sig") else "duration"
                )
            elif how == "double-sigint":  # unless it had finished before the second one
                assert done is not None and done.returncode in (0, 1), (how, done)
                assert "Traceback" not in done.stderr
                assert done.returncode == 0 or done.stderr.startswith("\naborted; the samples")
    finally:
        load.stop()
        load.join(15)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("how", ["sigint", "sigterm", "double-sigint"])
def test_run_stops_the_server_and_its_workers_and_leaves_no_process(
    tmp_path: Path, app_dir: Path, how: str
) -> None:
    # GIVEN `asgiprof run` of a two-worker server, sampling
    port, out = free_port(), tmp_path / "out"
    mark = tmp_path / "shutdown"
    argv = uvicorn_command("lifecycle", port, "--workers", "2")
    proc = start_asgiprof("run", "--out", str(out), "--", *argv, cwd=app_dir, env=secret_env(mark))
    try:
        wait_until_serving(port, path="/block")
        wait_for(out / "raw" / "chunk-0001.json")
        children = tree(proc.pid)
        # WHEN asgiprof gets Ctrl-C, SIGTERM (a supervisor), or Ctrl-C twice
        done = _end_attach(proc, how)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    # THEN the server, its workers and py-spy are all gone
    assert done is not None
    assert_all_gone(children, timeout_s=5)
    shutdowns = len(list(tmp_path.glob("shutdown.*")))
    if how == "double-sigint":
        assert done.returncode == 1 and "Traceback" not in done.stderr
    else:
        # ... stopped gracefully (each worker ran its shutdown), and the report was written
        assert done.returncode == 0, done.stderr
        assert shutdowns == 2
        assert summary(out)["sampling"]["stopped_by"] == "interrupt"


# --- 4. load -------------------------------------------------------------------------------


def _rss_mib(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


@pytest.mark.timeout(180)
def test_memory_stays_flat_under_sustained_load_and_sampling_is_reported_honestly(
    tmp_path: Path, examples_dir: Path
) -> None:
    # GIVEN 24 s at 100 Hz of a server under as much load as the machine gives (wrk if
    # installed, else the built-in driver), asgiprof's memory polled every 0.5 s
    duration_s = 24
    port, out = free_port(), tmp_path / "out"
    proc = start_asgiprof(
        "run",
        "--duration",
        str(duration_s),
        "--out",
        str(out),
        "--",
        *uvicorn_command("healthy", port, "--no-access-log"),
        cwd=examples_dir,
    )
    url = f"http://{HOST}:{port}"
    wrk = shutil.which("wrk")
    driver: subprocess.Popen[bytes] | None = None
    load = None
    rss: list[tuple[float, float]] = []
    try:
        wait_until_serving(port, path="/health")
        if wrk:
            cmd = [wrk, "-t1", "-c12", f"-d{duration_s}s", f"{url}/health"]
            driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            load = start_load_thread(url, ["/health"], duration_s=duration_s, concurrency=12)
        sampling_until = time.monotonic() + duration_s - 2
        while time.monotonic() < sampling_until and proc.poll() is None:
            rss.append((time.monotonic(), _rss_mib(proc.pid)))
            time.sleep(0.5)
        done = finish(proc, 120)
    finally:
        for p in (proc, driver):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)
        if load is not None:
            load.stop()
            load.join(15)
    assert done.returncode == 0, done.stderr
    # THEN asgiprof's RSS while sampling is flat: from the 3rd chunk on it grows < 8 MiB
    t0 = rss[0][0]
    warm = [mib for t, mib in rss if t - t0 >= 6]
    assert len(warm) >= 20
    assert max(warm) - warm[0] < 8, [round(m, 1) for m in warm]
    # ... and the summary says how much py-spy sampled, missed and failed, honestly
    sampling = summary(out)["sampling"]
    # py-spy spaces instants at random (a count of N varies by sqrt(N)): 4 sd above
    asked = sampling["rate_hz"] * sampling["duration_s"]
    assert 0 < sampling["intervals"] <= asked + 4 * asked**0.5
    assert 0 < sampling["coverage"] <= 1 and sampling["behind_s"] >= 0
    assert sampling["errors"] >= 0 and sampling["max_lag_s"] >= 0
    if sampling["coverage"] < 0.9:
        assert any(n.startswith("py-spy sampled") for n in summary(out)["notes"])


# --- 5. untrusted text ----------------------------------------------------------------------

HOSTILE_FUNCTION = "<img src=x onerror=alert(1)>[bold]{{ x }}\"'\x1b[31m"
HOSTILE_THREAD = "<script>alert('thread')</script>[bold]\x1b]0;pwned\x07"
HOSTILE_ROUTE = "/h/\"<i>[bold]'/{item}"
HOSTILE_APP = f"""
import threading
import time

from fastapi import FastAPI

threading.current_thread().name = {HOSTILE_THREAD!r}
app = FastAPI()


def blocker():
    time.sleep(0.06)  # planted: </script><script>alert("code")</script> [bold]{{{{ x }}}}


blocker.__code__ = blocker.__code__.replace(co_name={HOSTILE_FUNCTION!r})
if hasattr(blocker.__code__, "co_qualname"):
    blocker.__code__ = blocker.__code__.replace(co_qualname={HOSTILE_FUNCTION!r})


@app.get({HOSTILE_ROUTE!r})
async def hostile_route(item: str):
    blocker()
    return {{"item": item}}
"""
HTML_PAYLOADS = (
    "<img src=x onerror=alert(1)>",
    "<script>alert('thread')</script>",
    '<script>alert("code")</script>',
)


def _profile_hostile_app(app_dir: Path, out: Path, *argv_extra: bytes) -> Finished:
    port = free_port()
    argv = [os.fsencode(a) for a in uvicorn_command("hostile_app", port)] + list(argv_extra)
    proc = subprocess.Popen(
        [
            os.fsencode(sys.executable),
            b"-m",
            b"asgiprof",
            b"run",
            b"--duration",
            b"6",
            b"--out",
            os.fsencode(out),
            b"--",
            *argv,
        ],
        cwd=app_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # Wide enough that no table cell folds: a fold can split the path mid-word, and
        # pytest's tmp_path is long.
        env={**os.environ, "COLUMNS": "400"},
    )
    try:
        wait_until_serving(port, path="/openapi.json")
        drive_load(f"http://{HOST}:{port}", ["/h/\"<i>[bold]'/1"], duration_s=3.5, concurrency=1)
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return Finished(
        proc.returncode, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")
    )


def _assert_shown_as_text(out: Path, done: Finished) -> None:
    # HTML shows markup as text (in the terminal it is just text)...
    html = (out / "report.html").read_text(encoding="utf-8")
    for payload in HTML_PAYLOADS:
        assert payload not in html, payload
    # ... and nothing from the target reaches the terminal as a control sequence
    assert "\x1b" not in done.stdout + done.stderr
    for line in (out / "stacks.folded").read_text(encoding="utf-8").splitlines():
        assert line.rsplit(" ", 1)[1].isdigit()
    orjson.loads((out / "profile.speedscope.json").read_bytes())


@pytest.mark.timeout(120)
def test_hostile_names_paths_and_code_are_shown_as_text_everywhere(tmp_path: Path) -> None:
    # GIVEN a real app in a folder named with unicode, HTML, quotes and rich markup, whose
    # blocking function, route, source line and loop thread carry HTML, markup and escapes
    app_dir = tmp_path / "ünï <b>\"q'[bold]{{x}}"
    app_dir.mkdir()
    (app_dir / "hostile_app.py").write_text(HOSTILE_APP, encoding="utf-8")
    out = tmp_path / "out"
    # WHEN it is profiled for real
    done = _profile_hostile_app(app_dir, out)
    assert done.returncode == 0, done.stderr
    # THEN the data is exact: the culprit's file, function, code and route as the app has them
    data: dict[str, Any] = summary(out)
    (line,) = planted_lines(app_dir / "hostile_app.py")
    culprit = data["culprits"][0]
    assert (culprit["file"], culprit["line"]) == (str(app_dir / "hostile_app.py"), line)
    assert culprit["function"] == HOSTILE_FUNCTION
    assert culprit["code"].startswith('time.sleep(0.06)  # planted: </script><script>alert("code")')
    assert culprit["route"] == "GET " + HOSTILE_ROUTE
    # ... and every output shows it as text: terminal and HTML escape it, nothing executes
    assert "[bold]" in done.stdout  # rich markup printed, not applied
    assert "<img src=x onerror=alert(1)>[bold]{{ x }}\"'␛[31m" in done.stdout
    # The terminal shows paths relative to the server's working directory (the app folder).
    assert f"hostile_app.py:{line}" in done.stdout
    _assert_shown_as_text(out, done)


@pytest.mark.timeout(120)
def test_a_module_path_that_is_not_utf8_is_profiled_without_failing(tmp_path: Path) -> None:
    # GIVEN the app in a folder whose name is not UTF-8, given to the server as --app-dir
    app_dir = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9-\xff"))
    app_dir.mkdir()
    (app_dir / "hostile_app.py").write_text(HOSTILE_APP, encoding="utf-8")
    out = tmp_path / "out"
    done = _profile_hostile_app(tmp_path, out, b"--app-dir", os.fsencode(app_dir))
    # THEN the report is written, the command line keeps the bytes as \\x escapes
    assert done.returncode == 0, done.stderr
    data = summary(out)
    assert any("caf\\xe9-\\xff" in arg for arg in data["target"]["command"])
    meta = orjson.loads((out / "meta.json").read_bytes())
    assert any("caf\\xe9-\\xff" in arg for arg in meta["target"]["command"])
    # (py-spy 0.4 cannot read frames from a file whose name is not UTF-8: those samples
    # have no stack, so no culprit can name that file)
    _assert_shown_as_text(out, done)
