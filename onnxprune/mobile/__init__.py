"""ONNX Runtime Mobile: ORT-format export, NNAPI/CoreML usability, mobile-proxy timing."""

from __future__ import annotations

from onnxprune.mobile.convert import dynamic_inputs, fix_shapes, to_ort
from onnxprune.mobile.export import default_mobile_output, export_mobile
from onnxprune.mobile.usability import check_mobile_usability

__all__ = [
    "check_mobile_usability",
    "default_mobile_output",
    "dynamic_inputs",
    "export_mobile",
    "fix_shapes",
    "to_ort",
]
