"""Every Analysis that `analyze()` builds in a unit test passes `Analysis.self_check()`: the
unit tests' hand-built profiles (hostile, multi-worker, fuzzed) are the check's inputs."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import asgiprof.analyze as pipeline
from asgiprof.analyze.result import Analysis


@pytest.fixture(autouse=True)
def self_checked_analyses(monkeypatch: pytest.MonkeyPatch) -> None:
    # `_result` assembles the Analysis at the end of every analyze() call; the real one runs,
    # then the invariants are checked on what it returned.
    assemble: Callable[..., Analysis] = pipeline._result

    def checked(*args: object) -> Analysis:
        analysis = assemble(*args)
        analysis.self_check()
        return analysis

    monkeypatch.setattr(pipeline, "_result", checked)
