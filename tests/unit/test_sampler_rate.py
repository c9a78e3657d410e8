"""The sampler's rate decisions at a chunk's end (record/sampler.py `_adapt_rate`), on a
Sampler that never starts py-spy: a chunk that kept up raises the rate after enough clean
chunks, and no change is recorded once sampling is stopping (none would be sampled at)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from asgiprof.record.sampler import _CLEAN_CHUNKS_TO_RAISE, Sampler, SamplerConfig, _Run


def _sampler(tmp_path: Path) -> tuple[Sampler, _Run]:
    # GIVEN a sampler asked for 100 Hz, backed off to 24 Hz, one clean chunk short of
    # raising it again, and a py-spy run (a finished stand-in process) that kept up at 24 Hz
    sampler = Sampler(os.getpid(), tmp_path, time.time(), SamplerConfig(max_pause=0.03))
    sampler.rate_hz = 24
    sampler._clean_chunks = _CLEAN_CHUNKS_TO_RAISE - 1
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    return sampler, _Run(1, proc, tmp_path / "log", 24, 0.0)


def test_a_clean_chunk_raises_the_rate_within_the_pause_limit(tmp_path: Path) -> None:
    sampler, run = _sampler(tmp_path)
    # WHEN the chunk ends having taken its 48 instants and held the target 1% of 2 s
    sampler._adapt_rate(run, 48, 2.0, 0.0, 0.02)
    # THEN the rate goes up by half, as the 3% limit allows (24 x 3 / 1 = 72 Hz)
    assert sampler.rate_hz == 36
    assert [(c.from_hz, c.to_hz) for c in sampler.rate_changes] == [(24, 36)]


def test_no_rate_change_once_sampling_stops(tmp_path: Path) -> None:
    sampler, run = _sampler(tmp_path)
    # WHEN the same chunk ends because sampling stopped (the last chunk of the run)
    sampler.stop()
    sampler._adapt_rate(run, 48, 2.0, 0.0, 0.02)
    # THEN nothing is recorded: no chunk would be sampled at a new rate
    assert sampler.rate_hz == 24 and sampler.rate_changes == []
