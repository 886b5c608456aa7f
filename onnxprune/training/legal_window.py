"""Legalization rules for windowed normalisations (need probed shapes).

1. ``LRN`` (no gradient in ONNX Runtime 1.19): the sum of squares over the channel
   window ``[c - floor((size-1)/2), c + ceil((size-1)/2)]`` is a ``Conv`` with a fixed
   all-ones ``[1, 1, size, 1]`` kernel on ``x*x`` reshaped to ``[N, 1, C, prod(spatial)]``
   (zero pads at the channel ends, as the op defines); then
   ``y = x / (bias + alpha/size * sum)^beta`` with ``Pow`` and ``Div``.
"""

from __future__ import annotations

__all__: list[str] = []

import numpy as np
import onnx

from onnxprune.training.legalize import NodeBuilder, rule


@rule("LRN", shapes=True)
def lrn(b: NodeBuilder) -> list[onnx.NodeProto] | str:
    shape = b.shape(b.x)
    if shape is None or len(shape) < 3:
        return "LRN input shape unknown or of rank < 3"
    size = int(b.attr("size"))
    alpha, beta = float(b.attr("alpha", 1e-4)), float(b.attr("beta", 0.75))
    bias = float(b.attr("bias", 1.0))
    channels = shape[1]
    square = b.reshape(b.op("Mul", [b.x, b.x]), [0, 1, channels, -1])
    low = (size - 1) // 2
    kernel = b.const(np.ones((1, 1, size, 1), np.float32))
    window = b.op("Conv", [square, kernel], pads=[low, 0, size - 1 - low, 0])
    total = b.reshape(window, [0, *shape[1:]])
    scaled = b.op("Add", [b.op("Mul", [total, b.const(alpha / size)]), b.const(bias)])
    b.op("Div", [b.x, b.op("Pow", [scaled, b.const(beta)])], b.out)
    return b.done()
