"""Hypothesis strategies: random conv and MLP graphs with the couplings pruning must handle."""

from __future__ import annotations

import onnx
from hypothesis import strategies as st

from tests.builders import GraphBuilder

CONV_BLOCKS = ["conv", "conv_bn_relu", "residual", "concat", "split", "depthwise", "grouped",
               "squeeze_excite", "transpose_conv"]


@st.composite
def conv_graphs(draw) -> onnx.ModelProto:
    opset = draw(st.sampled_from([11, 13, 15, 17, 18, 21]))
    b = GraphBuilder(opset=opset, seed=draw(st.integers(0, 10_000)))
    channels = draw(st.sampled_from([1, 3, 4]))
    x = b.input(["N", channels, 8, 8])
    c = draw(st.sampled_from([8, 12, 16]))
    h = b.conv(x, channels, c, name="stem")
    history = [(h, c)]
    for block in draw(st.lists(st.sampled_from(CONV_BLOCKS), min_size=1, max_size=6)):
        h, c = _block(draw, b, block, h, c, history)
        history.append((h, c))
    head = draw(st.sampled_from(["gap_gemm", "flatten_gemm", "conv"]))
    if head == "gap_gemm":
        f = b.op("Flatten", [b.op("GlobalAveragePool", [h])])
        b.output(b.op("Gemm", [f, b.weight(5, c), b.weight(5)], transB=1))
    elif head == "flatten_gemm":
        p = b.op("MaxPool", [h], kernel_shape=[4, 4], strides=[4, 4])
        b.output(b.op("Gemm", [b.op("Flatten", [p]), b.weight(c * 4, 5)]))
    else:
        b.output(b.conv(h, c, 3))
    return b.model()


def _block(draw, b: GraphBuilder, kind: str, h: str, c: int, history):
    if kind == "conv":
        out = draw(st.sampled_from([4, 8, 12]))
        return b.conv(h, c, out, k=draw(st.sampled_from([1, 3]))), out
    if kind == "conv_bn_relu":
        out = draw(st.sampled_from([8, 16]))
        return b.op("Relu", [b.bn(b.conv(h, c, out), out)]), out
    if kind == "residual":
        y = b.bn(b.conv(b.op("Relu", [b.conv(h, c, c)]), c, c), c)
        return b.op("Relu", [b.op("Add", [y, h])]), c
    if kind == "concat":
        other, oc = draw(st.sampled_from(history))
        return b.op("Concat", [h, other], axis=1), c + oc
    if kind == "split":
        first = draw(st.integers(1, c - 1)) if c > 1 else None
        if first is None:
            return h, c
        parts = b.op("Split", [h, b.ints([first, c - first])] if b.opset >= 13 else [h],
                     n_out=2, axis=1, **({} if b.opset >= 13 else {"split": [first, c - first]}))
        left, right = b.conv(parts[0], first, 6), b.conv(parts[1], c - first, 6)
        joined = draw(st.sampled_from(["add", "concat"]))
        if joined == "add":
            return b.op("Add", [left, right]), 6
        return b.op("Concat", [left, right], axis=1), 12
    if kind == "depthwise":
        mult = draw(st.sampled_from([1, 2]))
        return b.op("Relu", [b.conv(h, c, c * mult, group=c)]), c * mult
    if kind == "grouped":
        groups = draw(st.sampled_from([g for g in (2, 4) if c % g == 0] or [1]))
        out = groups * draw(st.sampled_from([2, 4]))
        return b.conv(h, c, out, group=groups), out
    if kind == "squeeze_excite":
        s = b.op("GlobalAveragePool", [h])
        s = b.op("Sigmoid", [b.conv(b.op("Relu", [b.conv(s, c, 4, k=1)]), 4, c, k=1)])
        return b.op("Mul", [h, s]), c
    # transpose_conv: down then up keeps 8x8
    d = b.conv(h, c, 8, strides=[2, 2])
    u = b.op("ConvTranspose", [d, b.weight(8, 6, 2, 2), b.weight(6)], strides=[2, 2])
    return b.op("Relu", [u]), 6


@st.composite
def mlp_graphs(draw) -> onnx.ModelProto:
    b = GraphBuilder(opset=draw(st.sampled_from([13, 17, 18])), seed=draw(st.integers(0, 10_000)))
    width = draw(st.sampled_from([8, 16]))
    h = b.input(["N", width])
    for _ in range(draw(st.integers(1, 4))):
        hidden = draw(st.sampled_from([8, 16, 24]))
        if draw(st.booleans()):
            up = b.op("Gemm", [h, b.weight(hidden, width), b.weight(hidden)], transB=1)
        else:
            up = b.op("Add", [b.op("MatMul", [h, b.weight(width, hidden)]), b.weight(hidden)])
        act = b.op(draw(st.sampled_from(["Relu", "Tanh", "Sigmoid"])), [up])
        down = b.op("MatMul", [act, b.weight(hidden, width)])
        h = b.op("Add", [down, h]) if draw(st.booleans()) else down
    b.output(b.op("Gemm", [h, b.weight(width, 3)]))
    return b.model()
