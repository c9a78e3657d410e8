"""A target for bench/pyspy_times.py: 100 ms of pure-Python CPU, then a 100 ms sleep, over
and over for argv[2] seconds, each phase timed and appended to argv[1] as JSON
[start, cpu end, sleep end] (unix seconds)."""

import json
import sys
import time


def cpu(until: float) -> None:
    while time.perf_counter() < until:
        pass


def main() -> None:
    end = time.time() + float(sys.argv[2])
    with open(sys.argv[1], "w", encoding="utf-8") as log:
        while time.time() < end:
            start = time.time()
            cpu(time.perf_counter() + 0.1)
            computed = time.time()
            time.sleep(0.1)
            log.write(json.dumps([start, computed, time.time()]) + "\n")
            log.flush()


if __name__ == "__main__":
    main()
