"""GitHub Actions workflow commands (`::error file=F,line=L,title=T::message`) for check.

Escaping follows the runner's rules (actions/toolkit `command.ts`): in the message `%`, CR
and LF become `%25`, `%0D`, `%0A`; property values also escape `:` and `,` (`%3A`, `%2C`),
which would otherwise end the value. Paths are made relative to GITHUB_WORKSPACE, since
GitHub places annotations by repository path.
"""

from __future__ import annotations

import os

from asgiprof.gate import CheckResult, Failure
from asgiprof.text import terminal_safe


def escape_data(text: str) -> str:
    """`%`, CR and LF escaped, then other terminal controls made visible (a CI log is a
    terminal too: an escape sequence from the target must not reach it)."""
    return terminal_safe(text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A"))


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _repo_path(file: str, rel_file: str, workspace: str) -> str:
    if workspace and os.path.isabs(file):
        rel = os.path.relpath(file, workspace)
        if not rel.startswith(".."):
            return rel
    return rel_file


def annotation(failure: Failure, workspace: str = "") -> str:
    props: list[tuple[str, str]] = []
    c = failure.culprit
    if c is not None:
        props += [("file", _repo_path(c.file, c.rel_file, workspace)), ("line", str(c.line))]
    props.append(("title", f"asgiprof {failure.rule}"))
    head = ",".join(f"{k}={escape_property(v)}" for k, v in props)
    return f"::error {head}::{escape_data(failure.message)}"


def annotation_lines(result: CheckResult, workspace: str | None = None) -> list[str]:
    """One `::error` command per failure."""
    ws = os.environ.get("GITHUB_WORKSPACE", "") if workspace is None else workspace
    return [annotation(f, ws) for f in result.failures]
