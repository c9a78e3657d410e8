"""`summary.json` (schema 1, see DESIGN.md): the Analysis for scripts and CI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from asgiprof.analyze.result import Analysis

SCHEMA = 1


def _ms(x: float) -> float:
    return round(x, 3)


def summary(analysis: Analysis) -> dict[str, Any]:
    """Plain data for summary.json; keys of schema 1 are stable, others may be added."""
    p = analysis.profile
    loop = analysis.loop
    return {
        "schema": SCHEMA,
        "target": {
            "pids": list(p.target.pids),
            "command": list(p.target.command),
            "server": p.target.server,
            "mode": p.target.mode,
            "exit_status": p.target.exit_status,
        },
        "sampling": {
            "rate_hz": p.sampling.rate_hz,
            "duration_s": round(p.sampling.duration_s, 3),
            "samples": p.sampling.samples,
            "errors": p.sampling.errors,
            "chunks": len(p.sampling.chunks),
            "stopped_by": p.sampling.stopped_by,
        },
        "event_loop": {
            "busy_ms": _ms(loop.busy_ms),
            "blocked_ms": _ms(loop.blocked_ms),
            "idle_ms": _ms(loop.idle_ms),
            "utilization": round(loop.utilization, 4),
            "longest_block_ms": _ms(loop.longest_block_ms),
            "episodes": loop.episodes,
            "threads": [{"pid": pid, "tid": tid} for pid, tid in loop.threads],
            "block_threshold_ms": analysis.params.block_threshold_ms,
        },
        "culprits": [
            {
                "rank": c.rank,
                "file": c.file,
                "line": c.line,
                "function": c.function,
                "code": c.code,
                "route": c.route,
                "routes": list(c.routes),
                "kind": c.kind,
                "blocked_ms": _ms(c.blocked_ms),
                "episodes": c.episodes,
                "max_ms": _ms(c.max_ms),
                "stack": list(c.stack),
                "advice": c.advice,
                "cpu_ratio": None if c.cpu_ratio is None else round(c.cpu_ratio, 3),
            }
            for c in analysis.culprits
        ],
        "routes": [
            {
                "route": r.route,
                "samples": r.samples,
                "loop_ms": _ms(r.loop_ms),
                "blocked_ms": _ms(r.blocked_ms),
                "threadpool_ms": _ms(r.threadpool_ms),
            }
            for r in analysis.routes
        ],
        "notes": list(analysis.notes),
    }


class SummaryJsonReporter:
    name = "summary.json"
    filename = "summary.json"

    def render(self, analysis: Analysis, out_dir: Path) -> Path:
        path = out_dir / self.filename
        path.write_bytes(
            orjson.dumps(summary(analysis), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        )
        return path


REPORTER = SummaryJsonReporter()
