"""The CI gate end to end: README's "In CI" commands as written, `run --load` with wrk and
with a pytest suite as the load, `check` on the demo and healthy apps, and `diff` of the
demo against a copy with one planted line fixed."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import junitparser
import orjson
import pytest

from asgiprof.record.loadgen import free_port
from tests.profiling import Finished, asgiprof, summary
from tests.servers import ServerFactory, planted_lines

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("needs_ptrace")]

ROOT = Path(__file__).resolve().parents[2]
WRK = shutil.which("wrk") or "/usr/bin/wrk"
VENV_BIN = str(Path(sys.executable).parent)


def _readme_ci_commands() -> list[str]:
    """The `run:` steps of README's "In CI" job that call asgiprof, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## In CI\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    return [m[1] for m in re.finditer(r"^\s*- run: (asgiprof .+)$", block, re.MULTILINE)]


def _shell(command: str, cwd: Path, timeout_s: float = 90.0) -> Finished:
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}", "COLUMNS": "200"}
    env.pop("GITHUB_ACTIONS", None)
    done = subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )
    return Finished(done.returncode, done.stdout, done.stderr)


def _copy_examples(tmp_path: Path) -> Path:
    work = tmp_path / "repo"
    shutil.copytree(ROOT / "examples", work / "examples")
    return work


@pytest.mark.timeout(180)
def test_the_readme_ci_job_passes_on_the_healthy_app_and_fails_on_the_demo(
    tmp_path: Path,
) -> None:
    # GIVEN the README's asgiprof steps, as written (a free port instead of 8000)
    commands = _readme_ci_commands()
    assert [c.split()[1] for c in commands] == ["run", "check"]
    port = str(free_port())
    commands = [c.replace("--port 8000", f"--port {port}") for c in commands]
    run, check = commands
    work = _copy_examples(tmp_path)
    assert "wrk " in run and "{url}" in run

    # WHEN the job runs them on the healthy app
    done = _shell(run, work)
    assert done.returncode == 0, done.stdout + done.stderr
    out = work / "asgiprof-out"
    load = orjson.loads((out / "load.json").read_bytes())
    # THEN sampling stopped when wrk ended, and wrk's outcome is recorded
    assert (load["stopped_by"], load["exit_status"]) == ("exit", 0)
    assert load["requests"] > 0 and load["url"] == f"http://127.0.0.1:{port}"
    assert summary(out)["sampling"]["stopped_by"] == "load"
    assert summary(out)["load"]["failure"] is None
    assert (out / "report.html").is_file()
    gate = _shell(check, work)
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert gate.stdout.splitlines()[-1].startswith("asgiprof check: passed")
    suites = junitparser.JUnitXml.fromfile(str(work / "asgiprof-junit.xml"))
    cases = [c for s in suites for c in s]
    assert cases and all(c.is_passed or c.is_skipped for c in cases)

    # WHEN the same commands profile the demo app (all its routes, through wrk's Lua script)
    shutil.rmtree(out)
    demo_run = run.replace("healthy:app", "demo_app:app").replace(
        "{url}/items/1", "-s examples/demo_load.lua {url}"
    )
    done = _shell(demo_run, work)
    assert done.returncode == 0, done.stdout + done.stderr
    gate = _shell(check, work)
    # THEN the check fails, one line per culprit the analysis ranked, naming its line
    assert gate.returncode == 1, gate.stdout + gate.stderr
    culprits = summary(out)["culprits"]
    demo = work / "examples" / "demo_app.py"
    planted = set(planted_lines(demo))
    found = {c["line"] for c in culprits if Path(c["file"]).resolve() == demo.resolve()}
    assert found & planted, (found, planted)
    failures = [line for line in gate.stdout.splitlines() if line.startswith("culprit: ")]
    assert len(failures) == len(culprits)
    for c in culprits:
        named = [f for f in failures if f" examples/demo_app.py:{c['line']} " in f]
        assert len(named) == 1, (c, failures)
        assert f"{c['kind']}: " in named[0] and (c["route"] or "(no route)") in named[0]


@pytest.mark.timeout(120)
def test_a_pytest_suite_as_load_and_its_failure_fails_the_check(
    tmp_path: Path, examples_dir: Path
) -> None:
    # GIVEN a test suite against the live server: one test passes, one fails
    suite = tmp_path / "test_live.py"
    suite.write_text(
        "import os\nimport httpx\n\n"
        "def test_items():\n"
        "    for _ in range(50):\n"
        "        assert httpx.get(os.environ['BASE_URL'] + '/items/1').status_code == 200\n\n"
        "def test_missing():\n"
        "    assert httpx.get(os.environ['BASE_URL'] + '/nope').status_code == 200\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    load = (
        f"BASE_URL={{url}} {shlex.quote(sys.executable)} -m pytest -q -p no:cacheprovider {suite}"
    )
    done = asgiprof(
        "run", "--out", str(out), "--load", load, "--",
        sys.executable, "-m", "uvicorn", "healthy:app", "--port", "0", "--log-level", "warning",
        cwd=examples_dir,
    )  # fmt: skip
    # THEN the profile is written, the failed load recorded and reported
    assert done.returncode == 0, done.stdout + done.stderr
    data = summary(out)
    assert data["load"]["exit_status"] == 1
    assert data["load"]["failure"] == "the load command exited with status 1"
    assert any("1 failed, 1 passed" in line for line in data["load"]["output_tail"])
    assert "the load command exited with status 1" in done.stdout
    gate = asgiprof("check", str(out), "--format", "json", cwd=tmp_path)
    assert gate.returncode == 1
    verdict = orjson.loads(gate.stdout)
    assert [f["rule"] for f in verdict["failures"]] == ["load"]


