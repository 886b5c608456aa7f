"""Every rule module has its own unit tests: ``tests/analysis/rules/test_<module>.py``."""

from __future__ import annotations

import pathlib

import onnxprune.analysis.rules as rules_package

RULES_DIR = pathlib.Path(rules_package.__file__).parent
TESTS_DIR = pathlib.Path(__file__).parent


def test_every_rule_module_has_a_test_file():
    modules = {p.stem for p in RULES_DIR.glob("*.py") if p.stem != "__init__"}
    missing = sorted(m for m in modules
                     if not (TESTS_DIR / f"test_{m}.py").is_file())
    assert not missing, f"rule modules without tests/analysis/rules/test_<name>.py: {missing}"
