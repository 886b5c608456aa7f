"""Unit tests of ``analysis/rules/pooling.py`` on hand-built graphs.

Case 1 (pooling per channel; used MaxPool indices, SpaceToDepth and channels off
axis 1 block), case 2 (Reduce*: axes as attribute or input, negative axes,
``keepdims=0``, empty axes, dynamic axes, ``prune_hidden`` ReduceMean), case 3
(Softmax family, both opset semantics), case 4 (Shape/Size) and case 5 (an input of
unknown rank blocks).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

from onnxprune.analysis.rules.pooling import _REDUCE_AXES_INPUT_SINCE
from tests.builders import GraphBuilder
from tests.oracle import node_input_shape, prune_and_check
from tests.rule_checks import (
    analyzed,
    block_reasons,
    group_of,
    layout_ids,
    reasons,
    source_ids,
)

C = 8
POOLS = {
    "MaxPool": {"kernel_shape": [2, 2], "strides": [2, 2]},
    "AveragePool": {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 0},
    "LpPool": {"kernel_shape": [2, 2], "p": 2},
    "GlobalAveragePool": {},
    "GlobalMaxPool": {},
    "GlobalLpPool": {"p": 3},
}


def _conv(b: GraphBuilder, c: int = C) -> str:
    return b.conv(b.input(["N", 3, 8, 8]), 3, c, name="c1")


# -- case 1: pooling -------------------------------------------------------------------
@pytest.mark.parametrize("op", sorted(POOLS))
def test_pooling_passes_channels_per_channel(op):
    b = GraphBuilder()
    h = b.op(op, [b.op("Relu", [_conv(b)])], name="pool", **POOLS[op])
    b.output(b.conv(h, C, 4, k=1, name="c2"))
    analysis = analyzed(b.model())
    assert layout_ids(analysis, "pool_out") == (1, source_ids(analysis, "c1"))
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "c2", 1)[1] < C


def test_max_roi_pool_passes_the_feature_channels():
    b = GraphBuilder()
    rois = b.init(np.array([[0, 0, 0, 3, 3], [0, 2, 2, 7, 7]], np.float32))
    h = b.op("MaxRoiPool", [b.op("Relu", [_conv(b)]), rois], name="roi", pooled_shape=[2, 2])
    b.output(b.conv(h, C, 4, k=1, name="c2"))
    analysis = analyzed(b.model())
    assert layout_ids(analysis, "roi_out") == (1, source_ids(analysis, "c1"))
    assert group_of(analysis, "c1").prunable


def test_max_pool_with_used_indices_blocks():
    b = GraphBuilder()
    y, idx = b.op("MaxPool", [_conv(b)], n_out=2, name="pool", kernel_shape=[2, 2])
    b.output(b.conv(y, C, 4, name="c2"))
    b.output(idx, dtype=TensorProto.INT64)
    analysis = analyzed(b.model())
    assert "MaxPool 'pool': Indices output is used" in reasons(analysis, "c1")


def test_space_to_depth_blocks():
    b = GraphBuilder()
    h = b.op("SpaceToDepth", [_conv(b)], name="s2d", blocksize=2)
    b.output(b.conv(h, 4 * C, 4, name="c2"))
    analysis = analyzed(b.model())
    assert "SpaceToDepth 's2d' interleaves channels" in reasons(analysis, "c1")


def test_pooling_channels_off_axis_1_blocks():
    b = GraphBuilder()
    t = b.op("Transpose", [_conv(b)], perm=[0, 2, 1, 3])
    b.output(b.op("GlobalAveragePool", [t], name="gap"))
    analysis = analyzed(b.model())
    assert "GlobalAveragePool 'gap' reads channels on axis 1, but the pruned axis is 2" in \
        reasons(analysis, "c1")


# -- case 2: reductions ----------------------------------------------------------------
def _reduce(b: GraphBuilder, op: str, x: str, axes: list[int] | None, opset: int,
            **attrs) -> str:
    if axes is None:
        return b.op(op, [x], name="red", **attrs)
    if opset >= _REDUCE_AXES_INPUT_SINCE[op]:
        return b.op(op, [x, b.ints(axes)], name="red", **attrs)
    return b.op(op, [x], name="red", axes=axes, **attrs)


@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("op", sorted(_REDUCE_AXES_INPUT_SINCE))
def test_every_reduction_over_spatial_axes_keeps_channels(op, opset):
    b = GraphBuilder(opset=opset)
    h = b.op("Relu", [_conv(b)])
    b.output(_reduce(b, op, h, [2, -1], opset, keepdims=1))
    analysis = analyzed(b.model())
    assert layout_ids(analysis, "red_out") == (1, source_ids(analysis, "c1"))


@pytest.mark.parametrize("op", sorted(_REDUCE_AXES_INPUT_SINCE))
def test_every_reduction_over_the_channel_axis_blocks(op):
    b = GraphBuilder(opset=18)
    b.output(_reduce(b, op, b.op("Relu", [_conv(b)]), [-3], 18, keepdims=1))
    analysis = analyzed(b.model())
    assert f"{op} 'red' reduces over the channel axis" in reasons(analysis, "c1")


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp"])
def test_spatial_reductions_pass_the_oracle(op):
    b = GraphBuilder(opset=18)
    h = _reduce(b, op, b.op("Relu", [_conv(b)]), [2, 3], 18, keepdims=0)
    b.output(b.op("Gemm", [h, b.weight(C, 3)], name="fc"))
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "fc", 1)[0] < C


def test_keepdims_0_moves_the_layout_past_dropped_axes():
    b = GraphBuilder(opset=18)
    x = b.input(["N", 5, 6])
    h = b.op("MatMul", [x, b.weight(6, C)], name="fc1")  # channels on axis 2
    h = _reduce(b, "ReduceMean", h, [1], 18, keepdims=0)  # [N, C]
    b.output(b.op("MatMul", [h, b.weight(C, 3)], name="fc2"))
    analysis = analyzed(b.model())
    assert layout_ids(analysis, "red_out") == (1, source_ids(analysis, "fc1"))
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "fc2", 1)[0] < C


def test_no_axes_reduces_everything_and_blocks():
    b = GraphBuilder(opset=18)
    b.output(_reduce(b, "ReduceSum", _conv(b), None, 18, keepdims=0))
    analysis = analyzed(b.model())
    assert "ReduceSum 'red' reduces over the channel axis" in reasons(analysis, "c1")


def test_empty_axes_with_noop_passes_through():
    b = GraphBuilder(opset=18)
    h = b.op("ReduceSum", [_conv(b), b.init(np.zeros(0, np.int64))], name="red",
             noop_with_empty_axes=1)
    b.output(b.conv(h, C, 4, name="c2"))
    analysis = analyzed(b.model())
    assert layout_ids(analysis, "red_out") == (1, source_ids(analysis, "c1"))


def test_dynamic_axes_block():
    b = GraphBuilder(opset=18)
    axes = b.input([1], name="axes", dtype=TensorProto.INT64)
    b.output(b.op("ReduceMax", [_conv(b), axes], name="red", keepdims=1))
    analysis = analyzed(b.model())
    assert "ReduceMax 'red': reduction axes are not constant" in reasons(analysis, "c1")


def test_prune_hidden_reduce_mean_over_the_channels_ends_the_layout():
    """A written-out RMSNorm: x / sqrt(mean(x^2)). The mean covers the kept channels."""
    b = GraphBuilder(opset=18)
    x = b.input(["N", 5, 6])
    h = b.op("MatMul", [x, b.weight(6, C)], name="fc1")
    ms = b.op("ReduceMean", [b.op("Mul", [h, h]), b.ints([-1])], name="ms", keepdims=1)
    h = b.op("Div", [h, b.op("Sqrt", [b.op("Add", [ms, b.init(np.float32(1e-5))])])])
    b.output(b.op("MatMul", [h, b.weight(C, 3)], name="fc2"))
    analysis = analyzed(b.model(), prune_hidden=True)
    assert layout_ids(analysis, "ms_out") is None
    assert group_of(analysis, "fc1").prunable
    assert "hidden width" in group_of(analysis, "fc1").description
    checked = prune_and_check(b.model(), 0.4, prune_hidden=True)
    assert node_input_shape(checked.pruned, "fc2", 1)[0] < C
    without = analyzed(b.model())
    assert "ReduceMean 'ms' reduces over the channel axis" in reasons(without, "fc1")


def test_prune_hidden_does_not_free_other_reductions():
    b = GraphBuilder(opset=18)
    x = b.input(["N", 5, 6])
    h = b.op("MatMul", [x, b.weight(6, C)], name="fc1")
    b.output(b.op("ReduceSum", [h, b.ints([-1])], name="red", keepdims=1))
    analysis = analyzed(b.model(), prune_hidden=True)
    assert "ReduceSum 'red' reduces over the channel axis" in reasons(analysis, "fc1")


# -- case 3: Softmax family --------------------------------------------------------------
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
def test_softmax_over_another_axis_passes(op):
    b = GraphBuilder(opset=13)
    h = b.op(op, [_conv(b)], name="sm")  # default axis -1: over W
    b.output(b.conv(h, C, 4, name="c2"))
    analysis = analyzed(b.model())
    assert layout_ids(analysis, "sm_out") == (1, source_ids(analysis, "c1"))
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "c2", 1)[1] < C


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
def test_softmax_over_the_channel_axis_blocks(op):
    b = GraphBuilder(opset=13)
    h = b.op(op, [_conv(b)], name="sm", axis=-3)
    b.output(b.conv(h, C, 4, name="c2"))
    analysis = analyzed(b.model())
    assert f"{op} 'sm' normalises over the channel axis" in reasons(analysis, "c1")


@pytest.mark.parametrize(("axis", "blocked"), [(1, True), (2, False), (None, True)],
                         ids=["axis1", "axis2", "default"])
def test_softmax_before_opset_13_normalises_from_axis_on(axis, blocked):
    """Opset < 13 flattens axes ``[axis, rank)`` into one: channels on axis 1 are blocked
    by ``axis <= 1`` (the default is 1) and pass with ``axis = 2``."""
    b = GraphBuilder(opset=11)
    attrs = {} if axis is None else {"axis": axis}
    h = b.op("Softmax", [_conv(b)], name="sm", **attrs)
    b.output(b.conv(h, C, 4, name="c2"))
    analysis = analyzed(b.model())
    assert ("normalises over the channel axis" in reasons(analysis, "c1")) == blocked
    assert (layout_ids(analysis, "sm_out") is None) == blocked


def test_softmax_before_opset_13_blocks_channels_after_the_axis():
    b = GraphBuilder(opset=11)
    x = b.input(["N", 5, 6])
    h = b.op("MatMul", [x, b.weight(6, C)], name="fc1")  # channels on axis 2
    h = b.op("Softmax", [h], name="sm", axis=1)  # flattens axes 1 and 2 together
    b.output(b.op("MatMul", [h, b.weight(C, 3)], name="fc2"))
    analysis = analyzed(b.model())
    assert "Softmax 'sm' normalises over the channel axis" in reasons(analysis, "fc1")


# -- case 4: Shape / Size ----------------------------------------------------------------
def test_shape_and_size_read_a_tracked_tensor_without_blocking():
    b = GraphBuilder()
    h = b.op("Relu", [_conv(b)])
    width = b.op("Gather", [b.op("Shape", [h], name="shape"), b.init(np.int64(3))], axis=0)
    h = b.op("Div", [h, b.op("Cast", [width], to=TensorProto.FLOAT)])
    b.output(b.op("Size", [h], name="size"), dtype=TensorProto.INT64)
    b.output(b.conv(h, C, 4, name="c2"))
    analysis = analyzed(b.model())
    assert group_of(analysis, "c1").prunable
    assert "Shape" not in block_reasons(analysis) and "Size" not in block_reasons(analysis)


@pytest.mark.parametrize("op", ["ReduceSum", "Softmax"])
def test_an_input_of_unknown_rank_blocks(op):
    """Without the rank the reduced / normalised axes cannot be checked: blocked."""
    b = GraphBuilder(opset=18)
    x = b.input(["N", 5, 6])
    h = b.op("Relu", [b.op("MatMul", [x, b.weight(6, C)], name="fc1")], name="act")
    h = (b.op(op, [h, b.ints([-1])], name="n", keepdims=1) if op == "ReduceSum"
         else b.op(op, [h], name="n"))
    b.output(b.op("MatMul", [h, b.weight(1 if op == "ReduceSum" else C, 3)], name="fc2"))
    analysis = analyzed(b.model(), unknown_shapes=("act_out",))
    assert f"{op} 'n': input rank unknown" in reasons(analysis, "fc1")
    assert not group_of(analysis, "fc1").prunable
