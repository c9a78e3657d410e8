"""Blocked time the profiled app measured itself, and the sampling error to judge by.

`truth_env(path)` is the environment that makes a server time its planted `time.sleep`
calls (tests/truth_site/sitecustomize.py); `planted_truth(out, path, file, line)` sums
those calls' overlap with the py-spy chunks asgiprof recorded into OUT (time between
chunks is not sampled), and `tolerance_ms` is K sampling sd of a blocked-time estimate
(samples in a block are Poisson: sd = sqrt(truth_s x rate) / rate) plus an allowance.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import orjson

TRUTH_ENV = "ASGIPROF_TRUTH"
SITE = Path(__file__).resolve().parent / "truth_site"
K_SD = 3.0
ALLOWANCE = 0.02  # beyond sampling: where a block's edges fall between samples


def truth_env(path: Path) -> dict[str, str]:
    pythonpath = os.environ.get("PYTHONPATH")
    return {
        TRUTH_ENV: str(path),
        "PYTHONPATH": str(SITE) + (os.pathsep + pythonpath if pythonpath else ""),
    }


def chunk_spans(out: Path) -> list[tuple[float, float]]:
    """(start, end) unix seconds of every py-spy chunk asgiprof recorded, in order."""
    meta = orjson.loads((out / "meta.json").read_bytes())
    started_at = float(meta["sampling"]["started_at"])
    spans = []
    for meta_file in (out / "raw").glob("chunk-*[0-9].json"):
        chunk = orjson.loads(meta_file.read_bytes())
        spans.append((started_at + float(chunk["start_s"]), started_at + float(chunk["end_s"])))
    return sorted(spans)


def overlap_s(start: float, end: float, spans: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in spans)


@dataclass(frozen=True, slots=True)
class PlantedTruth:
    ms: float  # summed call time inside the sampled chunks
    calls: int  # calls that overlapped them
    rate_hz: int
    logged: int  # calls the server logged in all (some may fall between chunks)

    @property
    def sd_ms(self) -> float:
        return math.sqrt(self.ms / 1000 * self.rate_hz) / self.rate_hz * 1000

    def tolerance_ms(self, k: float = K_SD, allowance: float = ALLOWANCE) -> float:
        return k * self.sd_ms + allowance * self.ms

    def z(self, estimate_ms: float) -> float:
        return (estimate_ms - self.ms) / self.sd_ms if self.ms > 0 else float("inf")

    def describe(self, estimate_ms: float) -> str:
        return (
            f"truth {self.ms:.0f} ms in {self.calls} calls (timed by the app), asgiprof "
            f"{estimate_ms:.0f} ms ({estimate_ms / self.ms - 1:+.1%}, z {self.z(estimate_ms):+.1f},"
            f" tolerance {self.tolerance_ms():.0f} ms)"
        )


def planted_truth(out: Path, truth_file: Path, file: Path, line: int) -> PlantedTruth:
    spans = chunk_spans(out)
    summary = orjson.loads((out / "summary.json").read_bytes())
    ms, calls, logged = 0.0, 0, 0
    # The server may name its file relative to its own working directory: match by name.
    name = file.name
    text = truth_file.read_text(encoding="utf-8") if truth_file.exists() else ""
    for record in text.splitlines():
        path, number, start, end = record.rsplit(" ", 3)
        if int(number) != line or os.path.basename(path) != name:
            continue
        logged += 1
        inside = overlap_s(float(start), float(end), spans)
        if inside > 0:
            ms += inside * 1000
            calls += 1
    return PlantedTruth(ms, calls, int(summary["sampling"]["rate_hz"]), logged)
