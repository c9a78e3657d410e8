"""The commands behind `asgiprof check` and `asgiprof diff`: compute, then format.

check: OUT/summary.json -> gate.check -> text lines (+ GitHub annotations), JSON, JUnit
diff:  BASE, HEAD -> Profile -> Analysis (as `asgiprof report` builds them) -> diff.compare
       -> text or JSON, and diff.html
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

import orjson

from asgiprof.analyze.result import AnalysisParams
from asgiprof.errors import OutputDirError
from asgiprof.gate import Rules, check
from asgiprof.reporters.annotations import annotation_lines
from asgiprof.reporters.check import check_json, check_lines
from asgiprof.reporters.junit import write_junit

Format = Literal["text", "json"]


def _write(text: str) -> None:
    sys.stdout.write(text + "\n")


def run_check(out: Path, rules: Rules, junit: Path | None, format_: Format) -> int:
    """Print the verdict, write --junit; returns the exit code (0 pass, 1 fail)."""
    result = check(out, rules)
    if junit is not None:
        try:
            write_junit(result, junit)
        except OSError as exc:
            raise OutputDirError(f"cannot write --junit {junit}: {exc.strerror}") from exc
    if format_ == "json":
        _write(orjson.dumps(check_json(result), option=orjson.OPT_INDENT_2).decode())
        return result.exit_code
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for line in annotation_lines(result):
            _write(line)
    for line in check_lines(result):
        _write(line)
    return result.exit_code


def run_diff(
    base: Path, head: Path, out: Path | None, params: AnalysisParams, format_: Format
) -> None:
    from asgiprof.diff import compare, load_analysis
    from asgiprof.reporters.diff_html import write_diff_html
    from asgiprof.reporters.diff_text import diff_json, diff_lines

    result = compare(
        load_analysis(base, params), load_analysis(head, params), (str(base), str(head))
    )
    target = out or head
    try:
        target.mkdir(parents=True, exist_ok=True)
        page = write_diff_html(result, target)
    except OSError as exc:
        raise OutputDirError(f"cannot write diff.html into {target}: {exc.strerror}") from exc
    if format_ == "json":
        _write(orjson.dumps(diff_json(result), option=orjson.OPT_INDENT_2).decode())
        return
    for line in diff_lines(result):
        _write(line)
    _write(f"wrote {page}")
