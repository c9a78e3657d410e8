"""What the live view costs: time to read one finished chunk into the panel.

The live view reads each 2 s chunk once, in asgiprof's main thread, while py-spy samples
the next one: its cost is that time per chunk (the lag it adds to the panel), and CPU that
asgiprof spends, never the target. This reads every chunk of synthetic output directories
(bench/synth.py: real py-spy speedscope format) and of any directory given (speedscope or
chrometrace chunks, as recorded), and prints
milliseconds per chunk (median, max) and the share of the chunk's 2 s that is.

    python bench/live_view.py                 # 1 min x 4 / 40 / 40 busy threads
    python bench/live_view.py OUT_DIR ...     # also real output directories
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from asgiprof import store
from asgiprof.live import LiveView


def chunk_times(out: Path) -> list[float]:
    meta = orjson_meta(out)
    view = LiveView(out, meta, threshold_s=0.02)
    times: list[float] = []
    for path in store.chunk_files(out):  # speedscope or chrometrace chunks
        index = int(path.name.split("-")[1].split(".")[0])
        t = time.perf_counter()
        view.add_chunk(index)
        view.render("status", "sampling")
        times.append(time.perf_counter() - t)
    assert view.chunks == len(times), (view.chunks, len(times), view.problems)
    return times


def orjson_meta(out: Path) -> int:
    import orjson

    pids = orjson.loads((out / store.META).read_bytes())["target"]["pids"]
    return int(pids[0]) if pids else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outs", nargs="*", type=Path)
    args = parser.parse_args()
    dirs: list[tuple[str, Path]] = [(str(p), p) for p in args.outs]
    with tempfile.TemporaryDirectory(prefix="asgiprof-live-bench-") as tmp:
        for name, extra in (("4 threads", []), ("40 threads", []), ("40 threads busy", ["--busy"])):
            threads = name.split()[0]
            out = Path(tmp) / name.replace(" ", "-")
            subprocess.run(
                [
                    sys.executable,
                    str(Path(__file__).with_name("synth.py")),
                    str(out),
                    "--minutes",
                    "1",
                    "--threads",
                    threads,
                    *extra,
                ],
                check=True,
                capture_output=True,
            )
            dirs.append((f"synthetic 1 min, {name}", out))
        print("| output | chunks | ms per chunk (median) | max | share of a 2 s chunk |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, out in dirs:
            times = chunk_times(out)
            med, top = statistics.median(times) * 1000, max(times) * 1000
            print(f"| {name} | {len(times)} | {med:.1f} | {top:.1f} | {med / 2000:.2%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
