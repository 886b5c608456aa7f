"""The committed cycle script (``tools/import_cycles.py``) finds a module-level cycle in a
hand-built package, ignores function-local imports, and finds none in ``onnxprune/``."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "import_cycles.py"


def _load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("import_cycles", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cycle_script_finds_a_cycle_and_ignores_function_local_imports(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("from .. import c\n")
    (package / "c.py").write_text("import pkg.a\n\ndef late():\n    import pkg.d\n")
    (package / "d.py").write_text("from pkg import c\n")
    script = _load_script()
    assert script.find_cycles(script.import_graph(package)) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    run = subprocess.run([sys.executable, str(SCRIPT), str(package)], capture_output=True,
                         text=True, check=False)
    assert run.returncode == 1 and "pkg.a -> pkg.c -> pkg.sub.b" in run.stdout


def test_no_import_cycles_inside_the_package():
    run = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                         check=False)
    assert run.returncode == 0, run.stdout
    assert "no import cycles" in run.stdout
