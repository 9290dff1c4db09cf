"""The import rules of docs/packages.md, checked on the source with ``ast`` (nothing imported):
library code does not import the command line, the errors module is a leaf, and the packages
import each other without cycles. Every import counts: top-level, inside functions and under
``if TYPE_CHECKING``.

``python tests/test_imports.py`` prints the package-level import graph.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from pathlib import Path

from params_helpers import ROOT

from iterconv.cli import COMMAND_MODULES

SRC = ROOT / "src"
# Entry points: the only modules that may import iterconv.cli.
ENTRY_POINTS = {"iterconv.__main__", "iterconv.cli", *COMMAND_MODULES}
LEAVES = ("iterconv.errors",)  # modules that import nothing of the project


def module_name(path: Path, src: Path = SRC) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules(src: Path = SRC, package: str = "iterconv") -> dict[str, Path]:
    """Dotted name -> file of every module of ``package`` below ``src``."""
    return {module_name(p, src): p for p in sorted((src / package).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """The modules of ``known`` that the module ``name`` imports, wherever the import stands.
    ``from a import b`` counts as an import of ``a.b`` when that is a module, else of ``a``."""

    def resolve(target: str) -> str:  # iterconv.x.y.attr -> iterconv.x.y
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target

    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [resolve(alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [resolve(f"{base}.{alias.name}") for alias in node.names]
        else:
            continue
        yield from filter(None, targets)


def module_graph(src: Path = SRC, package: str = "iterconv") -> dict[str, set[str]]:
    """Module -> the project modules it imports (itself left out)."""
    modules = source_modules(src, package)
    known = set(modules)
    return {
        name: {t for t in imports_of(name, path, known) if t != name}
        for name, path in modules.items()
    }


def package_of(module: str, packages: set[str]) -> str:
    """``iterconv.<pkg>`` for a module inside a subpackage, the module itself otherwise."""
    top = ".".join(module.split(".")[:2])
    return top if top in packages else module


def package_graph(
    src: Path = SRC, package: str = "iterconv", entry_points: Collection[str] = ENTRY_POINTS
) -> dict[str, set[str]]:
    """Package (or top-level module) -> the packages and top-level modules it imports. Entry
    points are nodes of their own: a command module sits above every package it wires up."""
    packages = {n for n, p in source_modules(src, package).items() if p.name == "__init__.py"}

    def node(module: str) -> str:
        return module if module in entry_points else package_of(module, packages)

    graph: dict[str, set[str]] = {}
    for module, targets in module_graph(src, package).items():
        graph.setdefault(node(module), set()).update(node(t) for t in targets)
    return {name: targets - {name} for name, targets in graph.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def imports_within(component: list[str]) -> list[str]:
    """The module imports ``a -> b`` between different nodes of ``component`` (package level,
    entry points on their own)."""
    packages = {n for n, p in source_modules().items() if p.name == "__init__.py"}

    def node(module: str) -> str:
        return module if module in ENTRY_POINTS else package_of(module, packages)

    return sorted(
        f"{module} -> {target}"
        for module, targets in MODULES.items()
        for target in targets
        if node(module) in component and node(target) in component and node(module) != node(target)
    )


def format_graph(graph: dict[str, set[str]]) -> str:
    return "\n".join(f"{pkg} -> {', '.join(sorted(graph[pkg])) or '-'}" for pkg in sorted(graph))


MODULES = module_graph()


def test_library_code_does_not_import_the_cli():
    importers = sorted(m for m, targets in MODULES.items() if "iterconv.cli" in targets)
    assert [m for m in importers if m not in ENTRY_POINTS] == []


def test_leaf_modules_import_nothing_of_the_project():
    for leaf in LEAVES:
        assert MODULES[leaf] == set(), leaf


def test_no_import_cycle_between_packages():
    found = cycles(package_graph())
    assert found == [], [imports_within(component) for component in found]


def test_graph_finds_relative_lazy_and_type_only_imports(tmp_path):
    """The checker itself: a cycle built from imports of every kind is found."""
    files = {
        "pkg/__init__.py": "",
        "pkg/errors.py": "",
        "pkg/a/__init__.py": "from .core import run\n",
        "pkg/a/core.py": "def run():\n    from pkg.b.util import helper\n",
        "pkg/b/__init__.py": "",
        "pkg/b/util.py": (
            "from typing import TYPE_CHECKING\n"
            "from ..errors import Oops\n"
            "if TYPE_CHECKING:\n    from pkg.c import thing\n"
        ),
        "pkg/c/__init__.py": "import pkg.a.core as core\nfrom pkg import a, errors\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    modules = module_graph(tmp_path, "pkg")
    assert modules["pkg.a"] == {"pkg.a.core"}
    assert modules["pkg.b.util"] == {"pkg.errors", "pkg.c"}
    assert modules["pkg.c"] == {"pkg.a.core", "pkg.a", "pkg.errors"}
    packages = package_graph(tmp_path, "pkg", entry_points=())
    assert packages["pkg.b"] == {"pkg.errors", "pkg.c"}
    assert cycles(packages) == [["pkg.a", "pkg.b", "pkg.c"]]
    with_entry_point = package_graph(tmp_path, "pkg", entry_points={"pkg.a.core"})
    assert cycles(with_entry_point) == [["pkg.a", "pkg.a.core", "pkg.b", "pkg.c"]]
    assert cycles({"x": {"y"}, "y": set()}) == []


if __name__ == "__main__":
    print(format_graph(package_graph()))
