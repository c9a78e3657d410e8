"""`def` routes' threadpool time against the time the app measured inside them.

A FastAPI app with three `def` routes (run in Starlette's threadpool) times its own work
per call: password hashing that releases the GIL (pbkdf2 or argon2), a pure-Python loop
that holds it, and a `time.sleep`. `asgiprof run` profiles it under load; each route's
`threadpool_ms` is compared with the app's time inside py-spy's chunks.

    python bench/threadpool_accuracy.py                            # 8 clients, pbkdf2
    python bench/threadpool_accuracy.py --clients 32 --hash argon2 # every worker busy

With many workers on CPU py-spy falls behind (each `--blocking` sample stops every
thread), and the instants it misses fall on the busiest stretches: `coverage` says how
many it took of those asked for.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
from collections import defaultdict
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: make `tests` importable
sys.path.insert(0, str(REPO / "bench"))

from _common import header, table  # noqa: E402

from asgiprof.record.loadgen import free_port  # noqa: E402
from tests.planted_truth import chunk_spans, overlap_s  # noqa: E402
from tests.targets import profile_under_load  # noqa: E402

HASHES = {
    "pbkdf2": 'hashlib.pbkdf2_hmac("sha256", b"pw", b"salt", 60_000).hex()[:8]',
    "argon2": 'PH.hash("hunter2")[-8:]',
}
APP = """
    import hashlib, json, os, time
    from argon2 import PasswordHasher
    from fastapi import FastAPI

    PH = PasswordHasher(time_cost=3, memory_cost=32768, parallelism=1)
    TRUTH = open(os.environ["THREADPOOL_TRUTH"], "a", buffering=1)
    app = FastAPI()


    def timed(route, work):
        started = time.time()
        t0 = time.perf_counter()
        out = work()
        TRUTH.write(json.dumps([started, route, time.perf_counter() - t0]) + "\\n")
        return out


    def spin():
        s = 0
        for i in range(300_000):
            s += i % 7
        return s


    @app.get("/login")
    def login():
        return {{"d": timed("GET /login", lambda: {HASH})}}


    @app.get("/checksum")
    def checksum():
        return {{"s": timed("GET /checksum", spin)}}


    @app.get("/slow")
    def slow():
        return {{"s": timed("GET /slow", lambda: time.sleep(0.02))}}


    @app.get("/items/{{i}}")
    async def item(i: int):
        return {{"i": i}}
"""
PATHS = ("/login", "/checksum", "/slow", "/items/1", "/items/2")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--hash", choices=sorted(HASHES), default="pbkdf2")
    parser.add_argument("--load-s", type=float, default=10.0)
    parser.add_argument("--keep", type=Path, help="keep the run's files here")
    args = parser.parse_args(argv)
    if args.load_s > 20:
        parser.error("--load-s above 20 s: keep load runs short on a shared machine")
    work = args.keep or Path(tempfile.mkdtemp(prefix="asgiprof-threadpool-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "tp_app.py").write_text(textwrap.dedent(APP.format(HASH=HASHES[args.hash])))
    truth_file = work / "truth.jsonl"
    port = free_port()
    server = [sys.executable, "-m", "uvicorn", "tp_app:app", "--port", str(port)]
    header(f"def routes' threadpool time against the app's ({args.clients} clients)")
    profiled = profile_under_load(
        ["run", "--duration", str(args.load_s + 4), "--", *server],
        cwd=work,
        out=work / "out",
        port=port,
        paths=PATHS,
        load_s=args.load_s,
        env={"THREADPOOL_TRUTH": str(truth_file)},
        concurrency=args.clients,
    )
    spans = chunk_spans(work / "out")
    truth_ms: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for line in truth_file.read_text().splitlines():
        started, route, elapsed = orjson.loads(line)
        inside = overlap_s(started, started + elapsed, spans)
        if inside > 0:
            truth_ms[route] += inside * 1000
            calls[route] += 1
    rows = [
        [
            r["route"],
            calls[r["route"]],
            f"{truth_ms[r['route']]:.0f}",
            f"{r['threadpool_ms']:.0f}",
            f"{r['threadpool_ms'] / truth_ms[r['route']] - 1:+.1%}",
        ]
        for r in profiled.summary["routes"]
        if truth_ms.get(r["route"])
    ]
    print(table(["route", "calls", "app ms", "threadpool ms", "error"], rows))
    sampling = profiled.summary["sampling"]
    changes = [
        f"{c['from_hz']}->{c['to_hz']} Hz at {c['at_s']} s" for c in sampling["rate_changes"]
    ]
    print(f"\npy-spy coverage {sampling['coverage']:.2f}; rate changes: {changes or 'none'}")
    print(f"files: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
