"""No module inside ``onnxprune/`` imports the package root or the compress facade,
parsed with ``ast`` (nothing is imported); function-local imports count too."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "onnxprune"
FORBIDDEN = ("onnxprune", "onnxprune.compress")


def _imported(tree: ast.Module) -> list[tuple[int, str]]:
    """Every module an import statement names, also inside functions."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def test_no_module_imports_the_package_root_or_the_compress_facade():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "__init__.py":  # the root re-exports the facade
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for line, name in _imported(tree):
            if name in FORBIDDEN:
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert offenders == []


def test_public_facade_keeps_its_names_and_the_entry_points_arguments():
    import inspect

    import onnxprune
    from onnxprune.compress import (
        CompressOptions,
        CompressResult,
        analyze_file,
        compress,
        default_output,
    )
    from onnxprune.pipeline import run_compress, select_flow

    assert onnxprune.compress is compress and onnxprune.CompressResult is CompressResult
    assert onnxprune.CompressOptions is CompressOptions and onnxprune.analyze_file is analyze_file
    assert default_output("a/m.onnx").as_posix() == "a/m.pruned.onnx"
    facade = inspect.signature(compress).parameters
    entry = inspect.signature(inspect.unwrap(run_compress)).parameters
    assert list(facade) == list(entry)
    assert callable(select_flow)
