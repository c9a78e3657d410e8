"""The busy apps' truth oracle (tests/busy/truth.py) times loop steps and planted calls right,
on asyncio and uvloop, and its frames stay out of the user's code (run in a subprocess:
the oracle patches asyncio for the whole process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from tests.busy.harness import is_await_line

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, time
    from tests.busy import truth

    async def blocker():
        with truth.planted("nap", "io"):
            time.sleep(0.04)  # planted: nap
        await asyncio.sleep(0)

    async def short():
        for _ in range(50):
            await asyncio.sleep(0)

    async def main():
        truth.start_loop_timer()
        await asyncio.gather(blocker(), short())
        truth.stop_loop_timer()

    if sys.argv[1] == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())
    """
)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_oracle_times_the_long_step_and_the_planted_call(loop: str, tmp_path: Path) -> None:
    script, log = tmp_path / "oracle_probe.py", tmp_path / "truth.jsonl"
    script.write_text(SCRIPT, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), loop],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "ASGIPROF_TRUTH": str(log)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    records = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    start = next(r for r in records if r["type"] == "start")
    assert start["timed_by"] == ("Handle._run" if loop == "asyncio" else "task factory")
    (planted,) = [r for r in records if r["type"] == "planted"]
    assert planted["tag"] == "nap" and planted["kind"] == "io"
    assert (
        planted["line"] == SCRIPT.splitlines().index("        time.sleep(0.04)  # planted: nap") + 1
    )
    assert 40 <= planted["ms"] < 400 and planted["cpu_ms"] < 20
    # the step that ran the sleep is one long step; the 50 short ones are only summed
    long_steps = [r for r in records if r["type"] == "step"]
    assert any(r["ms"] >= 40 and "blocker" in r["what"] for r in long_steps), long_steps
    steps = sum(r["other"][1] for r in records if r["type"] == "routes")
    assert steps >= 50


def test_the_oracle_frames_are_not_user_code() -> None:
    # asgiprof must see the oracle's frames on the loop's stacks as the loop's own
    import asyncio.events

    from tests.busy import truth

    hot = [truth.TruthMiddleware.__call__, truth.planted.__exit__]
    assert {f.__code__.co_filename for f in hot} == {asyncio.events.__file__}


MULTI_LINE_AWAIT = (
    "async def f(db):\n    x = (\n        await db.execute(\n            q\n        )\n    )\n"
)


@pytest.mark.parametrize(
    ("text", "line", "awaits"),
    [
        ("async def f(db):\n    x = await db.get(1)\n", 2, True),
        (MULTI_LINE_AWAIT, 4, True),  # py-spy names the line of the call's argument
        ("async def f(s):\n    async with s() as t:\n        t.work()\n", 2, True),
        ("async def f(s):\n    async with s() as t:\n        t.work()\n", 3, False),
        ("async def f():\n    json.dumps(x, default=g)  # await is just a word here\n", 2, False),
    ],
)
def test_await_lines_are_read_from_the_statement(
    text: str, line: int, awaits: bool, tmp_path: Path
) -> None:
    source = tmp_path / f"mod_{line}_{awaits}.py"
    source.write_text(text, encoding="utf-8")
    assert is_await_line({"file": str(source), "line": line, "code": None}) is awaits