def test_a_load_command_not_found_is_bad_input_before_anything_starts(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = asgiprof(
        "run", "--out", str(out), "--load", "no-such-loader-7c1 {url}", "--",
        sys.executable, "-m", "uvicorn", "healthy:app", "--port", "0",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: load command not found: no-such-loader-7c1: install it or give its full path"
    ]
    assert not out.exists()


def _profile_demo(app_dir: Path, out: Path) -> None:
    # asgiprof's own generator on three demo routes: the planted line's route gets a third
    # of the requests, so a 12 s run holds dozens of its episodes even on a busy machine
    # (a line gone is significant from ~10 episodes: 2 * 0.5^n below 0.05 over ~25 figures)
    urls = ("/api/users/1", "/api/orders/7", "/api/health")
    done = asgiprof(
        "run", "--out", str(out), "--duration", "12", "--concurrency", "8",
        *(arg for url in urls for arg in ("--load-url", "{url}" + url)), "--",
        sys.executable, "-m", "uvicorn", "demo_app:app", "--port", "0", "--loop", "asyncio",
        "--log-level", "warning",
        cwd=app_dir,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.timeout(300)
def test_diff_shows_a_fixed_line_gone_and_two_runs_of_one_app_unchanged(
    tmp_path: Path, examples_dir: Path
) -> None:
    # GIVEN the demo and a copy with one planted line fixed (the same file name, moved)
    fixed_dir = tmp_path / "fixed"
    fixed_dir.mkdir()
    source = (examples_dir / "demo_app.py").read_text(encoding="utf-8")
    planted = "    time.sleep(0.05)  # planted: sync call (think requests.get) in `async def`"
    assert source.count(planted) == 1
    (fixed_dir / "demo_app.py").write_text(
        source.replace(planted, "    await asyncio.sleep(0.05)  # fixed"), encoding="utf-8"
    )
    base, again, head = tmp_path / "base", tmp_path / "again", tmp_path / "head"
    for app_dir, out in ((examples_dir, base), (fixed_dir, head), (examples_dir, again)):
        _profile_demo(app_dir, out)
    line = source.splitlines().index(planted) + 1

    # WHEN the base is compared with the fixed copy
    done = asgiprof("diff", str(base), str(head), "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    diff = orjson.loads(done.stdout)
    # THEN the line is gone and its route's blocked time down, both significant
    gone = [c for c in diff["culprits"] if (c["file"], c["base_line"]) == ("demo_app.py", line)]
    assert [c["status"] for c in gone] == ["gone"], diff["culprits"]
    assert gone[0]["blocked"]["verdict"] == "significant"
    route = next(r for r in diff["routes"] if r["route"] == gone[0]["route"])
    assert route["blocked"]["delta"] < 0 and route["blocked"]["verdict"] == "significant"
    # per request of that route too: the generator counted them per path
    assert route["blocked_per_request"]["verdict"] == "significant"
    assert (head / "diff.html").is_file()

    # WHEN two runs of the unchanged demo are compared, nothing is significant
    done = asgiprof("diff", str(base), str(again), "--out", str(tmp_path / "d2"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "asgiprof diff: no significant change" in done.stdout, done.stdout

    # WHEN one run says it was sampled at another rate, the diff is refused in one line
    other = tmp_path / "other-rate"
    shutil.copytree(again, other)
    meta = orjson.loads((other / "meta.json").read_bytes())
    meta["sampling"]["rate_hz"] = 50
    (other / "meta.json").write_bytes(orjson.dumps(meta))
    done = asgiprof("diff", str(base), str(other), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: incomparable runs: BASE was sampled at 100 Hz and HEAD at 50 Hz: profile "
        "both at one --rate"
    ]


def test_diff_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "meta.json").write_text("{", encoding="utf-8")
    for args in (
        ("diff", str(tmp_path / "missing"), str(tmp_path / "missing")),
        ("diff", str(tmp_path / "broken"), str(tmp_path / "broken")),
        ("check", str(tmp_path / "broken")),
    ):
        done = asgiprof(*args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert done.stderr.startswith("error: ")


@pytest.mark.timeout(120)
def test_attach_with_wrk_stops_when_wrk_ends_and_leaves_the_server_running(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    # GIVEN a running demo server (started elsewhere)
    server = server_factory("demo_app", ready_path="/api/health")
    out = tmp_path / "out"
    # WHEN asgiprof attaches with wrk as the load (no --duration)
    done = asgiprof(
        "attach", str(server.pid), "--out", str(out),
        "--load", f"{WRK} -t1 -c4 -d5s {{url}}/api/users/1",
        cwd=tmp_path,
    )  # fmt: skip
    # THEN sampling ended with wrk, on the port the server listens on, and it still serves
    assert done.returncode == 0, done.stdout + done.stderr
    data = summary(out)
    assert data["sampling"]["stopped_by"] == "load"
    assert data["load"]["url"] == server.url
    assert data["load"]["exit_status"] == 0 and data["load"]["requests"] > 0
    assert 4.5 < data["load"]["duration_s"] < 15
    assert httpx.get(f"{server.url}/api/health", timeout=10).status_code == 200
    demo = Path(server.cwd) / "demo_app.py"
    users = [c for c in data["culprits"] if c["route"] == "GET /api/users/{user_id}"]
    assert any(c["line"] in planted_lines(demo) for c in users), data["culprits"]
