"""No import cycle inside prunescope/: module dependencies go one way.

Every import statement counts, wherever it is written: at module level, inside a function (a local import
only hides a cycle from the interpreter) and under ``if TYPE_CHECKING:`` (a type-only import is still a
design dependency). Importing ``a.b.c`` is an edge to ``a.b.c`` only; the implicit import of the parent
package ``a.b`` is left out, because a package ``__init__`` that re-exports its submodules is not a cycle.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "prunescope"


def module_name(path: Path, package_dir: Path) -> str:
    parts = [package_dir.name, *path.relative_to(package_dir).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Absolute dotted names an AST imports: ``mod`` for ``import mod``, ``mod.name`` for ``from mod import name``."""
    # The package a relative import is resolved against: the module's own package, or itself for __init__.
    here = module.split(".") if is_package else module.split(".")[:-1]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            # `from pkg import mod` depends on pkg.mod, `from pkg import name` on pkg (resolved by the caller).
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def module_graph(package_dir: Path) -> dict[str, set[str]]:
    """{module: modules of the same package it imports}, from the source files under ``package_dir``."""
    files = {module_name(path, package_dir): path for path in sorted(package_dir.rglob("*.py"))}
    graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets = set()
        for name in imported_names(tree, module, path.name == "__init__.py"):
            # `from pkg.mod import name` names pkg.mod.name: the longest prefix that is a module is the edge.
            parts = name.split(".")
            while parts and ".".join(parts) not in files:
                parts.pop()
            if parts and ".".join(parts) != module:
                targets.add(".".join(parts))
        graph[module] = targets
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a -> ... -> a) per strongly connected group of modules that import each other."""
    cycles, done = [], set()
    for start in sorted(graph):
        if start in done:
            continue
        # Depth-first search for a path back to `start`.
        stack, parent = [start], {start: None}
        found = None
        while stack and found is None:
            node = stack.pop()
            for target in sorted(graph[node]):
                if target == start:
                    found = node
                    break
                if target not in parent:
                    parent[target] = node
                    stack.append(target)
        if found is None:
            continue
        path = [found]
        while path[-1] != start:
            path.append(parent[path[-1]])
        cycle = [start, *reversed(path[:-1]), start]
        done.update(cycle)
        cycles.append(cycle)
    return cycles


def test_prunescope_has_no_import_cycle():
    cycles = import_cycles(module_graph(PACKAGE_DIR))
    assert not cycles, "import cycles in prunescope/:\n" + "\n".join(" -> ".join(c) for c in cycles)


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root / "pkg"


# Each case: a small package whose only cycle is written in one of the forms the test must see.
CYCLES = {
    "absolute": {"a.py": "import pkg.b\n", "b.py": "from pkg.a import thing\n"},
    "relative": {"sub/__init__.py": "", "sub/a.py": "from .b import x\n", "sub/b.py": "from . import a\n"},
    "parent_relative": {"a.py": "from .sub.b import x\n", "sub/__init__.py": "", "sub/b.py": "from ..a import y\n"},
    "function_local": {"a.py": "def f():\n    from pkg import b\n", "b.py": "from pkg.a import f\n"},
    "type_checking": {
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.c import C\n",
        "b.py": "import pkg.a\n",
        "c.py": "from pkg.b import B\n",
    },
    "via_package_init": {"__init__.py": "from pkg.a import x\n", "a.py": "import pkg\n"},
}


@pytest.mark.parametrize("files", CYCLES.values(), ids=CYCLES.keys())
def test_cycle_finder_sees_each_import_form(tmp_path, files):
    cycles = import_cycles(module_graph(write_package(tmp_path, {"__init__.py": "", **files})))
    assert len(cycles) == 1 and cycles[0][0] == cycles[0][-1] and len(cycles[0]) >= 3


def test_cycle_finder_passes_one_way_imports(tmp_path):
    """A package __init__ re-exporting its submodules, which import each other one way, is no cycle."""
    package = write_package(tmp_path, {
        "__init__.py": "",
        "sub/__init__.py": "from pkg.sub.a import A\nfrom .b import B\n",
        "sub/a.py": "import os\nfrom pkg.sub.b import B\n",
        "sub/b.py": "from pkg.base import value\nfrom pkg.sub import c\n",
        "sub/c.py": "from pkg import base\n",
        "base.py": "import json\n",
    })
    graph = module_graph(package)
    assert graph == {"pkg": set(), "pkg.base": set(), "pkg.sub": {"pkg.sub.a", "pkg.sub.b"},
                     "pkg.sub.a": {"pkg.sub.b"}, "pkg.sub.b": {"pkg.base", "pkg.sub.c"}, "pkg.sub.c": {"pkg.base"}}
    assert import_cycles(graph) == []
