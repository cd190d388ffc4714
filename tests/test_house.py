"""The shape of the house, kept true: no import circle among our modules, and no private name
(``_x``) imported from another module. If two modules need a name, it is public in the lower one.

Reads the code with ``ast`` (nothing of the project runs). Imports inside functions and under
``if TYPE_CHECKING:`` count too: a circle of type-only imports still ties the modules together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("automl", "workers")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    return {
        _module_name(path, root): path
        for package in packages
        for path in (root / package).rglob("*.py")
        if "migrations" not in path.parts
    }


def _imports(modules: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    """Each module's imports of our modules, and every private name taken from another module."""
    edges: dict[str, set[str]] = {name: set() for name in modules}
    private: list[str] = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[tuple[str, str | None]] = []
            if isinstance(node, ast.Import):
                targets = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append((sub, None) if sub in modules else (base, alias.name))
            for target, imported in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if not target or target == name:
                    continue
                edges[name].add(target)
                if imported and imported.startswith("_") and not imported.startswith("__"):
                    private.append(f"{name} imports {target}.{imported}")
    return edges, private


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def house() -> tuple[dict[str, set[str]], list[str]]:
    return _imports(_modules())


def test_no_import_circle(house: tuple[dict[str, set[str]], list[str]]) -> None:
    edges, _ = house
    assert _circles(edges) == []


def test_no_private_name_crosses_modules(house: tuple[dict[str, set[str]], list[str]]) -> None:
    _, private = house
    assert private == []


def test_the_check_sees_a_circle_and_a_private_import(tmp_path: Path) -> None:
    # The check itself must be able to fail: a type-only circle through a function-level import,
    # and a private name taken from a sibling module, in a package made for the test.
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg.b import g\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    (package / "c.py").write_text("from .a import _hidden\n")
    edges, private = _imports(_modules(tmp_path, ("pkg",)))
    assert _circles(edges) == [["pkg.a", "pkg.b"]]
    assert private == ["pkg.c imports pkg.a._hidden"]


def test_every_test_file_has_a_name_of_its_own() -> None:
    """pytest imports test files by their base name (no packages under tests/): two of one name
    stop the whole run at collection, in CI, though each runs alone."""
    from collections import Counter

    names = Counter(path.name for path in (Path(__file__).resolve().parent).rglob("test_*.py"))
    assert not [name for name, count in names.items() if count > 1], names.most_common(3)
