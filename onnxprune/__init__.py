"""onnxprune: framework-agnostic structural pruning of ONNX models."""

from __future__ import annotations

__version__ = "0.1.0"

from onnxprune.compress import CompressOptions, CompressResult, analyze_file, compress  # noqa: E402
from onnxprune.errors import ExitCode, OnnxPruneError  # noqa: E402

__all__ = ["compress", "analyze_file", "CompressOptions", "CompressResult", "ExitCode",
           "OnnxPruneError", "__version__"]
