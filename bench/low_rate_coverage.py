"""Does py-spy take the instants its rate asks for, at low rates too (issue 16)?

py-spy spaces its instants at random (exponentially around 1/rate), so a chunk's count of N
varies by about sqrt(N). Told to stop (SIGINT), it samples no more, but its file appears
only about two intervals later (0.2 s at 10 Hz). A chunk span that ended at the file made
py-spy look behind at low rates; spans now end at the signal. For each rate, `asgiprof
attach --max-pause 0` samples the reference app (idle: what is counted does not depend on
load) and this prints the instants taken over those asked inside the chunk spans (± one
standard deviation of the count), what the same ratio would read with spans ending at the
file (`written_s`), the wait for the file, summary.json's coverage, and whether the report
said py-spy fell behind.

    python bench/low_rate_coverage.py                  # ~2.5 min
    python bench/low_rate_coverage.py --rates 10 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Server, header, table  # noqa: E402
from pause_cost import _profile  # noqa: E402


def _row(rate: int, out: Path) -> list[object]:
    chunks = [json.loads(p.read_text()) for p in sorted((out / "raw").glob("chunk-*[0-9].json"))]
    taken = sum(c["intervals"] for c in chunks)
    asked = sum(c["rate_hz"] * (c["end_s"] - c["start_s"]) for c in chunks)
    to_file = sum(c["rate_hz"] * (c["written_s"] - c["start_s"]) for c in chunks)
    waits = [c["written_s"] - c["end_s"] for c in chunks]
    summary = json.loads((out / "summary.json").read_text())
    behind = any(n.startswith("py-spy sampled") for n in summary["notes"])
    return [
        rate,
        len(chunks),
        taken,
        f"{taken / asked:.3f} ± {1 / math.sqrt(asked):.3f}",
        f"{taken / to_file:.3f}",
        f"{sum(waits) / len(waits) * 1000:.0f}" if waits else "-",
        summary["sampling"]["coverage"],
        "yes" if behind else "no",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="5,10,20,100", help="rates (Hz) to try")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    header("py-spy's instants against those asked, by rate")
    rows = []
    with tempfile.TemporaryDirectory(prefix="asgiprof-coverage-") as tmp:
        server = Server("ref_app", Path(tmp) / "server.log")
        with server:
            time.sleep(1.0)
            for rate in (int(r) for r in args.rates.split(",")):
                out = Path(tmp) / f"r{rate}"
                _profile(server.pid, out, args.seconds, "--rate", str(rate), "--max-pause", "0")
                rows.append(_row(rate, out))
                print("  ", *rows[-1], file=sys.stderr)
    print(
        table(
            [
                "rate Hz",
                "chunks",
                "instants",
                "taken / asked (span to the signal)",
                "taken / asked (span to the file)",
                "file after the signal, ms (mean)",
                "summary coverage",
                "said behind",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
