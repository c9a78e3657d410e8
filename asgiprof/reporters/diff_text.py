"""`asgiprof diff` in the terminal (one line per figure) and as JSON (`--format json`)."""

from __future__ import annotations

from typing import Any

from asgiprof.diff import Change, DiffResult, Figure, RunFacts
from asgiprof.text import terminal_safe

# A route missing from one run was not sampled there (an endpoint that only awaits is
# rarely on the stack): it may well have served requests.
ROUTE_STATUS = {"both": "both", "new": "not sampled in BASE", "gone": "not sampled in HEAD"}


def _facts(label: str, f: RunFacts) -> str:
    req = f", {f.requests} requests" if f.requests is not None else ", requests unknown"
    return (
        f"{label} {f.out} ({f.rate_hz} Hz, {f.duration_s:.1f} s, "
        f"{f.loop_samples} loop samples{req})"
    )


def _figure(c: Change, f: Figure, interval_ms: float) -> str:
    ms = f.count * interval_ms
    if c.per == "request":
        return f"{ms / f.exposure:.2f} ± {f.sd * interval_ms:.2f} ms/request"
    return f"{ms:.0f} ms ({f.rate:.1%} ± {f.sd:.1%})"


def change_text(c: Change, interval_ms: float) -> str:
    if c.per == "request":
        delta = f"{c.delta * interval_ms:+.2f} ± {c.delta_sd * interval_ms:.2f} ms/request"
    else:
        delta = f"{c.delta * 100:+.1f} ± {c.delta_sd * 100:.1f} points"
    return (
        f"{c.what} {_figure(c, c.base, interval_ms)} -> {_figure(c, c.head, interval_ms)}, "
        f"{delta}: {c.verdict} (p={c.p:.2g})"
    )


def diff_lines(result: DiffResult) -> list[str]:
    ms = result.base.interval_ms  # equal in both runs: diff refuses different rates
    lines = [
        _facts("base:", result.base),
        _facts("head:", result.head),
        "shares are of the event loop's samples, ± one standard deviation; significant: "
        f"p < {result.alpha:.2g} (0.05 over all figures)",
    ]
    for c in result.totals:
        scope = "event loop" if c.per == "sample" else "per request"
        lines.append(f"{scope}: {change_text(c, ms)}")
    for r in result.routes:
        tag = "" if r.status == "both" else f" [{ROUTE_STATUS[r.status]}]"
        lines.extend(f"route {r.route}{tag}: {change_text(c, ms)}" for c in r.changes)
    for d in result.culprits:
        line = d.culprit
        lines.append(
            f"culprit {d.status if d.status != 'both' else 'in both'}: {d.key[0]}:{line.line} "
            f"{line.function} ({line.route or 'no route'}): {change_text(d.blocked, ms)}"
        )
    n = len(result.significant)
    lines.append(
        f"asgiprof diff: {n} significant change(s)"
        if n
        else "asgiprof diff: no significant change (every difference is within sampling noise)"
    )
    return [terminal_safe(line) for line in lines]


def _fig(f: Figure) -> dict[str, float]:
    return {
        "count": round(f.count, 3),
        "exposure": f.exposure,
        "rate": f.rate,
        "sd": f.sd,
        "dispersion": round(f.dispersion, 4),
    }


def change_json(c: Change, interval_ms: float) -> dict[str, Any]:
    return {
        "what": c.what,
        "per": c.per,
        "base": _fig(c.base),
        "head": _fig(c.head),
        "base_ms": round(c.base.count * interval_ms, 3),
        "head_ms": round(c.head.count * interval_ms, 3),
        "delta": c.delta,
        "delta_sd": c.delta_sd,
        "z": round(c.z, 4),
        "p": c.p,
        "verdict": c.verdict,
    }


def _run(f: RunFacts) -> dict[str, Any]:
    return {
        "out": f.out,
        "rate_hz": f.rate_hz,
        "nonblocking": f.nonblocking,
        "duration_s": f.duration_s,
        "loop_samples": f.loop_samples,
        "requests": f.requests,
        "load_command": f.load_command,
        "route_requests": f.route_requests,
    }


def diff_json(result: DiffResult) -> dict[str, Any]:
    ms = result.base.interval_ms
    return {
        "base": _run(result.base),
        "head": _run(result.head),
        "alpha": result.alpha,
        "significant": len(result.significant),
        "totals": [change_json(c, ms) for c in result.totals],
        "routes": [
            {
                "route": r.route,
                "status": r.status,
                "blocked": change_json(r.blocked, ms),
                "loop": change_json(r.loop, ms),
                "blocked_per_request": None
                if r.blocked_per_request is None
                else change_json(r.blocked_per_request, ms),
                "loop_per_request": None
                if r.loop_per_request is None
                else change_json(r.loop_per_request, ms),
            }
            for r in result.routes
        ],
        "culprits": [
            {
                "file": d.key[0],
                "function": d.key[1],
                "code": d.culprit.code,
                "base_line": d.base.line if d.base else None,
                "head_line": d.head.line if d.head else None,
                "route": d.culprit.route,
                "status": d.status,
                "blocked": change_json(d.blocked, ms),
            }
            for d in result.culprits
        ],
    }
