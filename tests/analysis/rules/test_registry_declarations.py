"""The rule registry holds exactly the rules the modules of ``analysis/rules`` declare.

Each ``@register(...)`` decorator in the source of a rule module is read (not imported)
and compared with what importing the package put in the registry: same (domain, op,
opset range, rule class, module) for every entry. A rule lost or registered twice when
modules are split or moved fails here.
"""

from __future__ import annotations

import ast
import itertools
import pathlib

import onnxprune.analysis.rules as rules_package
from onnxprune.analysis import registry

RULES_DIR = pathlib.Path(rules_package.__file__).parent


def _literals(tree: ast.Module) -> dict[str, object]:
    """Module-level ``NAME = <literal>`` assignments (op lists passed as ``*NAME``)."""
    found = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 \
                and isinstance(stmt.targets[0], ast.Name):
            try:
                found[stmt.targets[0].id] = ast.literal_eval(stmt.value)
            except ValueError:
                continue
    return found


def _op_names(arg: ast.expr, literals: dict[str, object]) -> list[str]:
    if isinstance(arg, ast.Starred):
        return list(literals[arg.value.id])  # a tuple of names, or a dict keyed by them
    return [ast.literal_eval(arg)]


def _declared() -> set[tuple]:
    found = set()
    for path in sorted(RULES_DIR.glob("*.py")):
        module = f"onnxprune.analysis.rules.{path.stem}"
        tree = ast.parse(path.read_text())
        literals = _literals(tree)
        for cls in ast.walk(tree):
            if not isinstance(cls, ast.ClassDef):
                continue
            for deco in cls.decorator_list:
                if not (isinstance(deco, ast.Call) and getattr(deco.func, "id", "") == "register"):
                    continue
                keywords = {k.arg: ast.literal_eval(k.value) for k in deco.keywords}
                for op in (name for arg in deco.args for name in _op_names(arg, literals)):
                    found.add((keywords.get("domain", ""), op, keywords.get("since", 1),
                               keywords.get("until"), cls.name, module))
    return found


def _registered() -> set[tuple]:
    return {(domain, op, entry.since, entry.until, type(entry.rule).__name__,
             type(entry.rule).__module__)
            for (domain, op), entries in registry._REGISTRY.items() for entry in entries}


def test_registry_equals_the_declared_rules():
    declared = _declared()
    assert declared, "no @register found in analysis/rules"
    assert _registered() == declared


def test_every_rule_module_is_imported_by_the_package():
    declaring = {module.rsplit(".", 1)[1] for *_, module in _declared()}
    assert declaring <= set(rules_package.__all__)


def test_no_op_has_two_rules_for_one_opset():
    for (domain, op), entries in registry._REGISTRY.items():
        ranges = sorted((e.since, e.until if e.until is not None else 10**6) for e in entries)
        for (_, end), (start, _) in itertools.pairwise(ranges):
            assert end < start, f"{domain or 'ai.onnx'}::{op} has overlapping rules"
