"""Reading large initializers without holding them all in memory.

Rules:

1. ``release(value)`` drops the memory map behind an external tensor once a pass is
   done with it, so resident memory does not grow to the model size while passes
   walk over every weight.
2. ``reduce_rows`` computes a per-position statistic along one axis in chunks of
   about ``CHUNK_BYTES``, accumulating in float64, so a 1 GB weight never needs a
   second full-size temporary.
"""

from __future__ import annotations

__all__ = ["CHUNK_BYTES", "release", "reduce_rows", "array_of"]

import contextlib
from collections.abc import Callable

import numpy as np
import onnx_ir as ir

CHUNK_BYTES = 64 * 2**20


def array_of(value: ir.Value) -> np.ndarray:
    return value.const_value.numpy()


def release(value: ir.Value | None) -> None:
    """Unmap an external tensor's file (rule 1); a no-op for in-memory tensors."""
    tensor = None if value is None else value.const_value
    if isinstance(tensor, ir.ExternalTensor):
        # a view still alive elsewhere keeps the map open; it closes with that view
        with contextlib.suppress(BufferError):
            tensor.release()


def reduce_rows(array: np.ndarray, axis: int,
                stat: Callable[[np.ndarray, tuple[int, ...]], np.ndarray]) -> np.ndarray:
    """``stat(array, other_axes)`` for a sum-like ``stat``, chunked over the largest
    non-``axis`` dimension (rule 2)."""
    others = tuple(i for i in range(array.ndim) if i != axis)
    if array.nbytes <= CHUNK_BYTES or not others:
        return stat(np.asarray(array, dtype=np.float64), others)
    split = max(others, key=lambda i: array.shape[i])
    step = max(1, int(array.shape[split] * CHUNK_BYTES / array.nbytes))
    total = None
    for start in range(0, array.shape[split], step):
        chunk = np.take(array, np.arange(start, min(start + step, array.shape[split])), axis=split)
        part = stat(np.asarray(chunk, dtype=np.float64), others)
        total = part if total is None else total + part
    return total
