"""`summary.json` (schema 1, see DESIGN.md): the Analysis for scripts and CI.

Sections come from the result dataclasses through `document.plain` (one rounding rule per
field, declared there); only what summary.json arranges differently is written by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from asgiprof.analyze.result import Analysis, Culprit, ProcessSummary
from asgiprof.reporters.document import plain, plain_list, rounded

SCHEMA = 1

# Loop figures as schema 1 names them (LoopSummary.threads is written as objects).
LOOP_FIGURES = ("busy_ms", "blocked_ms", "idle_ms", "utilization", "longest_block_ms", "episodes")


def summary(analysis: Analysis) -> dict[str, Any]:
    """Plain data for summary.json; keys of schema 1 are stable, others may be added."""
    return {
        "schema": SCHEMA,
        "target": _target(analysis),
        "sampling": _sampling(analysis),
        "event_loop": _event_loop(analysis),
        "culprits": [_culprit(analysis, c) for c in analysis.culprits],
        "routes": plain_list(analysis.routes),
        "routes_evidence": analysis.routes_evidence,
        "request_overhead_ms": rounded(analysis.request_overhead_ms, 3),
        "notes": list(analysis.notes),
        # Whether requests were seen at all: "none" and "low" carry the warning shown.
        "traffic": plain(analysis.traffic),
        "middleware": _middleware(analysis),
        "dependencies": _dependencies(analysis),
        "threadpool": _threadpool(analysis),
        "resources": _resources(analysis),
        "findings": plain_list(analysis.findings),
        "processes": [_process(s) for s in analysis.processes],
        "fleet": _fleet(analysis),
        "load": _load(analysis),
    }


def _target(analysis: Analysis) -> dict[str, Any]:
    return plain(
        analysis.profile.target, ("pids", "command", "server", "mode", "exit_status", "cwd")
    )


# Sampling figures written as SamplingInfo has them (rounded by document.DIGITS). The
# coverage figures say how honest the times are: instants py-spy sampled, their share of
# what the rate asks for, how far it fell behind (summed, and the most it reported), and
# the share of the time py-spy held the target paused (null: not measured).
SAMPLING_FIGURES = (
    *("rate_hz", "duration_s", "samples", "errors", "stopped_by", "nonblocking"),
    *("intervals", "coverage", "span_coverage", "behind_s", "max_lag_s"),
    *("pause_share", "max_pause", "scout_hz"),
)


def _sampling(analysis: Analysis) -> dict[str, Any]:
    s = analysis.profile.sampling
    return {
        **plain(s, SAMPLING_FIGURES),
        "chunks": len(s.chunks),
        # The sampler lowers its rate when py-spy cannot keep up, and raises it back.
        "rate_changes": plain_list(s.rate_changes, rounding=False),
        # What the watchdog did so that py-spy never leaves the target stopped.
        "watchdog": list(s.watchdog),
    }


def _event_loop(analysis: Analysis) -> dict[str, Any]:
    loop = analysis.loop
    return {
        **plain(loop, LOOP_FIGURES),
        "threads": [{"pid": pid, "tid": tid} for pid, tid in loop.threads],
        "block_threshold_ms": analysis.params.block_threshold_ms,
    }


def _culprit(analysis: Analysis, c: Culprit) -> dict[str, Any]:
    return {
        **plain(c, exclude=("stack_id",)),
        # merged runs (`asgiprof merge`): this line's share in each run
        "sources": plain_list(analysis.fleet.culprit_sources.get((c.file, c.line), ())),
    }


def _process(s: ProcessSummary) -> dict[str, Any]:
    """Per server process (workers): the same figures as the top level, for that pid."""
    return {
        "pid": s.pid,
        "event_loop_tids": list(s.event_loop_tids),
        "event_loop": plain(s, LOOP_FIGURES),
        "culprits": plain_list(s.culprits),
    }


def _load(analysis: Analysis) -> dict[str, Any] | None:
    """The load run with --load / --load-url (None without one); `failure` says why it does
    not count as a good run, None when it does."""
    load = analysis.profile.load
    if load is None:
        return None
    return {
        **plain(load, exclude=("requests_by_path",), rounding=False),
        "requests_by_path": dict(load.requests_by_path),
        "failure": load.failure,
    }


def _fleet(analysis: Analysis) -> dict[str, Any]:
    """The runs of a merged profile (empty for one run), with their own loop figures."""
    return {
        "sources": [
            {
                **plain(s, ("name", "out_dir", "samples")),
                "pids": [{"pid": merged, "host_pid": original} for merged, original in s.pids],
                "event_loop": plain(s, ("busy_ms", "blocked_ms", "idle_ms", "episodes")),
            }
            for s in analysis.fleet.sources
        ]
    }


def _middleware(analysis: Analysis) -> dict[str, Any]:
    return plain(analysis.middleware)


def _dependencies(analysis: Analysis) -> dict[str, Any]:
    d = analysis.dependencies
    return {"solving_ms": rounded(d.solving_ms, 3), "items": plain_list(d.dependencies)}


def _threadpool(analysis: Analysis) -> dict[str, Any]:
    t = analysis.threadpool
    return {
        **plain(t, exclude=("timeline",)),
        # Columns: start_s, width_s, mean busy workers, most busy at once (one per bin).
        "timeline": {
            "start_s": [round(b.start_s, 4) for b in t.timeline],
            "width_s": round(t.timeline[0].width_s, 6) if t.timeline else 0.0,
            "mean_busy": [round(b.mean_busy, 3) for b in t.timeline],
            "max_busy": [b.max_busy for b in t.timeline],
        },
    }


def _resources(analysis: Analysis) -> dict[str, Any]:
    r = analysis.resources
    return {
        "warmup_s": r.warmup_s,
        "first_request_s": None if r.first_request_s is None else round(r.first_request_s, 3),
        "processes": [
            {
                "pid": proc.pid,
                "series": {
                    "t_s": [round(t, 3) for t in proc.t_s],
                    **plain(proc, ("rss_bytes", "fds", "threads", "connections")),
                },
                "remote_ports": {str(port): list(counts) for port, counts in proc.remote_ports},
                "growth": plain_list(proc.growth),
            }
            for proc in r.processes
        ],
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
