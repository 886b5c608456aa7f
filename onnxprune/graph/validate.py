"""Checks on a loaded model before any work is spent on it.

Rules:

1. Floating-point weights must be finite: a NaN or Inf makes every score and every
   equivalence check meaningless, so compress refuses the model and names the
   tensors.
2. The installed ONNX Runtime must read the model's opset (checked before pruning,
   not after). An IR version above what it reads is lowered for the runtime only;
   the written model keeps its IR version, and a note says so.
"""

from __future__ import annotations

__all__ = ["check_finite", "check_runtime_support"]

import numpy as np
import onnx_ir as ir

from onnxprune.errors import InvalidModelError, UnsupportedModelError
from onnxprune.graph.tensors import CHUNK_BYTES, release

_FLOATS = {ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE, ir.DataType.BFLOAT16}


def check_finite(model: ir.Model) -> None:
    """Raise :class:`InvalidModelError` naming the tensors that hold NaN or Inf (rule 1)."""
    bad = []
    for name, value in model.graph.initializers.items():
        tensor = value.const_value
        if tensor is None or tensor.dtype not in _FLOATS:
            continue
        array = tensor.numpy()
        finite = all(np.isfinite(chunk).all() for chunk in _chunks(array))
        del array
        release(value)
        if not finite:
            bad.append(name)
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise InvalidModelError(
            f"weights contain NaN or Inf in {', '.join(repr(b) for b in bad[:3])}{more}; "
            "fix or re-export the model before pruning")


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
