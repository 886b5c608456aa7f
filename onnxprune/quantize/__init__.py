"""INT8 quantization after pruning (ONNX Runtime's quantization tools).

``quantize_int8(model, output, data)``: static QDQ quantization with calibration
data, dynamic quantization without; per-channel weight scales.
"""

from __future__ import annotations

from onnxprune.quantize.int8 import quantize_int8
from onnxprune.quantize.reader import calibration_reader

__all__ = ["calibration_reader", "quantize_int8"]
