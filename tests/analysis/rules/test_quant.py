"""Unit tests of ``analysis/rules/quant.py`` on hand-built graphs.

Cases 1-3 of ``QdqRule`` (per-tensor, per-axis on the channel axis, per-axis on
another axis; case 4, blocked quantization, is in ``tests/quantize/test_qdq_pruning.py``),
and the weight-source helpers: which ``DequantizeLinear`` counts as a constant weight,
which axes slice its scale and zero point, and ``dequantized``.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

from onnxprune.analysis.rules.quant import dequantized, weight_source
from onnxprune.quantize.tolerance import QDQ_RTOL
from tests.builders import GraphBuilder
from tests.oracle import node_input_shape, prune_and_check
from tests.rule_checks import analyzed, coupled, group_of, layout_ids, node, reasons, source_ids

C = 8


def _qdq(b: GraphBuilder, x: str, scale, zero, axis: int = 1, name: str = "q") -> str:
    s, z = b.init(scale), b.init(zero)
    q = b.op("QuantizeLinear", [x, s, z], name=name, axis=axis)
    return b.op("DequantizeLinear", [q, s, z], name=f"d{name}", axis=axis)


def _qweight(b: GraphBuilder, shape: tuple[int, ...], axis: int | None,
             name: str = "dqw") -> str:
    q = b.rng.integers(-90, 90, shape).astype(np.int8)
    if axis is None:
        return b.op("DequantizeLinear", [b.init(q), b.init(np.float32(0.02))], name=name)
    scale = np.linspace(0.01, 0.03, shape[axis]).astype(np.float32)
    return b.op("DequantizeLinear", [b.init(q), b.init(scale),
                                     b.init(np.zeros(shape[axis], np.int8))], axis=axis,
                name=name)


def _conv(b: GraphBuilder) -> str:
    return b.op("Relu", [b.conv(b.input(["N", 3, 8, 8]), 3, C, name="c1")])


# -- cases 1-3: activations --------------------------------------------------------------
@pytest.mark.parametrize("scale_shape", [(), (1,)], ids=["scalar", "one_element"])
def test_per_tensor_quantization_passes_the_layout_unchanged(scale_shape):
    b = GraphBuilder(opset=17)
    h = _qdq(b, _conv(b), np.full(scale_shape, 0.05, np.float32),
             np.full(scale_shape, 128, np.uint8))
    b.output(b.conv(h, C, 4, name="c2"))
    analysis = analyzed(b.model())
    ids = source_ids(analysis, "c1")
    assert layout_ids(analysis, "q_out") == (1, ids)
    assert layout_ids(analysis, "dq_out") == (1, ids)
    assert coupled(analysis, "q") == {} and coupled(analysis, "dq") == {}
    checked = prune_and_check(b.model(), 0.4, tol=QDQ_RTOL)
    assert node_input_shape(checked.pruned, "c2", 1)[1] < C


def test_per_channel_quantization_on_the_channel_axis_couples_scale_and_zero_point():
    b = GraphBuilder(opset=17)
    h = _qdq(b, _conv(b), np.linspace(0.03, 0.06, C).astype(np.float32),
             np.zeros(C, np.int8), axis=-3)
    b.output(b.conv(h, C, 4, name="c2"))
    analysis = analyzed(b.model())
    ids = source_ids(analysis, "c1")
    for name in ("q", "dq"):
        assert coupled(analysis, name) == {(1, 0): ("qparam", ids), (2, 0): ("qparam", ids)}
    checked = prune_and_check(b.model(), 0.4, tol=QDQ_RTOL)
    assert node_input_shape(checked.pruned, "c2", 1)[1] < C


def test_per_axis_quantization_on_another_axis_passes_without_coupling():
    b = GraphBuilder(opset=17)
    h = _qdq(b, _conv(b), np.linspace(0.03, 0.06, 8).astype(np.float32),
             np.zeros(8, np.int8), axis=2)  # one scale per row
    b.output(b.conv(h, C, 4, name="c2"))
    analysis = analyzed(b.model())
    assert layout_ids(analysis, "dq_out") == (1, source_ids(analysis, "c1"))
    assert coupled(analysis, "q") == {}
    checked = prune_and_check(b.model(), 0.4, tol=QDQ_RTOL)
    assert node_input_shape(checked.pruned, "c2", 1)[1] < C


def test_per_channel_scale_computed_at_run_time_blocks():
    b = GraphBuilder(opset=17)
    scale = b.op("Abs", [b.input([C], name="scale")])
    q = b.op("QuantizeLinear", [_conv(b), scale], name="q", axis=1)
    b.output(b.op("DequantizeLinear", [q, b.init(np.full(C, 0.05, np.float32))], axis=1))
    analysis = analyzed(b.model())
    assert "QuantizeLinear 'q': per-channel scale is not a constant" in reasons(analysis, "c1")


# -- weight sources ----------------------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, None], ids=["per_out", "per_in", "per_tensor"])
def test_quantized_matmul_weight_slices_scales_only_on_their_axis(axis):
    b = GraphBuilder(opset=17)
    x = b.input(["N", 6])
    h = b.op("Relu", [b.op("MatMul", [x, b.weight(6, C)], name="fc1")])
    y = b.op("MatMul", [h, _qweight(b, (C, 5), axis, name="dqw")], name="fc2")
    b.output(y)
    analysis = analyzed(b.model())
    fc1 = source_ids(analysis, "fc1")
    expected = {(0, 0): ("in", fc1)}
    fc2 = source_ids(analysis, "fc2")
    expected[(0, 1)] = ("out", fc2)
    if axis == 0:
        expected |= {(1, 0): ("qparam", fc1), (2, 0): ("qparam", fc1)}
    elif axis == 1:
        expected |= {(1, 0): ("qparam", fc2), (2, 0): ("qparam", fc2)}
    assert coupled(analysis, "dqw") == expected
    checked = prune_and_check(b.model(), 0.4, tol=QDQ_RTOL)
    assert node_input_shape(checked.pruned, "dqw", 0)[0] < C


def test_dequantize_with_a_runtime_scale_is_no_weight_source():
    b = GraphBuilder(opset=17)
    q = b.init(np.ones((4, C, 3, 3), np.int8))
    w = b.op("DequantizeLinear", [q, b.op("Abs", [b.input([], name="s")])], name="dqw")
    b.output(b.op("Conv", [_conv(b), w], name="c2", pads=[1] * 4))
    analysis = analyzed(b.model())
    assert weight_source(node(analysis, "c2"), 1) is None
    assert "Conv 'c2': weight is not a constant initializer" in reasons(analysis, "c1")


def test_block_quantized_weight_is_no_weight_source():
    b = GraphBuilder(opset=21)
    q = b.init(np.ones((4, C, 3, 3), np.int8))
    scale = b.init(np.full((4, C // 2, 3, 3), 0.1, np.float32))
    w = b.op("DequantizeLinear", [q, scale], name="dqw", axis=1, block_size=2)
    b.output(b.op("Conv", [_conv(b), w], name="c2", pads=[1] * 4))
    analysis = analyzed(b.model())
    assert weight_source(node(analysis, "c2"), 1) is None
    assert not group_of(analysis, "c1").prunable


def test_float_weight_is_its_own_source():
    b = GraphBuilder(opset=17)
    b.output(b.conv(_conv(b), C, 4, name="c2"))
    analysis = analyzed(b.model())
    source = weight_source(node(analysis, "c2"), 1)
    assert source.node.name == "c2" and source.index == 1 and source.dequant is None
    assert source.shape == (4, C, 3, 3)
    assert weight_source(node(analysis, "c2"), 5) is None  # no such input


@pytest.mark.parametrize("per_axis", [True, False])
def test_dequantized_gives_the_float_weight(per_axis):
    b = GraphBuilder(opset=17)
    q = np.arange(-12, 12, dtype=np.int8).reshape(4, 6)
    if per_axis:
        scale, zero = np.array([0.5, 1, 2, 4], np.float32), np.array([1, 0, -1, 2], np.int8)
        expected = (q.astype(np.float64) - zero[:, None]) * scale[:, None]
        w = b.op("DequantizeLinear", [b.init(q), b.init(scale), b.init(zero)], name="dqw",
                 axis=0)
    else:
        expected = (q.astype(np.float64) - 3) * 0.25
        w = b.op("DequantizeLinear", [b.init(q), b.init(np.float32(0.25)),
                                      b.init(np.int8(3))], name="dqw")
    b.output(b.op("MatMul", [b.input(["N", 4]), w], name="fc"))
    analysis = analyzed(b.model())
    dq = node(analysis, "dqw")
    np.testing.assert_allclose(dequantized(dq, 0), expected)
    stored = dequantized(dq, 1)  # any other input comes back as stored
    assert stored.dtype == np.float32 and stored.shape == ((4,) if per_axis else ())


def test_quantized_bias_of_int32_is_coupled_with_its_scale():
    b = GraphBuilder(opset=17)
    bias = b.op("DequantizeLinear", [b.init(np.arange(C, dtype=np.int32)),
                                     b.init(np.full(C, 0.01, np.float32)),
                                     b.init(np.zeros(C, np.int32))], name="dqb", axis=0)
    h = b.op("Conv", [b.input(["N", 3, 8, 8]), b.weight(C, 3, 3, 3), bias], name="c1",
             pads=[1] * 4)
    b.output(b.conv(b.op("Relu", [h]), C, 4, name="c2"))
    analysis = analyzed(b.model())
    ids = source_ids(analysis, "c1")
    assert coupled(analysis, "dqb") == {(0, 0): ("bias", ids), (1, 0): ("qparam", ids),
                                        (2, 0): ("qparam", ids)}
    checked = prune_and_check(b.model(), 0.4, tol=QDQ_RTOL)
    assert node_input_shape(checked.pruned, "dqb", 0) == (node_input_shape(
        checked.pruned, "c2", 1)[1],)


def test_uint8_activation_into_a_quantized_conv_passes_the_oracle():
    b = GraphBuilder(opset=13)
    h = _qdq(b, _conv(b), np.float32(0.05), np.uint8(128))
    h = b.op("Conv", [h, _qweight(b, (6, C, 3, 3), 0, name="dqw")], name="c2", pads=[1] * 4)
    b.output(b.conv(b.op("Relu", [h]), 6, 2, name="head"))
    checked = prune_and_check(b.model(), 0.4, tol=QDQ_RTOL)
    c1 = node_input_shape(checked.pruned, "c1", 1)[0]
    head = node_input_shape(checked.pruned, "head", 1)[1]
    assert node_input_shape(checked.pruned, "dqw", 0)[:2] == (head, c1)
    assert head < 6 or c1 < C
    assert TensorProto.INT8 in {t.data_type for t in checked.pruned.graph.initializer}
