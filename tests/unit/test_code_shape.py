"""The shape rule of issue 13: no function in asgiprof/ over 60 lines or over McCabe
complexity 15 unless a comment says why. The comment sits on the `def` line or in the comment
block right above the function (above its decorators) and starts with `# long:` (length) or
`# complex:` (complexity), followed by the reason. Complexity is ruff's C901 count (what
`ruff check --select C901` reports), not a count of our own."""

from __future__ import annotations

import ast
import io
import json
import re
import subprocess
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "asgiprof"
MAX_LINES = 60
MAX_COMPLEXITY = 15
# A reason is a few words, not a bare tag.
MIN_REASON_WORDS = 3


@dataclass(frozen=True)
class Offence:
    where: str
    name: str
    missing: str  # "long" or "complex"
    measure: str

    def __str__(self) -> str:
        return f"{self.where} {self.name}: {self.measure}, no '# {self.missing}: why' comment"


def _complexities(root: Path) -> dict[tuple[Path, int], int]:
    """(file, def line) -> complexity, for every function ruff finds over the limit."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--isolated",
            "--select",
            "C901",
            "--config",
            f"lint.mccabe.max-complexity={MAX_COMPLEXITY}",
            "--output-format",
            "json",
            "--exit-zero",
            # A noqa comment silences ruff, not this rule: the reason is still required.
            "--ignore-noqa",
            str(root),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = {}
    for item in json.loads(run.stdout):
        number = re.search(r"\((\d+) > \d+\)", item["message"])
        assert number, f"unexpected ruff message {item['message']!r}"
        found[(Path(item["filename"]).resolve(), item["location"]["row"])] = int(number[1])
    return found


@dataclass(frozen=True)
class _Comment:
    text: str
    alone: bool  # the only thing on its line


def _comments(source: str) -> dict[int, _Comment]:
    """Line number -> the comment on it (read by the tokenizer: a `#` in a string is none)."""
    return {
        tok.start[0]: _Comment(tok.string, tok.line.lstrip().startswith("#"))
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }


def _reasons(
    comments: dict[int, _Comment], node: ast.FunctionDef | ast.AsyncFunctionDef
) -> set[str]:
    """The tags (`long`, `complex`) that come with a reason for this function: on its `def`
    line, or in the comment lines right above it (and its decorators)."""
    said = [comments[node.lineno].text] if node.lineno in comments else []
    above = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
    while above in comments and comments[above].alone:
        said.append(comments[above].text)
        above -= 1
    tags = set()
    for comment in said:
        # On the def line the reason may follow another comment (`# noqa: C901  # complex: ..`).
        tagged = re.search(r"#\s*(long|complex):\s*(.*)", comment)
        if tagged and len(tagged[2].split()) >= MIN_REASON_WORDS:
            tags.add(tagged[1])
    return tags


def offences(root: Path) -> list[Offence]:
    complexities = _complexities(root)
    found = []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        comments = _comments(source)
        where = path.relative_to(root.parent).as_posix()
        for node in ast.walk(ast.parse(source, filename=str(path))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            assert node.end_lineno is not None
            length = node.end_lineno - node.lineno + 1
            complexity = complexities.get((path.resolve(), node.lineno))
            reasons = _reasons(comments, node)
            at = f"{where}:{node.lineno}"
            if length > MAX_LINES and "long" not in reasons:
                found.append(Offence(at, node.name, "long", f"{length} lines > {MAX_LINES}"))
            if complexity is not None and "complex" not in reasons:
                measure = f"complexity {complexity} > {MAX_COMPLEXITY}"
                found.append(Offence(at, node.name, "complex", measure))
    return found


def test_no_long_or_complex_function_without_a_reason() -> None:
    found = offences(PACKAGE)
    assert not found, "split these into named steps, or say why not:\n" + "\n".join(map(str, found))


def _long(name: str) -> str:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_LINES))
    return f"def {name}():\n{body}"


def _complex(name: str) -> str:
    body = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(MAX_COMPLEXITY))
    return f"def {name}(x):\n{body}    return -1\n"


def test_the_rule_catches_length_and_complexity_and_reads_reasons(tmp_path: Path) -> None:
    # The rule must be able to fail: a made-up package read exactly like asgiprof/.
    package = tmp_path / "pkg"
    package.mkdir()
    sources = [
        _long("too_long"),
        _complex("too_complex"),
        "# long: the steps read as one table\n" + _long("told_long"),
        "# complex: one branch per wire format\n" + _complex("told_complex"),
        "# long: why\n" + _long("bare_tag"),
        "# long: a decorated one, said above\n@staticmethod\n" + _long("decorated"),
        _long("same_line").replace("():", "():  # long: generated from a table here", 1),
        _complex("noqa_only").replace("(x):", "(x):  # noqa: C901", 1),
        "y = 1  # long: a comment ending a line of code\n" + _long("after_code"),
        _complex("noqa_and_why").replace("(x):", "(x):  # noqa: C901  # complex: a flat table", 1),
    ]
    (package / "mod.py").write_text("\n\n".join(sources), encoding="utf-8")
    found = {(o.name, o.missing) for o in offences(package)}
    assert found == {
        ("too_long", "long"),
        ("too_complex", "complex"),
        ("bare_tag", "long"),
        ("noqa_only", "complex"),
        ("after_code", "long"),
    }
