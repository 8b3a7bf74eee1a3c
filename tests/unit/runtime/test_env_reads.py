"""Only the runtime contract reads ``BUBU_*`` variables (issue 12 deliverable 1).

Every other module gets its settings from the typed ``RuntimeEnv`` (or the transport settings
parsed in ``bubu._runtime``), so a variable has one parser, one default and one place in the
documented table. This test reads the source: a ``.get("BUBU_...")``, ``getenv("BUBU_...")`` or
``environ["BUBU_..."]`` outside ``bubu/_runtime`` fails it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "bubu"


def _reads(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        key: ast.expr | None = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
            if name in ("get", "getenv", "pop") and node.args:
                key = node.args[0]
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
            if node.value.attr == "environ":
                key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            if key.value.startswith("BUBU_"):
                found.append((node.lineno, key.value))
    return found


def test_no_module_outside_the_runtime_contract_reads_bubu_variables() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in ("_runtime", "_gen"):
            continue
        for line, name in _reads(ast.parse(path.read_text(), str(path))):
            offenders.append(f"bubu/{rel}:{line} reads {name}")
    assert offenders == []


def test_the_check_sees_a_read() -> None:
    assert _reads(ast.parse('src.get("BUBU_STEP_TIMEOUT")')) == [(1, "BUBU_STEP_TIMEOUT")]
    assert _reads(ast.parse('os.environ["BUBU_DEBUG"]')) == [(1, "BUBU_DEBUG")]
