"""Reporters: one module per output, each `render(analysis, out_dir) -> Path`.

Every reporter receives the same `Analysis` (never raw py-spy files) and writes one
file into the output directory; `write_all` runs them in a stable order.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

from asgiprof.analyze.result import Analysis


class Reporter(Protocol):
    name: str
    filename: str

    def render(self, analysis: Analysis, out_dir: Path) -> Path: ...


# module names under asgiprof.reporters, in the order their files are written
FILE_REPORTERS = ("summary_json", "folded", "speedscope", "pprof", "html")


def get_reporter(module: str) -> Reporter:
    mod = importlib.import_module(f"asgiprof.reporters.{module}")
    reporter: Reporter = mod.REPORTER
    return reporter


def write_all(analysis: Analysis, out_dir: Path) -> list[Path]:
    return [get_reporter(name).render(analysis, out_dir) for name in FILE_REPORTERS]
