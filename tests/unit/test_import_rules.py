"""Data flows one way: record -> store -> analyze -> reporters (ARCHITECTURE.md).

Every `asgiprof` import in the package is checked against ALLOWED, with no exceptions
list, and the imports between its parts must form no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "asgiprof"
LEAF = {"asgiprof", "errors", "text", "model", "redact"}  # import no other part
# What each part may import ("leaf": any of LEAF). The modules on top (cli, session,
# report, demo, ci, ...) may import anything, as long as no cycle forms.
ALLOWED = {
    "leaf": {"leaf"},
    "record": {"leaf", "store", "record"},
    "store": {"leaf", "store"},
    "analyze": {"model", "analyze"},
    "reporters": {"leaf", "analyze", "reporters", "diff", "gate"},
}


def part(module: str) -> str:
    """`asgiprof.store.pyspy` -> store; `asgiprof` (its __init__) -> asgiprof."""
    return module.split(".")[1] if "." in module else module


def imported(node: ast.AST) -> list[str]:
    """The asgiprof modules one import statement names (`from asgiprof import store`)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module == "asgiprof":
        subs = [a.name for a in node.names]
        modules = [s for s in subs if (PACKAGE / s).is_dir() or (PACKAGE / f"{s}.py").exists()]
        names = [f"asgiprof.{s}" for s in modules] or ["asgiprof"]
    elif isinstance(node, ast.ImportFrom):
        assert node.level == 0, "relative import"
        names = [node.module or ""]
    else:
        return []
    return [n for n in names if n.split(".")[0] == "asgiprof"]


def graph() -> dict[str, set[str]]:
    """part -> the other parts it imports."""
    edges: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        me = part(
            ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(
                ".__init__"
            )
        )
        tree = ast.parse(path.read_text("utf-8"))
        found = {part(m) for node in ast.walk(tree) for m in imported(node)}
        edges.setdefault(me, set()).update(found - {me})
    return edges


def kind(name: str) -> str:
    return "leaf" if name in LEAF else name


def test_the_scan_sees_every_form_of_import() -> None:
    edges = graph()
    assert "store" in edges["record"]  # `from asgiprof import store`
    assert "analyze" in edges["reporters"]  # `from asgiprof.analyze.result import ...`
    assert {"record", "report"} <= edges["session"]


def test_every_import_follows_the_flow() -> None:
    wrong = [
        f"{src} imports {dst}"
        for src, dsts in sorted(graph().items())
        for dst in sorted(dsts)
        if kind(src) in ALLOWED and not {dst, kind(dst)} & ALLOWED[kind(src)]
    ]
    assert wrong == []


def test_no_cycle_between_parts() -> None:
    edges, done = graph(), set[str]()

    def visit(node: str, path: list[str]) -> None:
        assert node not in path, "cycle: " + " -> ".join([*path[path.index(node) :], node])
        if node not in done:
            for nxt in sorted(edges.get(node, ())):
                visit(nxt, [*path, node])
            done.add(node)

    for start in sorted(edges):
        visit(start, [])
