"""CSS and JS inlined into the page, each with the sha256 hash the CSP allows it by."""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass

from asgiprof.reporters.html.environment import environment
from asgiprof.reporters.script_assets import report_script


@dataclass(frozen=True, slots=True)
class InlineAsset:
    """CSS or JS inlined into the page, with its CSP source expression."""

    text: str
    csp_hash: str  # "'sha256-...'"


@functools.cache
def inline_asset(name: str) -> InlineAsset:
    """Load `assets/<name>` through the template loader and hash it for the CSP."""
    env = environment()
    assert env.loader is not None
    if name == "report.js":  # the page's script: modules joined (reporters/script_assets.py)
        text = report_script(env)
    else:
        text, _, _ = env.loader.get_source(env, f"assets/{name}")
    # An asset closing its own element would end it early; ours never do.
    if "</script" in text.lower() or "</style" in text.lower():
        raise ValueError(f"asset {name} contains a closing script/style tag")
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return InlineAsset(text, f"'sha256-{base64.b64encode(digest).decode('ascii')}'")
