"""`asgiprof check` as text (one line per failure) and as JSON (`--format json`)."""

from __future__ import annotations

from typing import Any

from asgiprof.gate import CheckResult, CulpritEntry
from asgiprof.reporters.document import plain
from asgiprof.text import terminal_safe


def check_lines(result: CheckResult) -> list[str]:
    """One line per failure, then one verdict line; target text made terminal safe."""
    lines = [terminal_safe(f.message) for f in result.failures]
    lines.extend(
        terminal_safe(f"note: --ignore {p} matched no culprit") for p in result.unmatched_ignores
    )
    checked = (
        f"{len(result.culprits)} culprit(s), {len(result.routes)} route(s), event loop blocked "
        f"{result.blocked_share:.1%} of its time"
    )
    if result.passed:
        lines.append(f"asgiprof check: passed ({checked})")
    else:
        lines.append(f"asgiprof check: FAILED, {len(result.failures)} failure(s) ({checked})")
    return lines


def _culprit(c: CulpritEntry) -> dict[str, Any]:
    return plain(c, rounding=False)


def check_json(result: CheckResult) -> dict[str, Any]:
    rules = result.rules
    return {
        "passed": result.passed,
        "exit_code": result.exit_code,
        "out": str(result.out),
        "rules": {
            "fail_on": rules.fail_on,
            "max_block_ms": rules.max_block_ms,
            "max_blocked_share": rules.max_blocked_share,
            "baseline": None if rules.baseline is None else str(rules.baseline),
            "ignore": list(rules.ignore),
        },
        "event_loop": {
            "loop_ms": result.loop_ms,
            "blocked_ms": result.blocked_ms,
            "blocked_share": round(result.blocked_share, 6),
            "longest_block_ms": result.longest_block_ms,
        },
        "failures": [
            {
                "rule": f.rule,
                "message": f.message,
                "route": f.route,
                "culprit": None if f.culprit is None else _culprit(f.culprit),
            }
            for f in result.failures
        ],
        "culprits": [_culprit(c) for c in result.culprits],
        "routes": [
            {
                "route": r.route,
                "blocked_ms": r.blocked_ms,
                "loop_ms": r.loop_ms,
                "blocked_share": round(r.blocked_share, 6),
            }
            for r in result.routes
        ],
        "load": result.load,
        "unmatched_ignores": list(result.unmatched_ignores),
    }
