"""Data flows one way: record -> store -> analyze -> reporters (ARCHITECTURE.md).

Every `asgiprof` import in the package is checked against the table below, with no
exceptions list, and the import graph between its parts must have no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "asgiprof"
LEAF = {"asgiprof", "errors", "text", "model", "redact"}  # imported by all, import no part
# What each part may import; the modules on top (cli, session, report, demo, ...) may
# import anything, as long as no cycle forms.
ALLOWED: dict[str, set[str]] = {
    "leaf": {"leaf"},
    "record": {"leaf", "store", "record"},
    "store": {"leaf", "store"},
    "analyze": {"model", "analyze"},
    "reporters": {"leaf", "analyze", "reporters", "diff", "gate"},
}


def part(dotted: str) -> str:
    """The part a module belongs to: `asgiprof.store.pyspy` -> store, `asgiprof` -> asgiprof."""
    return dotted.split(".")[1] if "." in dotted else "asgiprof"


def _is_module(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").exists()


def imports(path: Path) -> set[str]:
    """Parts of asgiprof that a file imports (`from asgiprof import store` included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        assert not (isinstance(node, ast.ImportFrom) and node.level), f"{path}: relative import"
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "asgiprof":
            subs = [a.name for a in node.names]
            names = [f"asgiprof.{s}" for s in subs if _is_module(s)] or ["asgiprof"]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        found |= {part(n) for n in names if n.split(".")[0] == "asgiprof"}
    return found


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        dotted = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        me = part(dotted.removesuffix(".__init__"))
        edges.setdefault(me, set()).update(imports(path) - {me})
    return edges


def kind(name: str) -> str:
    return "leaf" if name in LEAF else name


def test_the_scan_sees_every_form_of_import() -> None:
    edges = graph()
    assert "store" in edges["record"]  # `from asgiprof import store`
    assert "analyze" in edges["reporters"]  # `from asgiprof.analyze.result import ...`
    assert "record" in edges["session"]


def test_every_import_follows_the_flow() -> None:
    wrong = [
        f"{src} imports {dst}"
        for src, dsts in sorted(graph().items())
        for dst in sorted(dsts)
        if (rule := ALLOWED.get(kind(src))) is not None
        and dst not in rule
        and kind(dst) not in rule
    ]
    assert wrong == []


def test_no_cycle_between_parts() -> None:
    edges = graph()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        assert node not in path, "import cycle: " + " -> ".join([*path[path.index(node) :], node])
        if node not in done:
            for nxt in sorted(edges.get(node, ())):
                visit(nxt, [*path, node])
            done.add(node)

    for start in sorted(edges):
        visit(start, [])
