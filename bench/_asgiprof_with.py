"""Run the asgiprof CLI with settings it has no option for (bench only).

    python bench/_asgiprof_with.py [--cpu-interval SECONDS] attach PID --rate 100 ...

`--cpu-interval` sets the resource monitor's thread-CPU polling interval (default 0.05 s),
so the overhead bench can measure what polling faster or slower costs.
"""

from __future__ import annotations

import functools
import sys


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["--cpu-interval"]:
        interval = float(argv[1])
        argv = argv[2:]
        import asgiprof.session as session
        from asgiprof.record.resources import ResourceMonitor

        # session.py builds its monitor as ResourceMonitor(path, pids, t0=...).
        session.ResourceMonitor = functools.partial(  # type: ignore[attr-defined,assignment]
            ResourceMonitor, cpu_interval_s=interval
        )
    sys.argv = ["asgiprof", *argv]
    from asgiprof.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
