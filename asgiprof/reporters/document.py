"""Result dataclasses -> plain JSON-ready dicts, with the rounding rules declared once.

summary.json and the report page's payload both come from the Analysis's dataclasses; this
is the one place that turns a dataclass into a dict: field names become keys, tuples become
lists, nested dataclasses become dicts, and floats are rounded by what their field holds
(`DIGITS`): milliseconds to the microsecond, shares and ratios to 0.01 %. A reporter names
which fields it writes (summary.json's schema 1 keys are a contract: DESIGN.md) and adds
what only it derives.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

# Digits kept per field name; a float field not named here and not ending in `_ms` is
# written as computed (parameters, timestamps the user gave).
DIGITS: Final[Mapping[str, int]] = {
    "utilization": 4,
    "share": 4,
    "shares": 4,
    "idle_share": 4,
    "at_limit_share": 4,
    "relative": 4,
    "r2": 4,
    "cpu_ratio": 3,
    "mean_busy": 3,
    "duration_s": 3,
    "start_value": 3,
    "end_value": 3,
    "slope_per_min": 3,
    "from_s": 3,
    "coverage": 4,
    "span_coverage": 4,
    "behind_s": 3,
    "max_lag_s": 3,
    "pause_share": 4,
    "max_pause": 4,
}
MS_DIGITS: Final = 3  # any field ending in `_ms`


def digits_of(name: str) -> int | None:
    """The digits a float field of this name keeps, None when written as computed."""
    if name in DIGITS:
        return DIGITS[name]
    return MS_DIGITS if name.endswith("_ms") else None


def rounded(value: float, digits: int) -> float:
    # Rounded floats keep files small and their bytes stable across platforms; + 0.0 turns
    # -0.0 into 0.0.
    return round(value, digits) + 0.0


def plain(
    obj: Any,
    fields: Sequence[str] | None = None,
    *,
    exclude: Collection[str] = (),
    rounding: bool = True,
) -> dict[str, Any]:
    """`obj` (a dataclass instance) as a dict of `fields` (default: all, minus `exclude`);
    floats rounded by `DIGITS` unless `rounding` is False (templates format them)."""
    names = fields if fields is not None else [f.name for f in dataclasses.fields(obj)]
    return {n: _value(n, getattr(obj, n), rounding) for n in names if n not in exclude}


def plain_list(
    objs: Sequence[Any],
    fields: Sequence[str] | None = None,
    *,
    exclude: Collection[str] = (),
    rounding: bool = True,
) -> list[dict[str, Any]]:
    return [plain(o, fields, exclude=exclude, rounding=rounding) for o in objs]


def _value(name: str, value: Any, rounding: bool) -> Any:
    if isinstance(value, (tuple, list)):
        return [_value(name, v, rounding) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(value, rounding=rounding)
    if rounding and isinstance(value, float):
        digits = digits_of(name)
        if digits is not None:
            return rounded(value, digits)
    return value
