"""The orchestration layer: every compress flow, above training/benchmark/reporting and
below the CLI (see docs/architecture.md).

``run_compress`` is the single entry point of compress (``onnxprune.compress.compress``
and the CLI call it); ``select_flow`` and ``FLOWS`` say which flow a set of options
runs; ``sensitivity_file`` is the API behind ``onnxprune sensitivity``. The names are
imported lazily (PEP 562), so ``onnxprune.pipeline.run_shapes`` and the other small
modules can be imported without the whole layer.
"""

from __future__ import annotations

__all__ = ["FLOWS", "CompressResult", "analyze_file", "default_output", "run_compress",
           "select_flow", "sensitivity_file"]

_LAZY = {"FLOWS": "flows", "run_compress": "flows", "select_flow": "flows",
         "CompressResult": "result", "default_output": "result", "analyze_file": "analyze",
         "sensitivity_file": "sensitivity"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'onnxprune.pipeline' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"onnxprune.pipeline.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
