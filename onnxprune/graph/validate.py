"""Checks on a loaded model before any work is spent on it.

Rules:

1. Floating-point constants must not hold NaN, and weights must be finite: a NaN,
   or an Inf in a weight, makes every score and every equivalence check meaningless,
   so compress refuses the model and names the tensors. ±Inf is a valid value where
   the op defines it, so it is refused only in a *weight*, a tensor that one of
   these reads (see :data:`WEIGHT_INPUTS`):
   a. Conv, ConvTranspose, Gemm, MatMul, Einsum: any constant input (weights, biases);
   b. BatchNormalization, InstanceNormalization, LayerNormalization,
      GroupNormalization: scale, bias, mean, variance (inputs 1+);
   c. LSTM, GRU, RNN: W, R, B, peepholes (inputs 1+); Gather: the table (input 0).
   Everywhere else ±Inf is accepted: Clip bounds (inputs 1/2), masks of -inf added
   to scores before Softmax (Add/Where), Max/Min constants, Less/Greater thresholds.
2. The installed ONNX Runtime must read the model's opset (checked before pruning,
   not after). An IR version above what it reads is lowered for the runtime only;
   the written model keeps its IR version, and a note says so.
"""

from __future__ import annotations

__all__ = ["WEIGHT_INPUTS", "check_finite", "check_runtime_support"]

import numpy as np
import onnx_ir as ir

from onnxprune.errors import InvalidModelError, UnsupportedModelError
from onnxprune.graph.tensors import CHUNK_BYTES, release

_FLOATS = {ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE, ir.DataType.BFLOAT16}


# op type -> inputs that are weights (rule 1); None: every input
WEIGHT_INPUTS: dict[str, tuple[int, ...] | None] = {
    "Conv": None, "ConvTranspose": None, "Gemm": None, "MatMul": None, "Einsum": None,
    "BatchNormalization": (1, 2, 3, 4), "InstanceNormalization": (1, 2),
    "LayerNormalization": (1, 2), "GroupNormalization": (1, 2),
    "LSTM": (1, 2, 3, 7), "GRU": (1, 2, 3), "RNN": (1, 2, 3), "Gather": (0,),
}


def check_finite(model: ir.Model) -> None:
    """Raise :class:`InvalidModelError` naming the tensors that hold NaN, or Inf in a
    weight (rule 1)."""
    bad = []
    for name, value in model.graph.initializers.items():
        tensor = value.const_value
        if tensor is None or tensor.dtype not in _FLOATS:
            continue
        array = tensor.numpy()
        nan, inf = _scan(array)
        del array
        release(value)
        if nan or (inf and _is_weight(value)):
            bad.append(name)
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise InvalidModelError(
            f"weights contain NaN or Inf in {', '.join(repr(b) for b in bad[:3])}{more}; "
            "fix or re-export the model before pruning")


def _scan(array: np.ndarray) -> tuple[bool, bool]:
    """(any NaN, any ±Inf), chunk by chunk."""
    nan = inf = False
    for chunk in _chunks(array):
        if np.isfinite(chunk).all():
            continue
        nan = nan or bool(np.isnan(chunk).any())
        inf = inf or bool(np.isinf(chunk).any())
        if nan:
            break
    return nan, inf


def _is_weight(value: ir.Value) -> bool:
    for node, index in value.uses():
        if node.domain not in ("", "ai.onnx") or node.op_type not in WEIGHT_INPUTS:
            continue
        inputs = WEIGHT_INPUTS[node.op_type]
        if inputs is None or index in inputs:
            return True
    return False


def _chunks(array: np.ndarray):
    flat = array.reshape(-1)
    step = max(1, CHUNK_BYTES // max(array.itemsize, 1))
    for start in range(0, flat.size, step):
        yield flat[start:start + step]


def check_runtime_support(model: ir.Model, opset: int) -> list[str]:
    """Apply rule 2; return notes for the result."""
    from onnxprune.graph.runtime import runtime_limits

    max_ir, max_opset = runtime_limits()
    if opset > max_opset:
        raise UnsupportedModelError(
            f"model opset {opset} is newer than the installed ONNX Runtime reads (<= {max_opset}); "
            "install a newer onnxruntime (pip install -U 'onnxprune[cpu]')")
    if model.ir_version > max_ir:
        return [f"IR version {model.ir_version} is lowered to {max_ir} for ONNX Runtime checks; "
                "the written model keeps IR version " + str(model.ir_version)]
    return []
