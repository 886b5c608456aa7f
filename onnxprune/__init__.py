"""onnxprune: framework-agnostic structural pruning of ONNX models."""

from __future__ import annotations

__version__ = "0.1.0"

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
