"""Small graphs with the run-time-shape traps of third-party exports (issue 12).

- ``paddle_like``: a conv classifier whose input dims are written as ``dim_value: -1``
  (batch), ``dim_value: 0`` / ``dim_param: '?'`` / empty (H, W), as Paddle2ONNX does.
- ``detector_like``: a YOLO-like neck: a stride-``stride`` path upsampled x2 and
  concatenated with the stride-``stride/2`` path, so H and W must be multiples of
  ``stride`` (32 by default, 64 to make 224 fail).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from tests.builders import GraphBuilder


def _input(name: str, dims: list) -> onnx.ValueInfoProto:
    """A float input whose dims are ints (``dim_value``, also <= 0), strings
    (``dim_param``) or ``None`` (an empty dim)."""
    value = helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
    shape = value.type.tensor_type.shape
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, int):
            dim.dim_value = d
        elif isinstance(d, str):
            dim.dim_param = d
    return value


def _finish(b: GraphBuilder, out: str, inputs: list, rank: int,
            metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    output = helper.make_tensor_value_info(out, TensorProto.FLOAT, [None] * rank)
    graph = helper.make_graph(b.nodes, "g", inputs, [output], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", b.opset)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    return model


def paddle_like(dims: list | None = None, seed: int = 0) -> onnx.ModelProto:
    """Conv -> Relu -> Conv(stride 2) -> Relu -> GlobalAveragePool -> Flatten -> Gemm."""
    b = GraphBuilder(opset=13, seed=seed)
    x = b.conv("x", 3, 8)
    x = b.op("Relu", [x])
    x = b.conv(x, 8, 16, strides=[2, 2])
    x = b.op("Relu", [x])
    x = b.op("GlobalAveragePool", [x])
    x = b.op("Flatten", [x])
    out = b.op("Gemm", [x, b.weight(5, 16), b.weight(5)], transB=1)
    return _finish(b, out, [_input("x", dims or [-1, 3, 0, "?"])], 2)


def detector_like(stride: int = 32, dims: list | None = None,
                  metadata: dict[str, str] | None = None, seed: int = 0) -> onnx.ModelProto:
    """Stem, stride-2 convs down to ``stride``; the deepest map upsampled x2 (Resize
    with constant scales) and concatenated with the one before it, then a 1x1 head."""
    b = GraphBuilder(opset=13, seed=seed)
    x = b.conv("images", 3, 8, strides=[2, 2])
    c, levels = 8, []
    s = 2
    while s < stride:
        x = b.op("Relu", [b.conv(x, c, c * 2 if c < 32 else c, strides=[2, 2])])
        c = c * 2 if c < 32 else c
        s *= 2
        levels.append((x, c))
    (low, c_low), (deep, c_deep) = levels[-2], levels[-1]
    scales = b.init(np.array([1, 1, 2, 2], np.float32))
    up = b.op("Resize", [deep, "", scales], mode="nearest")
    cat = b.op("Concat", [up, low], axis=1)
    out = b.conv(cat, c_deep + c_low, 6, k=1)
    return _finish(b, out, [_input("images", dims or [1, 3, "height", "width"])], 4,
                   metadata)


def fixed_size_only(size: int = 50) -> onnx.ModelProto:
    """Dynamic H/W in the signature, but a Reshape to ``3*size*size`` features: only
    ``size`` x ``size`` runs, which no default candidate is."""
    b = GraphBuilder(opset=13)
    x = b.op("Reshape", ["x", b.ints([1, 3 * size * size])])
    out = b.op("Gemm", [x, b.weight(4, 3 * size * size), b.weight(4)], transB=1)
    return _finish(b, out, [_input("x", [1, 3, "h", "w"])], 2)
