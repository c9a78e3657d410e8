"""The report page's script: the modules of `templates/assets/js/` joined into one text.

The page stays one self-contained file with one `<script>` element (allowed by its sha256
hash in the Content-Security-Policy), so there is no bundler: the modules are plain scripts
sharing one namespace object (`globalThis.AsgiprofReport`), inlined in the order
`load-order.txt` lists; `node --test tests/js/` loads the same files the same way.
"""

from __future__ import annotations

import jinja2

SCRIPT_DIR = "assets/js"
LOAD_ORDER = f"{SCRIPT_DIR}/load-order.txt"


def report_script(env: jinja2.Environment) -> str:
    """The modules listed in load-order.txt, read through `env`'s template loader, joined."""
    assert env.loader is not None
    order, _, _ = env.loader.get_source(env, LOAD_ORDER)
    names = [line.strip() for line in order.splitlines()]
    parts = []
    for name in (n for n in names if n and not n.startswith("#")):
        text, _, _ = env.loader.get_source(env, f"{SCRIPT_DIR}/{name}")
        parts.append(f"/* ---- {name} ---- */\n{text.rstrip()}\n")
    return "\n".join(parts)
