"""Small modules and functions (checked with ``ast``, nothing imported): no module in
``onnxprune/`` over 400 lines, no function in the orchestration layer
(``onnxprune/pipeline/``, ``onnxprune/cli/compress.py``) over 60 lines."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "onnxprune"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _relative(path: pathlib.Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_no_module_over_400_lines():
    long = {_relative(p): n for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def _functions(path: pathlib.Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


def test_no_orchestration_function_over_60_lines():
    files = [*sorted((PACKAGE / "pipeline").rglob("*.py")), PACKAGE / "cli" / "compress.py"]
    long = {f"{_relative(path)}:{name}": lines for path in files
            for name, lines in _functions(path) if lines > MAX_FUNCTION_LINES}
    assert long == {}


def test_the_size_checks_see_the_orchestration_layer():
    """The checks read real files: the pipeline has modules with functions."""
    modules = sorted((PACKAGE / "pipeline").rglob("*.py"))
    assert len(modules) >= 8
    assert sum(1 for path in modules for _ in _functions(path)) >= 40
