"""Per-op rules; importing this package registers them all."""

from __future__ import annotations

from onnxprune.analysis.rules import (
    conv,
    einsum,
    elementwise,
    linear,
    norm,
    pooling,
    quant,
    recurrent,
    shape_ops,
)

__all__ = ["conv", "einsum", "elementwise", "linear", "norm", "pooling", "quant", "recurrent",
           "shape_ops"]
