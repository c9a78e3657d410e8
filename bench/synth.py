"""Synthetic asgiprof output directories: realistic py-spy speedscope chunks, as `run` writes.

    python bench/synth.py OUT --minutes 10 --threads 40 [--rate 100] [--busy] [--seed 1]

`--busy` models a saturated server instead (loop ~90% busy, workers ~60%, a new stack
almost every sample): the worst case for run-length encoding.

OUT gets what `asgiprof run/attach` leaves behind (see asgiprof/store/outdir.py): meta.json,
routes.json, resources.jsonl (thread CPU every 50 ms, resources every 1 s), and
raw/chunk-NNNN.speedscope.json + raw/chunk-NNNN.json, one pair per 2 s chunk, exactly in
py-spy 0.4's format with `--idle --threads --subprocesses` (root `process`/`thread` frames,
per-chunk frame tables, root-first sample lists, weights 1/rate, ~0.2 s between chunks).

The modelled server: one uvicorn process; thread 0 runs the event loop (idle in the selector
~55% of samples, busy in one of `routes` FastAPI handlers, 40 frames deep, with a blocking
stretch now and then); the other threads are AnyIO threadpool workers, idle in
`Queue.get` ~90% of samples and otherwise running a `def` route. The frame and stack
catalogue is taken from a real chunk of `examples/demo_app.py`; distinct stacks stay in the
low thousands however long the profile, as in real servers.
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

STD = "/usr/lib/python3.11"
SITE = "/srv/shop/.venv/lib/python3.11/site-packages"
APP = "/srv/shop/app"
PID = 4242
COMMAND = ["/srv/shop/.venv/bin/python3", "-m", "uvicorn", "shop.main:app", "--port", "8000"]

Frame = tuple[str, str, int]  # name, file, line

# The event-loop thread from the process entry down to the loop's run_once.
LOOP_BASE: tuple[Frame, ...] = (
    ("_run_module_as_main", "<frozen runpy>", 198),
    ("_run_code", "<frozen runpy>", 88),
    ("<module>", f"{SITE}/uvicorn/__main__.py", 4),
    ("Command.__call__", f"{SITE}/click/core.py", 1653),
    ("Command.main", f"{SITE}/click/core.py", 1560),
    ("Command.invoke", f"{SITE}/click/core.py", 1414),
    ("Context.invoke", f"{SITE}/click/core.py", 911),
    ("main", f"{SITE}/uvicorn/main.py", 448),
    ("run", f"{SITE}/uvicorn/main.py", 632),
    ("Server.run", f"{SITE}/uvicorn/server.py", 86),
    ("asyncio_run", f"{SITE}/uvicorn/_compat.py", 30),
    ("Runner.run", f"{STD}/asyncio/runners.py", 118),
    ("BaseEventLoop.run_until_complete", f"{STD}/asyncio/base_events.py", 640),
    ("BaseEventLoop.run_forever", f"{STD}/asyncio/base_events.py", 607),
)
LOOP_IDLE: tuple[Frame, ...] = (
    ("BaseEventLoop._run_once", f"{STD}/asyncio/base_events.py", 1884),
    ("EpollSelector.select", f"{STD}/selectors.py", 468),
)
# From Handle._run to the endpoint call, as FastAPI 0.11x/Starlette run a request.
REQUEST: tuple[Frame, ...] = (
    ("BaseEventLoop._run_once", f"{STD}/asyncio/base_events.py", 1922),
    ("Handle._run", f"{STD}/asyncio/events.py", 80),
    ("RequestResponseCycle.run_asgi", f"{SITE}/uvicorn/protocols/http/h11_impl.py", 411),
    ("ProxyHeadersMiddleware.__call__", f"{SITE}/uvicorn/middleware/proxy_headers.py", 63),
    ("FastAPI.__call__", f"{SITE}/fastapi/applications.py", 1224),
    ("Starlette.__call__", f"{SITE}/starlette/applications.py", 96),
    ("ServerErrorMiddleware.__call__", f"{SITE}/starlette/middleware/errors.py", 164),
    ("ExceptionMiddleware.__call__", f"{SITE}/starlette/middleware/exceptions.py", 63),
    (
        "wrap_app_handling_exceptions.<locals>.wrapped_app",
        f"{SITE}/starlette/_exception_handler.py",
        42,
    ),
    ("AsyncExitStackMiddleware.__call__", f"{SITE}/fastapi/middleware/asyncexitstack.py", 18),
    ("Router.__call__", f"{SITE}/starlette/routing.py", 683),
    ("APIRouter.app", f"{SITE}/fastapi/routing.py", 2929),
    ("APIRoute.handle", f"{SITE}/fastapi/routing.py", 1373),
    ("request_response.<locals>.app", f"{SITE}/fastapi/routing.py", 175),
    (
        "wrap_app_handling_exceptions.<locals>.wrapped_app",
        f"{SITE}/starlette/_exception_handler.py",
        42,
    ),
    ("request_response.<locals>.app.<locals>.app", f"{SITE}/fastapi/routing.py", 161),
    ("get_request_handler.<locals>.app", f"{SITE}/fastapi/routing.py", 762),
    ("run_endpoint_function", f"{SITE}/fastapi/routing.py", 381),
)
# Framework-only busy callbacks (parsing requests, writing responses).
FRAMEWORK_BUSY: tuple[tuple[Frame, ...], ...] = (
    (
        ("BaseEventLoop._run_once", f"{STD}/asyncio/base_events.py", 1922),
        ("Handle._run", f"{STD}/asyncio/events.py", 80),
        ("H11Protocol.data_received", f"{SITE}/uvicorn/protocols/http/h11_impl.py", 171),
        ("H11Protocol.handle_events", f"{SITE}/uvicorn/protocols/http/h11_impl.py", 180),
        ("Connection.next_event", f"{SITE}/h11/_connection.py", 477),
    ),
    (
        ("BaseEventLoop._run_once", f"{STD}/asyncio/base_events.py", 1922),
        ("Handle._run", f"{STD}/asyncio/events.py", 80),
        ("RequestResponseCycle.run_asgi", f"{SITE}/uvicorn/protocols/http/h11_impl.py", 411),
        ("RequestResponseCycle.send", f"{SITE}/uvicorn/protocols/http/h11_impl.py", 500),
        ("Connection.send", f"{SITE}/h11/_connection.py", 512),
    ),
)
WORKER_BASE: tuple[Frame, ...] = (
    ("Thread._bootstrap", f"{STD}/threading.py", 1002),
    ("Thread._bootstrap_inner", f"{STD}/threading.py", 1045),
    ("WorkerThread.run", f"{SITE}/anyio/_backends/_asyncio.py", 1113),
)
WORKER_IDLE: tuple[Frame, ...] = (
    ("Queue.get", f"{STD}/queue.py", 171),
    ("Condition.wait", f"{STD}/threading.py", 327),
)
LIBRARY_LEAVES: tuple[tuple[Frame, ...], ...] = (
    (),
    (
        ("dumps", f"{STD}/json/__init__.py", 231),
        ("JSONEncoder.encode", f"{STD}/json/encoder.py", 200),
    ),
    (
        ("Session.execute", f"{SITE}/sqlalchemy/orm/session.py", 2351),
        ("Connection._execute_context", f"{SITE}/sqlalchemy/engine/base.py", 1843),
        ("DefaultDialect.do_execute", f"{SITE}/sqlalchemy/engine/default.py", 924),
    ),
    (("BaseModel.model_validate", f"{SITE}/pydantic/main.py", 627),),
    (
        ("Client.get", f"{SITE}/httpx/_client.py", 1066),
        ("Client.send", f"{SITE}/httpx/_client.py", 926),
    ),
)


@dataclass(frozen=True, slots=True)
class Shape:
    minutes: float
    threads: int
    rate_hz: int = 100
    routes: int = 40
    busy: bool = False  # worst case: loop ~90% busy, workers ~60% busy, stacks change often
    chunk_s: float = 2.0
    gap_s: float = 0.2  # py-spy restart between chunks
    seed: int = 1


class Catalogue:
    """Global frames and stacks (root first, as tuples of frame ids) of the modelled server."""

    def __init__(self, shape: Shape) -> None:
        self.frames: list[Frame] = []
        self._ids: dict[Frame, int] = {}
        self.routes: list[dict[str, object]] = []
        base = self._stack(LOOP_BASE)
        self.loop_idle = base + self._stack(LOOP_IDLE)
        self.framework_busy = [base + self._stack(s) for s in FRAMEWORK_BUSY]
        request = base + self._stack(REQUEST)
        self.loop_busy: list[tuple[int, ...]] = []  # per route, several leaves
        self.loop_busy_route: list[int] = []
        self.worker_busy: list[tuple[int, ...]] = []
        worker = self._stack(WORKER_BASE)
        self.worker_idle = worker + self._stack(WORKER_IDLE)
        run_sync = self._stack(
            (
                ("_WorkerThread._run", f"{SITE}/anyio/_backends/_asyncio.py", 967),
                ("Context.run", "<built-in>", 0),
            )
        )
        for r in range(shape.routes):
            module = f"{APP}/routes/r{r:02d}.py"
            is_async = r % 4 != 3  # one route in four is a `def` route (threadpool)
            name = f"handler_{r:02d}"
            first = 20 + (r % 7) * 3
            self.routes.append(
                {
                    "method": "GET" if r % 3 else "POST",
                    "path": f"/api/v1/r{r:02d}/{{item_id}}",
                    "endpoint": f"shop.routes.r{r:02d}.{name}",
                    "file": module,
                    "first_line": first,
                    "last_line": first + 30,
                    "is_async": is_async,
                }
            )
            for k in range(24):  # distinct lines inside the endpoint and its helpers
                line = first + 2 + k % 12
                user = [(name, module, line)]
                if k >= 12:
                    helper = f"{APP}/services/s{(r + k) % 9}.py"
                    user.append((f"service_{k % 5}", helper, 40 + k))
                stack = self._stack((*user, *LIBRARY_LEAVES[k % len(LIBRARY_LEAVES)]))
                if is_async:
                    self.loop_busy.append(request + stack)
                    self.loop_busy_route.append(r)
                else:
                    self.worker_busy.append(worker + run_sync + stack)

    def _stack(self, frames: tuple[Frame, ...] | list[Frame]) -> tuple[int, ...]:
        out = []
        for f in frames:
            fid = self._ids.get(f)
            if fid is None:
                fid = self._ids[f] = len(self.frames)
                self.frames.append(f)
            out.append(fid)
        return tuple(out)


class ThreadModel:
    """Sample-by-sample state machine of one thread: runs of one stack, random lengths."""

    def __init__(self, cat: Catalogue, is_loop: bool, rng: random.Random, busy: bool) -> None:
        self.cat = cat
        self.is_loop = is_loop
        self.busy = busy
        self.rng = rng
        self.stack = cat.loop_idle if is_loop else cat.worker_idle
        self.left = 1

    def next_run(self) -> tuple[tuple[int, ...], int]:
        rng, cat = self.rng, self.cat
        if self.busy:  # a saturated server: a new stack almost every sample
            if self.is_loop:
                if rng.random() < 0.1:
                    return cat.loop_idle, 1
                return rng.choice(cat.loop_busy), 1 + int(rng.expovariate(1 / 0.5))
            if rng.random() < 0.4:
                return cat.worker_idle, 1 + int(rng.expovariate(1 / 2))
            return rng.choice(cat.worker_busy), 1 + int(rng.expovariate(1 / 1))
        if self.is_loop:
            u = rng.random()
            if u < 0.5:
                return cat.loop_idle, 1 + int(rng.expovariate(1 / 4))
            if u < 0.6:
                return rng.choice(cat.framework_busy), 1
            n = 1 + int(rng.expovariate(1 / 1.5))
            if rng.random() < 0.03:  # a blocking stretch: 30-300 ms
                n = rng.randint(3, 30)
            return rng.choice(cat.loop_busy), n
        if rng.random() < 0.85:
            return cat.worker_idle, 1 + int(rng.expovariate(1 / 60))
        return rng.choice(cat.worker_busy), 1 + int(rng.expovariate(1 / 8))

    def samples(self, n: int) -> list[tuple[int, ...]]:
        out: list[tuple[int, ...]] = []
        while len(out) < n:
            if self.left <= 0:
                self.stack, self.left = self.next_run()
            take = min(self.left, n - len(out))
            out.extend([self.stack] * take)
            self.left -= take
        return out


def _thread_ids(threads: int) -> list[tuple[int, str]]:
    tids = [(PID, "MainThread")]
    tids += [(PID + 100 + i, "AnyIO worker thread") for i in range(threads - 1)]
    return tids


def chunk_document(
    cat: Catalogue,
    per_thread: list[tuple[int, str, list[tuple[int, ...]]]],
    rate_hz: int,
) -> bytes:
    """One py-spy speedscope document: chunk-local frame table, root frames per thread."""
    local: dict[object, int] = {}
    frames: list[dict[str, object]] = []

    def index(key: object, frame: dict[str, object]) -> int:
        idx = local.get(key)
        if idx is None:
            idx = local[key] = len(frames)
            frames.append(frame)
        return idx

    process_name = f'process {PID}:"{" ".join(COMMAND)}"'
    process = index("process", {"name": process_name, "file": "", "line": 0, "col": None})
    profiles = []
    weight = round(1 / rate_hz, 6)
    for tid, tname, stacks in per_thread:
        thread = index(
            ("thread", tid),
            {"name": f"thread ({tid}): {tname}", "file": "", "line": 0, "col": None},
        )
        as_lists: dict[tuple[int, ...], list[int]] = {}
        samples = []
        for stack in stacks:
            lst = as_lists.get(stack)
            if lst is None:
                lst = [process, thread]
                for fid in stack:
                    name, file, line = cat.frames[fid]
                    lst.append(index(fid, {"name": name, "file": file, "line": line, "col": None}))
                as_lists[stack] = lst
            samples.append(lst)
        profiles.append(
            {
                "type": "sampled",
                "name": f'Process {PID} Thread {tid} "{tname}"',
                "unit": "seconds",
                "startValue": 0.0,
                "endValue": round(len(samples) * weight, 6),
                "samples": samples,
                "weights": [weight] * len(samples),
            }
        )
    doc = {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "profiles": profiles,
        "shared": {"frames": frames},
        "activeProfileIndex": None,
        "exporter": "py-spy@0.4.3",
        "name": "py-spy profile",
    }
    return orjson.dumps(doc)


def _dump(path: Path, data: object, indent: bool = True) -> None:
    opt = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS if indent else 0
    path.write_bytes(orjson.dumps(data, option=opt))


def generate(out: Path, shape: Shape) -> dict[str, float]:
    """Write a synthetic output directory; returns its size figures."""
    rng = random.Random(shape.seed)
    cat = Catalogue(shape)
    threads = _thread_ids(shape.threads)
    models = [ThreadModel(cat, i == 0, rng, shape.busy) for i in range(len(threads))]
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    duration_s = shape.minutes * 60.0
    period = shape.chunk_s + shape.gap_s
    n_chunks = max(1, round(duration_s / period))
    started_at = 1_700_000_000.0
    total_samples = 0
    raw_bytes = 0
    for c in range(n_chunks):
        start_s = c * period + 0.05
        n = max(1, int(shape.chunk_s * shape.rate_hz) - rng.randint(0, 3))
        per_thread = []
        for (tid, tname), model in zip(threads, models, strict=True):
            # Threads started lazily have fewer samples in their first chunk.
            k = n if c > 0 or tid == PID else max(1, n - rng.randint(0, n // 2))
            per_thread.append((tid, tname, model.samples(k)))
        data = chunk_document(cat, per_thread, shape.rate_hz)
        name = f"chunk-{c + 1:04d}"
        (raw / f"{name}.speedscope.json").write_bytes(data)
        raw_bytes += len(data)
        _dump(
            raw / f"{name}.json",
            {
                "start_s": start_s,
                "end_s": start_s + shape.chunk_s + 0.02,
                "samples": n * len(threads),
                "errors": 0,
                "rc": 0,
            },
        )
        total_samples += n * len(threads)
    end_s = n_chunks * period
    _dump(
        out / "meta.json",
        {
            "format": 1,
            "target": {
                "app_spec": "shop.main:app",
                "command": COMMAND,
                "cwd": "/srv/shop",
                "exit_status": None,
                "mode": "attach",
                "pids": [PID],
                "python": COMMAND[0],
                "server": "uvicorn",
            },
            "sampling": {
                "duration_s": end_s,
                "errors": 0,
                "rate_hz": shape.rate_hz,
                "samples": total_samples,
                "started_at": started_at,
                "stopped_by": "interrupt",
            },
        },
    )
    _dump(out / "routes.json", {"source": "app", "error": None, "routes": cat.routes})
    _write_resources(out / "resources.jsonl", threads, end_s, started_at, rng)
    return {
        "chunks": n_chunks,
        "samples": total_samples,
        "raw_mb": raw_bytes / 1e6,
        "frames": len(cat.frames),
    }


def _write_resources(
    path: Path, threads: list[tuple[int, str]], end_s: float, t0: float, rng: random.Random
) -> None:
    tids = [tid for tid, _ in threads]
    cpu = [0] * len(tids)
    lines = [
        {
            "k": "start",
            "t0": t0,
            "cpu_clock": "schedstat",
            "cpu_interval_s": 0.05,
            "resource_interval_s": 1.0,
        },
        {"k": "watch", "t_s": 0.0, "pid": PID},
    ]
    opt = orjson.OPT_APPEND_NEWLINE
    with path.open("wb") as f:
        f.write(b"".join(orjson.dumps(r, option=opt) for r in lines))
        steps = int(end_s / 0.05) + 2
        buf: list[bytes] = []
        for i in range(steps):
            t = round(i * 0.05, 3)
            cpu[0] += rng.randint(10_000, 50_000)
            for j in range(1, len(cpu)):
                cpu[j] += rng.choice((0, 0, 0, 0, 50_000))
            buf.append(
                orjson.dumps(
                    {"k": "cpu", "t_s": t, "pid": PID, "tids": tids, "cpu_us": cpu}, option=opt
                )
            )
            if i % 20 == 0:
                rec = {
                    "k": "res",
                    "t_s": t,
                    "pid": PID,
                    "rss_bytes": 80_000_000 + i * 100,
                    "fds": 40,
                    "threads": len(tids),
                    "conns": 12,
                    "by_remote_port": {"5432": 5},
                    "by_listen_port": {"8000": 7},
                }
                buf.append(orjson.dumps(rec, option=opt))
            if len(buf) > 4096:
                f.write(b"".join(buf))
                buf.clear()
        f.write(b"".join(buf))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=40)
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--busy", action="store_true", help="worst case: stacks change often")
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"{args.out} is not empty")
    start = time.perf_counter()
    info = generate(
        args.out, Shape(args.minutes, args.threads, args.rate, busy=args.busy, seed=args.seed)
    )
    took = time.perf_counter() - start
    print(
        f"wrote {args.out}: {info['chunks']:.0f} chunks, {info['samples']:.0f} samples, "
        f"{info['raw_mb']:.1f} MB of py-spy JSON in {took:.1f} s"
    )


if __name__ == "__main__":
    main()
