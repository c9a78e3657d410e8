"""`asgiprof check OUT`: a saved profile's summary.json against CI rules -> failures.

summary.json (schema 1, the contract scripts and CI read) is the input, so a profile taken
by any asgiprof version can be checked without re-analysis. `check()` computes the result;
reporters/check.py, junit.py and annotations.py only format it.

Rules (any number): every ranked culprit fails (`culprit`, the default), or only those not
in a baseline profile (`new-culprit`, or any `--baseline`); a culprit's longest block over
`max_block_ms` (culprit lines only: a lone stall in no line of the user's code is as likely
the OS scheduling the loop out on a busy CI runner, and the blocked share still counts it);
a route's (and the whole loop's) blocked share of event-loop time over
`max_blocked_share`; a load command that failed. `--ignore` patterns exempt known culprit
lines from every rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from asgiprof.errors import CorruptProfileError, UsageError
from asgiprof.identity import CulpritKey, culprit_key, file_matches, ignore_pattern
from asgiprof.text import terminal_safe

FailOn = Literal["culprit", "new-culprit", "none"]
Rule = Literal["culprit", "new-culprit", "max-block-ms", "max-blocked-share", "load"]
SUMMARY = "summary.json"


@dataclass(frozen=True, slots=True)
class Rules:
    max_blocked_share: float | None = None
    max_block_ms: float | None = None
    fail_on: FailOn = "culprit"
    baseline: Path | None = None
    ignore: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CulpritEntry:
    """A culprit of the checked profile, as summary.json has it, with how the rules saw it."""

    rank: int
    file: str
    rel_file: str
    line: int
    function: str
    code: str | None
    route: str | None
    kind: str
    blocked_ms: float
    max_ms: float
    episodes: int
    advice: str | None
    ignored_by: str | None  # the --ignore pattern that exempts it
    in_baseline: bool | None  # None without a baseline


@dataclass(frozen=True, slots=True)
class RouteEntry:
    route: str
    blocked_ms: float
    loop_ms: float
    blocked_share: float  # of the event loop's time (busy + idle)


@dataclass(frozen=True, slots=True)
class Failure:
    rule: Rule
    message: str  # one line: why it failed, with the numbers
    route: str | None = None
    culprit: CulpritEntry | None = None


@dataclass(frozen=True, slots=True)
class CheckResult:
    out: Path
    rules: Rules
    loop_ms: float  # event-loop time (busy + idle) the shares are of
    blocked_ms: float
    longest_block_ms: float
    culprits: tuple[CulpritEntry, ...]
    routes: tuple[RouteEntry, ...]
    failures: tuple[Failure, ...]
    load: dict[str, Any] | None = None
    unmatched_ignores: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def blocked_share(self) -> float:
        return self.blocked_ms / self.loop_ms if self.loop_ms > 0 else 0.0

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


# --- reading summary.json ---------------------------------------------------------------


def read_summary(out: Path) -> dict[str, Any]:
    """summary.json of OUT, checked for the schema-1 fields the rules read (exit 2 if not)."""
    if not out.is_dir():
        raise UsageError(f"{out} is not a directory: give the --out folder of a profile")
    path = out / SUMMARY
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        hint = f"run `asgiprof report {out}` first" if (out / "meta.json").exists() else ""
        raise CorruptProfileError(
            f"{path} is missing: " + (hint or "not an asgiprof output directory?")
        ) from None
    except (orjson.JSONDecodeError, OSError) as exc:
        raise CorruptProfileError(f"{path} is unreadable: {exc}") from exc
    try:
        _check_summary(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptProfileError(
            f"{path} is not an asgiprof schema-1 summary ({terminal_safe(str(exc))[:120]}): "
            f"re-create it with `asgiprof report {out}`"
        ) from exc
    assert isinstance(data, dict)
    return data


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} is not a number")
    return float(value)


def _check_summary(data: Any) -> None:
    if not isinstance(data, dict) or data.get("schema") != 1:
        raise ValueError("no schema 1")
    loop = data["event_loop"]
    for key in ("busy_ms", "blocked_ms", "idle_ms", "longest_block_ms"):
        _number(loop[key], f"event_loop.{key}")
    if not isinstance(data["culprits"], list) or not isinstance(data["routes"], list):
        raise TypeError("culprits or routes is not a list")
    for c in data["culprits"]:
        for key in ("blocked_ms", "max_ms"):
            _number(c[key], f"culprit {key}")
        if not isinstance(c["file"], str) or not isinstance(c["line"], int):
            raise TypeError("culprit file or line")
        for key in ("function", "kind"):
            if not isinstance(c[key], str):
                raise TypeError(f"culprit {key}")
    for r in data["routes"]:
        if not isinstance(r["route"], str):
            raise TypeError("route name")
        for key in ("blocked_ms", "loop_ms"):
            _number(r[key], f"route {key}")


def _cwd(data: dict[str, Any]) -> str:
    cwd = data.get("target", {}).get("cwd", "")
    return cwd if isinstance(cwd, str) else ""


def _key(c: dict[str, Any], cwd: str) -> CulpritKey:
    code = c.get("code")
    return culprit_key(
        c["file"], c["line"], c["function"], code if isinstance(code, str) else None, cwd
    )


def baseline_keys(baseline: Path) -> set[CulpritKey]:
    data = read_summary(baseline)
    cwd = _cwd(data)
    return {_key(c, cwd) for c in data["culprits"]}


# --- the rules --------------------------------------------------------------------------


def _one_line(text: str | None) -> str | None:
    return " ".join(text.split()) if text else None


def _ignored_by(
    c: dict[str, Any], cwd: str, patterns: list[tuple[str, str, int | None]]
) -> str | None:
    for raw, glob, line in patterns:
        if (line is None or line == c["line"]) and file_matches(glob, c["file"], cwd):
            return raw
    return None


def describe(c: CulpritEntry) -> str:
    """`route file:line blocked N ms (...), kind: advice`: how every failure names a line."""
    advice = _one_line(c.advice) or "no known fix: see its stack in report.html"
    return (
        f"{c.route or '(no route)'} {c.rel_file}:{c.line} blocked {c.blocked_ms:.0f} ms "
        f"({c.episodes} episode(s), longest {c.max_ms:.0f} ms), {c.kind}: {advice}"
    )


def check(out: Path, rules: Rules) -> CheckResult:
    """Apply `rules` to the profile in `out` (UsageError / CorruptProfileError: exit 2)."""
    patterns = _checked_patterns(rules)
    data = read_summary(out)
    known = baseline_keys(rules.baseline) if rules.baseline is not None else None
    loop = data["event_loop"]
    loop_ms = float(loop["busy_ms"]) + float(loop["idle_ms"])
    culprits, used = _culprit_entries(data, patterns, known)
    routes = tuple(
        RouteEntry(
            r["route"],
            float(r["blocked_ms"]),
            float(r["loop_ms"]),
            float(r["blocked_ms"]) / loop_ms if loop_ms > 0 else 0.0,
        )
        for r in data["routes"]
    )
    active = [c for c in culprits if c.ignored_by is None]
    failures: list[Failure] = []
    if rules.fail_on != "none":
        failures += _culprit_failures(active, new_only=known is not None)
    if rules.max_block_ms is not None:
        failures += _block_failures(active, rules.max_block_ms)
    if rules.max_blocked_share is not None:
        limit = rules.max_blocked_share
        failures += _share_failures(routes, active, float(loop["blocked_ms"]), loop_ms, limit)
    load = data.get("load")
    load = load if isinstance(load, dict) else None
    if load is not None and isinstance(load.get("failure"), str):
        failures.append(_load_failure(load))
    return CheckResult(
        out=out,
        rules=rules,
        loop_ms=loop_ms,
        blocked_ms=float(loop["blocked_ms"]),
        longest_block_ms=float(loop["longest_block_ms"]),
        culprits=tuple(culprits),
        routes=routes,
        failures=tuple(failures),
        load=load,
        unmatched_ignores=tuple(p for p in rules.ignore if p not in used),
    )


def _checked_patterns(rules: Rules) -> list[tuple[str, str, int | None]]:
    """The --ignore patterns (raw, file glob, line), once the rules are known to make sense."""
    if rules.fail_on == "new-culprit" and rules.baseline is None:
        raise UsageError("--fail-on new-culprit needs --baseline OUT0 (a profile to compare to)")
    if rules.max_blocked_share is not None and not 0 <= rules.max_blocked_share <= 1:
        raise UsageError(f"--max-blocked-share is a share, 0..1: got {rules.max_blocked_share}")
    try:
        return [(p, *ignore_pattern(p)) for p in rules.ignore]
    except ValueError as exc:
        raise UsageError(f"--ignore: {exc}") from exc


def _culprit_entries(
    data: dict[str, Any],
    patterns: list[tuple[str, str, int | None]],
    known: set[CulpritKey] | None,
) -> tuple[list[CulpritEntry], set[str]]:
    """summary.json's culprits as entries, and the --ignore patterns that matched one."""
    cwd = _cwd(data)
    culprits: list[CulpritEntry] = []
    used: set[str] = set()
    for c in data["culprits"]:
        ignored = _ignored_by(c, cwd, patterns)
        if ignored is not None:
            used.add(ignored)
        code = c.get("code")
        advice = c.get("advice")
        key = _key(c, cwd)
        culprits.append(
            CulpritEntry(
                rank=int(c.get("rank", len(culprits) + 1)),
                file=c["file"],
                rel_file=key[0],
                line=c["line"],
                function=c["function"],
                code=code if isinstance(code, str) else None,
                route=c.get("route") if isinstance(c.get("route"), str) else None,
                kind=c["kind"],
                blocked_ms=float(c["blocked_ms"]),
                max_ms=float(c["max_ms"]),
                episodes=int(c.get("episodes", 0)),
                advice=advice if isinstance(advice, str) else None,
                ignored_by=ignored,
                in_baseline=None if known is None else key in known,
            )
        )
    return culprits, used


