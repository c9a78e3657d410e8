"""No test module imports another test module: what tests share lives in helper modules
(tests/profile_builder.py, tests/fastapi_frames.py, tests/browser/pages.py, ...), so running,
moving or deleting one test file never changes another's tests."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def imported_modules(path: Path, root: Path = TESTS) -> list[str]:
    """Dotted names of every module `path` (under the `tests` package at `root`) imports,
    relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = ["tests", *path.relative_to(root).parent.parts]
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append(module)
            # `from tests.unit import test_x` imports the module test_x itself.
            found.extend(f"{module}.{alias.name}" for alias in node.names)
    return found


def is_test_module(name: str) -> bool:
    return name.rsplit(".", 1)[-1].startswith("test_")


def test_no_test_module_imports_another_test_module() -> None:
    files = sorted(TESTS.rglob("test_*.py"))
    assert len(files) > 40  # the walk found the suite
    offenders = [
        f"{path.relative_to(TESTS)} imports {name}"
        for path in files
        for name in imported_modules(path)
        if is_test_module(name)
    ]
    assert offenders == []


def test_the_rule_sees_every_form_of_import(tmp_path: Path) -> None:
    # The check would catch each way of importing a test module (and none of a helper).
    sub = tmp_path / "tests" / "unit"
    sub.mkdir(parents=True)
    forms = {
        "import tests.unit.test_a": True,
        "from tests.unit.test_a import helper": True,
        "from tests.unit import test_a": True,
        "from .test_a import helper": True,
        "from . import test_a": True,
        "from tests.profile_builder import Builder": False,
        "from ..browser.pages import open_report": False,
    }
    for source, offends in forms.items():
        path = sub / "test_b.py"
        path.write_text(source + "\n")
        names = imported_modules(path, tmp_path / "tests")
        assert any(is_test_module(n) for n in names) is offends, (source, names)
