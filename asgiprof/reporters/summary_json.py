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
            "cwd": p.target.cwd,
        },
        "sampling": {
            "rate_hz": p.sampling.rate_hz,
            "duration_s": round(p.sampling.duration_s, 3),
            "samples": p.sampling.samples,
            "errors": p.sampling.errors,
            "chunks": len(p.sampling.chunks),
            "stopped_by": p.sampling.stopped_by,
            # How honest the times are: instants py-spy sampled, their share of what the
            # rate asks for, how far it fell behind (summed, and the most it reported).
            "intervals": p.sampling.intervals,
            "coverage": round(p.sampling.coverage, 4),
            "span_coverage": round(p.sampling.span_coverage, 4),
            "behind_s": round(p.sampling.behind_s, 3),
            "max_lag_s": round(p.sampling.max_lag_s, 3),
            "nonblocking": p.sampling.nonblocking,
            # The sampler lowers its rate when py-spy cannot keep up, and raises it back.
            "rate_changes": [
                {"at_s": r.at_s, "from_hz": r.from_hz, "to_hz": r.to_hz, "reason": r.reason}
                for r in p.sampling.rate_changes
            ],
            # What the watchdog did so that py-spy never leaves the target stopped.
            "watchdog": list(p.sampling.watchdog),
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
                "kind_evidence": c.kind_evidence,
                "blocked_ms": _ms(c.blocked_ms),
                "episodes": c.episodes,
                "max_ms": _ms(c.max_ms),
                "stack": list(c.stack),
                "advice": c.advice,
                "cpu_ratio": None if c.cpu_ratio is None else round(c.cpu_ratio, 3),
                "context": c.context,
                "context_name": c.context_name,
                "calls": list(c.calls),
                "kind_reason": c.kind_reason,
                "block_of": c.block_of,
                # merged runs (`asgiprof merge`): this line's share in each run
                "sources": [
                    {
                        "source": sh.source,
                        "blocked_ms": _ms(sh.blocked_ms),
                        "episodes": sh.episodes,
                        "max_ms": _ms(sh.max_ms),
                    }
                    for sh in analysis.fleet.culprit_sources.get((c.file, c.line), ())
                ],
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
                "requests": r.requests,
                "dependency_ms": _ms(r.dependency_ms),
                "overhead_ms": _ms(r.overhead_ms),
            }
            for r in analysis.routes
        ],
        "routes_evidence": analysis.routes_evidence,
        "request_overhead_ms": _ms(analysis.request_overhead_ms),
        "notes": list(analysis.notes),
        # Whether requests were seen at all: "none" and "low" carry the warning shown.
        "traffic": {
            "level": analysis.traffic.level,
            "warning": analysis.traffic.warning,
            "request_ms": _ms(analysis.traffic.request_ms),
            "route_samples": analysis.traffic.route_samples,
            "idle_share": round(analysis.traffic.idle_share, 4),
        },
        "middleware": _middleware(analysis),
        "dependencies": _dependencies(analysis),
        "threadpool": _threadpool(analysis),
        "resources": _resources(analysis),
        "findings": [
            {
                "kind": f.kind,
                "severity": f.severity,
                "title": f.title,
                "detail": f.detail,
                "advice": f.advice,
                "pid": f.pid,
                "subject": f.subject,
            }
            for f in analysis.findings
        ],
        "processes": _processes(analysis),
        "fleet": _fleet(analysis),
        "load": _load(analysis),
    }


def _load(analysis: Analysis) -> dict[str, Any] | None:
    """The load run with --load / --load-url (None without one); `failure` says why it does
    not count as a good run, None when it does."""
    load = analysis.profile.load
    if load is None:
        return None
    return {
        "command": load.command,
        "url": load.url,
        "started_s": load.started_s,
        "duration_s": load.duration_s,
        "stopped_by": load.stopped_by,
        "exit_status": load.exit_status,
        "output_tail": list(load.output_tail),
        "requests": load.requests,
        "failed_requests": load.failed_requests,
        "requests_by_path": dict(load.requests_by_path),
        "failure": load.failure,
    }


def _fleet(analysis: Analysis) -> dict[str, Any]:
    """The runs of a merged profile (empty for one run), with their own loop figures."""
    return {
        "sources": [
            {
                "name": s.name,
                "out_dir": s.out_dir,
                "pids": [{"pid": merged, "host_pid": original} for merged, original in s.pids],
                "samples": s.samples,
                "event_loop": {
                    "busy_ms": _ms(s.busy_ms),
                    "blocked_ms": _ms(s.blocked_ms),
                    "idle_ms": _ms(s.idle_ms),
                    "episodes": s.episodes,
                },
            }
            for s in analysis.fleet.sources
        ]
    }


