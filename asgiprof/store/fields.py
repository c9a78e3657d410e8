"""Checked reads of the JSON files asgiprof saved: a wrong type is damage, never a crash."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson

from asgiprof.errors import CorruptProfileError


def read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise CorruptProfileError(f"{path} is missing: not an asgiprof output directory?") from exc
    except (orjson.JSONDecodeError, OSError) as exc:
        raise CorruptProfileError(f"{path} is unreadable: {exc}") from exc


def as_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r:.40}")
    return value


def as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r:.40}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)


def as_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CorruptProfileError(f"{what} is not a JSON object")
    return value
