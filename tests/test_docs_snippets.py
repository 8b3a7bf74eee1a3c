"""The Python examples in docs/ use only names bubu has: each block compiles, and every
``bubu`` name it imports or reaches (``bubu.X``, ``bubu.testkit.Y``, ``from bubu.errors import
Z``) exists. Running them needs a cluster; ``tests/unit/cli/test_getting_started.py`` and the
example tests run the ones that do not."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        for i, match in enumerate(_BLOCK.finditer(page.read_text(encoding="utf-8"))):
            found.append((f"{page.relative_to(DOCS)}#{i + 1}", match.group(1)))
    return found


BLOCKS = _blocks()


def _resolve(dotted: str) -> None:
    """Import the longest module prefix of ``dotted`` and walk the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)  # AttributeError names what the docs got wrong
        return
    raise ModuleNotFoundError(dotted)


def _bubu_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    aliases = {"bubu": "bubu"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "bubu":
                    names.add(alias.name)
                    aliases[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else "bubu"
                    )
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "bubu":
            for alias in node.names:
                names.add(f"{node.module}.{alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain: list[str] = []
            inner: ast.expr = node
            while isinstance(inner, ast.Attribute):
                chain.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name) and inner.id in aliases:
                # bubu.testkit.BatchHarness(...).run: only the part that is a bubu name counts,
                # so stop at the first call or subscript (ast.Attribute chains stop there).
                names.add(".".join([aliases[inner.id], *reversed(chain)]))
    return names


def test_the_docs_have_python_examples() -> None:
    assert len(BLOCKS) >= 20


@pytest.mark.parametrize(("where", "code"), BLOCKS, ids=[w for w, _ in BLOCKS])
def test_a_docs_example_uses_only_names_bubu_has(where: str, code: str) -> None:
    tree = ast.parse(code, filename=where)
    # fragments of a coroutine's body may await at the top level
    compile(tree, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    for dotted in sorted(_bubu_names(tree)):
        try:
            _resolve(dotted)
        except (AttributeError, ModuleNotFoundError) as exc:
            pytest.fail(f"{where}: `{dotted}` does not exist ({exc})")


def test_the_check_sees_every_way_a_snippet_names_bubu() -> None:
    tree = ast.parse(
        "import bubu\nimport bubu.testkit as tk\nfrom bubu.errors import TemplateError\n"
        "x = bubu.Result({}).data\ny = tk.BatchHarness\n"
    )
    assert _bubu_names(tree) >= {
        "bubu",
        "bubu.testkit",
        "bubu.errors.TemplateError",
        "bubu.Result",
        "bubu.testkit.BatchHarness",
    }
    _resolve("bubu.testkit.BatchHarness")
    with pytest.raises(AttributeError):
        _resolve("bubu.no_such_helper")
    with pytest.raises(AttributeError):
        _resolve("bubu.errors.NoSuchError")
