"""Print the import cycles between the modules of ``onnxprune/``; exit 1 if there are any.

Rules:

1. Only *module-level* imports count: statements in a module's body, also inside
   top-level ``if``/``try``/``with`` blocks and class bodies (they run at import
   time). Imports inside functions (the lazy imports of heavy or upper-layer
   modules) do not count, nor imports under ``if TYPE_CHECKING:``.
2. ``import a.b.c`` and ``from a.b import c`` are edges to the module they name:
   ``a.b.c`` when it is a module or package of ``onnxprune/``, else ``a.b`` (a name
   defined in that package's ``__init__``). Relative imports are resolved against
   the importing module. Parent packages' ``__init__`` modules are not edges of their
   own (Python runs them first, before any cycle could form).
3. A cycle is a strongly connected component of more than one module (or a module
   importing itself); each is printed as one line of its sorted module names.

Usage: ``python tools/import_cycles.py [PACKAGE_DIR]`` (default: ``onnxprune`` next to
this script's parent folder). Only the standard library is used.
"""

from __future__ import annotations

__all__ = ["find_cycles", "import_graph", "main"]

import ast
import pathlib
import sys


def _module_names(root: pathlib.Path) -> dict[str, pathlib.Path]:
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _top_level_imports(body: list[ast.stmt]):
    """Rule 1: import statements that run when the module is imported."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _type_checking(node.test):
                yield from _top_level_imports(node.body)
            yield from _top_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody,
                          *(h.body for h in node.handlers)):
                yield from _top_level_imports(block)
        elif isinstance(node, (ast.With, ast.ClassDef)):
            yield from _top_level_imports(node.body)


def _base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    parts = parts[:len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def _targets(module: str, path: pathlib.Path, node: ast.stmt, known: set[str]):
    """Rule 2."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            name = alias.name
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                yield name
        return
    base = _base(module, path.name == "__init__.py", node)
    for alias in node.names:
        full = f"{base}.{alias.name}"
        if full in known:
            yield full
        elif base in known:
            yield base


def import_graph(root: pathlib.Path) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports at module level."""
    names = _module_names(root)
    known = set(names)
    graph: dict[str, set[str]] = {name: set() for name in names}
    for name, path in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _top_level_imports(tree.body):
            graph[name].update(_targets(name, path, node, known))
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Rule 3 (Tarjan's strongly connected components, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    cycles.append(sorted(component))
    return sorted(cycles)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    default = pathlib.Path(__file__).resolve().parents[1] / "onnxprune"
    root = pathlib.Path(args[0]) if args else default
    cycles = find_cycles(import_graph(root))
    for cycle in cycles:
        sys.stdout.write(f"cycle of {len(cycle)} modules: {' -> '.join(cycle)}\n")
    if not cycles:
        sys.stdout.write(f"no import cycles in {root}\n")
    return 1 if cycles else 0


if __name__ == "__main__":
    raise SystemExit(main())