def _culprit_failures(active: list[CulpritEntry], new_only: bool) -> list[Failure]:
    """Every culprit, or with a baseline every culprit not in it."""
    rule: Rule = "new-culprit" if new_only else "culprit"
    why = "a new culprit (not in the baseline)" if new_only else "a culprit"
    return [
        Failure(rule, f"{rule}: {describe(c)} [{why}]", c.route, c)
        for c in active
        if not new_only or not c.in_baseline
    ]


def _block_failures(active: list[CulpritEntry], limit: float) -> list[Failure]:
    return [
        Failure(
            "max-block-ms",
            f"max-block-ms: {describe(c)} [blocked {c.max_ms:.0f} ms at once > {limit:g} ms]",
            c.route,
            c,
        )
        for c in active
        if c.max_ms > limit
    ]


def _share_failures(
    routes: tuple[RouteEntry, ...],
    active: list[CulpritEntry],
    blocked_ms: float,
    loop_ms: float,
    limit: float,
) -> list[Failure]:
    """Each route, then the whole loop, blocked more than `limit` of the loop's time."""
    failures = [
        Failure(
            "max-blocked-share",
            f"max-blocked-share: {r.route} blocked the event loop {r.blocked_ms:.0f} ms, "
            f"{r.blocked_share:.1%} of its time > {limit:.1%}" + _top_line(r.route, active),
            r.route,
        )
        for r in routes
        if r.blocked_share > limit
    ]
    share = blocked_ms / loop_ms if loop_ms > 0 else 0.0
    if share > limit:
        failures.append(
            Failure(
                "max-blocked-share",
                f"max-blocked-share: (all routes) the event loop was blocked "
                f"{blocked_ms:.0f} ms, {share:.1%} of its time > {limit:.1%}",
            )
        )
    return failures


def _load_failure(load: dict[str, Any]) -> Failure:
    tail = [str(x) for x in load.get("output_tail", []) if isinstance(x, str)]
    last = f"; its last output: {_one_line(tail[-1])}" if tail else ""
    return Failure("load", f"load: {load['failure']} ({load.get('command', '?')}){last}")


def _top_line(route: str, culprits: list[CulpritEntry]) -> str:
    mine = [c for c in culprits if c.route == route]
    if not mine:
        return ""
    top = max(mine, key=lambda c: c.blocked_ms)
    return f"; most of it at {top.rel_file}:{top.line}, {top.kind}"