def _processes(analysis: Analysis) -> list[dict[str, Any]]:
    """Per server process (workers): the same figures as the top level, for that pid."""
    return [
        {
            "pid": s.pid,
            "event_loop_tids": list(s.event_loop_tids),
            "event_loop": {
                "busy_ms": _ms(s.busy_ms),
                "blocked_ms": _ms(s.blocked_ms),
                "idle_ms": _ms(s.idle_ms),
                "utilization": round(s.utilization, 4),
                "longest_block_ms": _ms(s.longest_block_ms),
                "episodes": s.episodes,
            },
            "culprits": [
                {
                    "rank": c.rank,
                    "file": c.file,
                    "line": c.line,
                    "route": c.route,
                    "blocked_ms": _ms(c.blocked_ms),
                    "episodes": c.episodes,
                    "max_ms": _ms(c.max_ms),
                }
                for c in s.culprits
            ],
        }
        for s in analysis.processes
    ]


def _middleware(analysis: Analysis) -> dict[str, Any]:
    m = analysis.middleware
    return {
        "request_ms": _ms(m.request_ms),
        "layers_ms": _ms(m.layers_ms),
        "server_ms": _ms(m.server_ms),
        "route_ms": _ms(m.route_ms),
        "layers": [
            {
                "order": layer.order,
                "name": layer.name,
                "function": layer.function,
                "file": layer.file,
                "line": layer.line,
                "origin": layer.origin,
                "role": layer.role,
                "samples": layer.samples,
                "self_ms": _ms(layer.self_ms),
                "blocked_ms": _ms(layer.blocked_ms),
                "share": round(layer.share, 4),
            }
            for layer in m.layers
        ],
    }


def _dependencies(analysis: Analysis) -> dict[str, Any]:
    d = analysis.dependencies
    return {
        "solving_ms": _ms(d.solving_ms),
        "items": [
            {
                "name": dep.name,
                "file": dep.file,
                "line": dep.line,
                "runs_on": dep.runs_on,
                "loop_ms": _ms(dep.loop_ms),
                "blocked_ms": _ms(dep.blocked_ms),
                "threadpool_ms": _ms(dep.threadpool_ms),
                "samples": dep.samples,
                "routes": list(dep.routes),
                "shares": [round(share, 4) for share in dep.shares],
                "split_by": dep.split_by,
            }
            for dep in d.dependencies
        ],
    }


def _threadpool(analysis: Analysis) -> dict[str, Any]:
    t = analysis.threadpool
    return {
        "limit": t.limit,
        "workers_seen": t.workers_seen,
        "max_busy": t.max_busy,
        "mean_busy": round(t.mean_busy, 3),
        "busy_ms": _ms(t.busy_ms),
        "at_limit_ms": _ms(t.at_limit_ms),
        "at_limit_share": round(t.at_limit_share, 4),
        "holders": [
            {
                "name": h.name,
                "kind": h.kind,
                "busy_ms": _ms(h.busy_ms),
                "share": round(h.share, 4),
                "at_limit_ms": _ms(h.at_limit_ms),
            }
            for h in t.holders
        ],
        "processes": [
            {
                "pid": p.pid,
                "workers_seen": p.workers_seen,
                "max_busy": p.max_busy,
                "at_limit_ms": _ms(p.at_limit_ms),
            }
            for p in t.processes
        ],
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
                    "rss_bytes": list(proc.rss_bytes),
                    "fds": list(proc.fds),
                    "threads": list(proc.threads),
                    "connections": list(proc.connections),
                },
                "remote_ports": {str(port): list(counts) for port, counts in proc.remote_ports},
                "growth": [
                    {
                        "metric": g.metric,
                        "points": g.points,
                        "duration_s": round(g.duration_s, 3),
                        "start_value": round(g.start_value, 3),
                        "end_value": round(g.end_value, 3),
                        "slope_per_min": round(g.slope_per_min, 3),
                        "relative": round(g.relative, 4),
                        "r2": round(g.r2, 4),
                        "leak": g.leak,
                        "from_s": None if g.from_s is None else round(g.from_s, 3),
                        "not_leak": g.not_leak,
                    }
                    for g in proc.growth
                ],
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
