"""The jinja2 environment of the report pages (report.html, diff.html): one cached
Environment, package resource first, then the repository checkout; autoescape on, strict
undefined, `tojson` for data that reaches JavaScript; and the Content-Security-Policy that
lets only the page's own inline script and style run."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import jinja2
import orjson
from markupsafe import Markup

from asgiprof.reporters.html.formatting import code_spans, format_count, format_ms, format_pct

if TYPE_CHECKING:
    from asgiprof.reporters.html.assets import InlineAsset

_TEMPLATE_PACKAGE: Final = "asgiprof"
_TEMPLATE_DIR: Final = "templates"
_REPO_TEMPLATES: Final = Path(__file__).resolve().parents[3] / "templates"


def _loader() -> jinja2.BaseLoader:
    # An installed wheel carries top-level templates/ as asgiprof/templates (force-include
    # in pyproject.toml); a development checkout keeps them at <repo>/templates.
    try:
        return jinja2.PackageLoader(_TEMPLATE_PACKAGE, _TEMPLATE_DIR)
    except ValueError:
        pass
    if _REPO_TEMPLATES.is_dir():
        return jinja2.FileSystemLoader(str(_REPO_TEMPLATES))
    raise FileNotFoundError(
        "asgiprof templates not found: reinstall asgiprof (the wheel ships asgiprof/templates)"
    )


def tojson(value: Any) -> Markup:
    """JSON safe inside HTML text and `<script>` elements: sorted keys, `<>&'` escaped.

    orjson writes those characters (and U+2028/2029, which old JS parsers treat as line
    ends) only inside strings, so replacing them by `\\uXXXX` escapes keeps the JSON equal.
    """
    raw = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode("utf-8")
    for char, escaped in _JSON_HTML_ESCAPES:
        raw = raw.replace(char, escaped)
    return Markup(raw)


_JSON_HTML_ESCAPES: Final = (
    ("&", "\\u0026"),
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("'", "\\u0027"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=_loader(),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["tojson"] = tojson
    env.filters["ms"] = format_ms
    env.filters["pct"] = format_pct
    env.filters["count"] = format_count
    env.filters["code_spans"] = code_spans
    return env


def content_security_policy(script: InlineAsset, style: InlineAsset) -> str:
    # Nothing may load from anywhere; only our two inline blocks may run or style.
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src {script.csp_hash}",
            f"style-src {style.csp_hash}",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )
