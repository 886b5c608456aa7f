"""Unit tests of ``analysis/rules/elementwise.py`` on hand-built graphs.

Case 1 (unary ops pass the layout through; a used extra output blocks), case 2
(broadcasting ops: alignment to the output rank, merges, different axes, broadcast
operands, coupled constants, operands that block) and case 3 (PRelu slopes).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

from onnxprune.analysis.rules.elementwise import BROADCAST_OPS, UNARY_OPS
from tests.builders import GraphBuilder
from tests.oracle import node_input_shape, prune_and_check
from tests.rule_checks import (
    analyzed,
    block_reasons,
    coupled,
    group_of,
    layout_ids,
    reasons,
    source_ids,
)

C = 8


def _conv(b: GraphBuilder, name: str = "c1", c: int = C, x: str | None = None) -> str:
    return b.conv(x or b.input(["N", 3, 8, 8]), 3, c, name=name)


# -- case 1: unary ops -----------------------------------------------------------------
def _unary(b: GraphBuilder, op: str, h: str) -> str:
    """``op`` applied to ``h`` with the inputs/attributes it needs to be valid."""
    if op == "Not":
        return b.op(op, [b.op("Cast", [h], to=TensorProto.BOOL)], name="u")
    if op == "Cast":
        return b.op(op, [h], to=TensorProto.DOUBLE, name="u")
    if op == "CastLike":
        return b.op(op, [h, b.init(np.zeros(1, np.float16))], name="u")
    return b.op(op, [h], name="u")  # Clip without bounds included


@pytest.mark.parametrize("op", sorted(UNARY_OPS))
def test_every_unary_op_passes_the_layout_through(op):
    b = GraphBuilder(opset=24 if op == "Swish" else 20)
    h = _conv(b)
    b.output(_unary(b, op, h))
    analysis = analyzed(b.model())
    assert layout_ids(analysis, "u_out") == (1, source_ids(analysis, "c1"))
    assert "no rule" not in reasons(analysis, "c1")


@pytest.mark.parametrize("op", ["Exp", "Sin", "Cos", "Softsign", "Shrink", "ThresholdedRelu",
                                "Clip"])
def test_unary_ops_not_covered_end_to_end_pass_the_oracle(op):
    b = GraphBuilder(opset=18)
    h = _conv(b)
    h = b.op(op, [b.op("Tanh", [h])])
    b.output(b.conv(h, C, 4, name="c2"))
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "c2", 1)[1] < C


def test_integer_and_boolean_tracked_tensors_pass_the_oracle():
    """The masked twin masks an int32 tensor with an int32 mask and a bool one with And
    (the original proto declares neither type: they are inferred)."""
    b = GraphBuilder(opset=18)
    h = _conv(b)
    rounded = b.op("Cast", [b.op("Cast", [h], to=TensorProto.INT32)], to=TensorProto.FLOAT)
    negative = b.op("Not", [b.op("Greater", [h, b.init(np.float32(0.0))])], name="neg")
    h = b.op("Where", [negative, b.init(np.float32(0.0)), rounded])
    b.output(b.conv(h, C, 4, name="c2"))
    analysis = analyzed(b.model())
    assert layout_ids(analysis, "neg_out") == (1, source_ids(analysis, "c1"))
    checked = prune_and_check(b.model(), 0.4, tol=1e-3)
    assert node_input_shape(checked.pruned, "c2", 1)[1] < C


def test_dropout_whose_mask_is_used_blocks():
    b = GraphBuilder(opset=18)
    h = _conv(b)
    y, mask = b.op("Dropout", [h], n_out=2, name="drop")
    b.output(b.conv(y, C, 4, name="c2"))
    b.output(mask, dtype=TensorProto.BOOL)
    analysis = analyzed(b.model())
    assert "Dropout 'drop': extra output is used" in reasons(analysis, "c1")
    assert not group_of(analysis, "c1").prunable


def test_dropout_with_an_unused_mask_passes():
    b = GraphBuilder(opset=18)
    h = _conv(b)
    y, _ = b.op("Dropout", [h], n_out=2, name="drop")
    b.output(b.conv(y, C, 4, name="c2"))
    analysis = analyzed(b.model())
    assert group_of(analysis, "c1").prunable


# -- case 2: broadcasting ops ----------------------------------------------------------
@pytest.mark.parametrize("op", ["Sum", "Max", "Min", "Mean"])
def test_variadic_ops_merge_every_tracked_operand(op):
    b = GraphBuilder()
    x = b.input(["N", 3, 8, 8])
    parts = [b.conv(x, 3, C, name=f"p{i}") for i in range(3)]
    h = b.op(op, parts, name="join")
    b.output(b.conv(h, C, 4, name="head"))
    checked = prune_and_check(b.model(), 0.4)
    group = group_of(checked.analysis, "p0")
    assert {s.node for s in group.sources} == {"p0", "p1", "p2"}
    kept = {node_input_shape(checked.pruned, f"p{i}", 1)[0] for i in range(3)}
    assert len(kept) == 1 and kept.pop() < C


def test_operands_of_lower_rank_are_aligned_from_the_right():
    """A [C, 1, 1] constant and a [1, C, 1, 1] constant both hit the channel axis."""
    b = GraphBuilder()
    h = _conv(b)
    h = b.op("Mul", [h, b.weight(C, 1, 1)], name="scale3")
    h = b.op("Add", [b.weight(1, C, 1, 1), h], name="shift4")
    b.output(b.conv(h, C, 4, name="head"))
    analysis = analyzed(b.model())
    ids = source_ids(analysis, "c1")
    assert coupled(analysis, "scale3") == {(1, 0): ("const", ids)}
    assert coupled(analysis, "shift4") == {(0, 1): ("const", ids)}
    assert layout_ids(analysis, "shift4_out") == (1, ids)
    prune_and_check(b.model(), 0.4)


def test_channels_on_the_last_axis_couple_a_vector_constant():
    b = GraphBuilder()
    x = b.input(["N", 5, 6])
    h = b.op("MatMul", [x, b.weight(6, C)], name="fc1")
    h = b.op("Add", [h, b.weight(C)], name="bias")
    h = b.op("Div", [h, b.positive(1, 1, C)], name="div")
    b.output(b.op("MatMul", [b.op("Relu", [h]), b.weight(C, 3)], name="fc2"))
    analysis = analyzed(b.model())
    ids = source_ids(analysis, "fc1")
    assert coupled(analysis, "bias") == {(1, 0): ("const", ids)}
    assert coupled(analysis, "div") == {(1, 2): ("const", ids)}
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "fc2", 1)[0] < C


def test_broadcast_operands_with_size_one_on_the_channel_axis_are_fine():
    b = GraphBuilder()
    x = b.input(["N", 3, 8, 8])
    h = b.conv(x, 3, C, name="c1")
    gate = b.op("Sigmoid", [b.op("ReduceMean", [x], axes=[1], keepdims=1)])  # [N, 1, 8, 8]
    h = b.op("Mul", [h, gate], name="gate")
    h = b.op("Pow", [h, b.init(np.float32(2.0))], name="square")  # a scalar constant
    b.output(b.conv(h, C, 4, name="head"))
    analysis = analyzed(b.model())
    assert layout_ids(analysis, "square_out") == (1, source_ids(analysis, "c1"))
    assert group_of(analysis, "c1").prunable
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "head", 1)[1] < C


def test_an_operand_of_unknown_width_broadcasts_once_the_probe_shows_size_one():
    """Shape inference cannot follow ``Reshape(g, Abs(Shape(g)))``; the runtime probe of
    static dims shows the gate is one channel wide, so it broadcasts."""
    b = GraphBuilder()
    x = b.input(["N", 3, 8, 8])
    h = b.conv(x, 3, C, name="c1")
    gate = b.op("Sigmoid", [b.op("ReduceMean", [x], axes=[1], keepdims=1)])
    gate = b.op("Reshape", [gate, b.op("Abs", [b.op("Shape", [gate])])], name="opaque")
    h = b.op("Mul", [h, gate], name="gate")
    b.output(b.conv(h, C, 4, name="head"))
    analysis = analyzed(b.model())
    assert analysis.ctx.refined_shape(_named(analysis, "opaque_out"))[1] == 1
    assert layout_ids(analysis, "gate_out") == (1, source_ids(analysis, "c1"))
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "head", 1)[1] < C


def _named(analysis, name: str):
    return next(o for n in analysis.model.graph for o in n.outputs if o.name == name)


def test_operands_on_different_axes_block():
    b = GraphBuilder()
    x = b.input(["N", 3, 8, 8])
    a = b.conv(x, 3, C, name="a")
    t = b.op("Transpose", [b.conv(x, 3, C, name="t")], perm=[0, 2, 1, 3])
    b.output(b.conv(b.op("Add", [a, t], name="add"), C, 4, name="head"))
    analysis = analyzed(b.model())
    for source in ("a", "t"):
        assert "Add 'add': operands carry channels on different axes" in reasons(
            analysis, source)
        assert not group_of(analysis, source).prunable


def test_a_runtime_tensor_with_the_channels_blocks():
    b = GraphBuilder()
    h = _conv(b)
    other = b.input(["N", C, 8, 8], name="other")
    b.output(b.conv(b.op("Add", [h, other], name="add"), C, 4, name="head"))
    analysis = analyzed(b.model())
    assert "Add 'add': combined with 'other', whose channels cannot be sliced" in reasons(
        analysis, "c1")
    assert layout_ids(analysis, "add_out") is None


def test_a_symbolic_dimension_on_the_channel_axis_blocks():
    """A dimension the probe cannot prove to be 1 (it follows a graph input) blocks."""
    b = GraphBuilder()
    h = _conv(b)
    other = b.input(["N", "K", 8, 8], name="other")
    b.output(b.conv(b.op("Mul", [h, other], name="mul"), C, 4, name="head"))
    analysis = analyzed(b.model())
    assert "Mul 'mul': combined with 'other'" in reasons(analysis, "c1")


def test_a_constant_over_other_axes_broadcasts_and_is_not_coupled():
    b = GraphBuilder()
    x = b.input(["N", 3, 8, 8])
    h = b.op("MaxPool", [b.conv(x, 3, C, name="c1")], kernel_shape=[1, 1])
    h = b.op("Mul", [h, b.weight(8, 8)], name="spatial")  # [H, W]: the same for every channel
    b.output(b.conv(h, C, 4, name="head"))
    analysis = analyzed(b.model())
    assert group_of(analysis, "c1").prunable and not coupled(analysis, "spatial")


def test_a_constant_wider_than_the_tracked_channels_blocks():
    """A one-channel slice broadcast to 4 channels by a [4, 1, 1] constant: the constant
    cannot be sliced with the one channel."""
    b = GraphBuilder()
    h = b.op("Relu", [b.conv(b.input(["N", 3, 8, 8]), 3, 2, name="c1")])
    h = b.op("Slice", [h, b.ints([0]), b.ints([1]), b.ints([1])], name="one")  # [N, 1, 8, 8]
    h = b.op("Add", [h, b.weight(4, 1, 1)], name="widen")
    b.output(b.conv(h, 4, 2, name="head"))
    analysis = analyzed(b.model())
    assert "Add 'widen': combined with" in reasons(analysis, "c1")
    assert layout_ids(analysis, "widen_out") is None


def test_a_one_channel_tracked_map_broadcasts_over_the_channels():
    """Spatial attention (CBAM): a 1-channel map from a conv scales C channels. The map
    broadcasts; it is not merged with them (which blocked both: length mismatch), and
    its one channel is kept."""
    b = GraphBuilder()
    x = b.input(["N", 3, 8, 8])
    feats = b.op("Relu", [b.conv(x, 3, C, name="feats")])
    att = b.op("Sigmoid", [b.conv(x, 3, 1, name="att")])
    b.output(b.conv(b.op("Mul", [feats, att], name="mul"), C, 4, name="head"))
    analysis = analyzed(b.model())
    assert "length mismatch" not in block_reasons(analysis)
    assert layout_ids(analysis, "mul_out") == (1, source_ids(analysis, "feats"))
    assert group_of(analysis, "feats").prunable
    assert group_of(analysis, "feats") is not group_of(analysis, "att")
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "head", 1)[1] < C
    assert node_input_shape(checked.pruned, "att", 1)[0] == 1


@pytest.mark.parametrize(("erased", "reason"), [
    (("act_out",), "input rank unknown"),
    (("add_out",), "output rank unknown"),
], ids=["input", "output"])
def test_an_unknown_rank_blocks_instead_of_raising(erased, reason):
    b = GraphBuilder()
    h = b.op("Relu", [_conv(b)], name="act")
    h = b.op("Add", [h, b.weight(C, 1, 1)], name="add")
    b.output(b.conv(h, C, 4, name="c2"))
    analysis = analyzed(b.model(), unknown_shapes=erased)  # fails on a rule that raised
    assert f"Add 'add': {reason}" in reasons(analysis, "c1")
    assert not group_of(analysis, "c1").prunable


def test_comparison_and_where_keep_the_channels():
    b = GraphBuilder()
    h = _conv(b)
    positive = b.op("Greater", [h, b.init(np.float32(0.0))], name="gt")
    leaky = b.op("Mul", [h, b.init(np.float32(0.1))])
    h = b.op("Where", [positive, h, leaky], name="where")
    b.output(b.conv(h, C, 4, name="head"))
    analysis = analyzed(b.model())
    ids = source_ids(analysis, "c1")
    assert layout_ids(analysis, "gt_out") == (1, ids)
    assert layout_ids(analysis, "where_out") == (1, ids)
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "head", 1)[1] < C


def test_where_with_a_per_channel_condition_couples_it():
    b = GraphBuilder()
    h = _conv(b)
    cond = b.init(np.arange(C).reshape(C, 1, 1) % 2 == 0)
    h = b.op("Where", [cond, h, b.init(np.float32(0.0))], name="where")
    b.output(b.conv(h, C, 4, name="head"))
    analysis = analyzed(b.model())
    assert coupled(analysis, "where") == {(0, 0): ("const", source_ids(analysis, "c1"))}
    prune_and_check(b.model(), 0.4)


@pytest.mark.parametrize("op", ["Equal", "Less", "LessOrEqual", "GreaterOrEqual"])
def test_comparisons_pass_the_channels(op):
    b = GraphBuilder()
    h = _conv(b)
    b.output(b.op(op, [h, b.weight(C, 1, 1)], name="cmp"), dtype=TensorProto.BOOL)
    analysis = analyzed(b.model())
    ids = source_ids(analysis, "c1")
    assert layout_ids(analysis, "cmp_out") == (1, ids)
    assert coupled(analysis, "cmp") == {(1, 0): ("const", ids)}


def test_every_broadcast_op_is_registered():
    from onnxprune.analysis.registry import lookup

    assert all(lookup("", op, 18) is not None for op in BROADCAST_OPS)


# -- case 3: PRelu ---------------------------------------------------------------------
@pytest.mark.parametrize("slope_shape", [(C, 1, 1), (1,)], ids=["per_channel", "shared"])
def test_prelu_slope_is_coupled_when_per_channel(slope_shape):
    b = GraphBuilder()
    h = _conv(b)
    h = b.op("PRelu", [h, b.weight(*slope_shape)], name="prelu")
    b.output(b.conv(h, C, 4, name="head"))
    analysis = analyzed(b.model())
    expected = {(1, 0): ("const", source_ids(analysis, "c1"))} if len(slope_shape) > 1 else {}
    assert coupled(analysis, "prelu") == expected
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "head", 1)[1] < C
