"""Per-op rules; importing this package registers them all."""

from __future__ import annotations

from onnxprune.analysis.rules import (
    axis_moves,
    concat,
    conv,
    einsum,
    elementwise,
    gather,
    linear,
    norm,
    pooling,
    quant,
    recurrent,
    reshape,
    resizing,
    slicing,
)

__all__ = ["axis_moves", "concat", "conv", "einsum", "elementwise", "gather", "linear", "norm",
           "pooling", "quant", "recurrent", "reshape", "resizing", "slicing"]
