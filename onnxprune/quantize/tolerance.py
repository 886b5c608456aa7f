"""Tolerance of the masked-equivalence check for quantized (QDQ) models.

Rule: pruning a QDQ model is exact in exact arithmetic: removed channels are zeroed at
the float level in the masked twin, a zero quantizes to the zero point and
dequantizes to exactly zero, activation scales are per tensor and untouched, and
per-channel weight scales are sliced with their channels. What differs is float
summation order: the pruned Conv/Gemm adds fewer terms (or ONNX Runtime runs it with
integer kernels), which moves a pre-quantization value by ~1e-7 relative; when that
value sits on a rounding boundary, the next QuantizeLinear rounds it one step the
other way. Such a *rounding flip* changes a few output elements by one or two
quantization steps: measured on the QDQ fixtures (benchmarks/sparsity_digits.py, table
in docs/sparsity.md) at most 1.8% of the largest output magnitude, in at most 1.9% of
the elements, while one per-channel weight scale rotated by one channel moved the
outputs by 8.6% or more. Models with QuantizeLinear or DequantizeLinear nodes are
therefore checked with ``QDQ_RTOL`` (5%), float models with ``FLOAT_RTOL``.
"""

from __future__ import annotations

__all__ = ["FLOAT_RTOL", "QDQ_RTOL", "equivalence_rtol", "is_quantized"]

import onnx
import onnx_ir as ir

FLOAT_RTOL = 1e-4
QDQ_RTOL = 0.05
_QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}


def is_quantized(model: onnx.ModelProto | ir.Model) -> bool:
    """True when the main graph holds QuantizeLinear/DequantizeLinear nodes."""
    nodes = model.graph.node if isinstance(model, onnx.ModelProto) else model.graph
    return any(node.op_type in _QDQ_OPS for node in nodes)


def equivalence_rtol(model: onnx.ModelProto | ir.Model) -> float:
    """The relative tolerance of the masked-equivalence check for ``model`` (rule)."""
    return QDQ_RTOL if is_quantized(model) else FLOAT_RTOL
