"""onnxprune: framework-agnostic structural pruning of ONNX models.

The package root re-exports the public API; no module inside the package imports
the root or the ``onnxprune.compress`` facade (``tests/pipeline/test_imports.py``),
so these imports form no cycle. The version lives in :mod:`onnxprune._version`.
"""

from __future__ import annotations

from onnxprune._version import __version__
from onnxprune.compress import CompressOptions, CompressResult, analyze_file, compress
from onnxprune.errors import ExitCode, OnnxPruneError

__all__ = [
           "CompressOptions",
           "CompressResult",
           "ExitCode",
           "OnnxPruneError",
           "__version__",
           "analyze_file",
           "compress",
]
