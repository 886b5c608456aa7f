"""Unit tests of ``analysis/rules/conv.py`` (Conv, ConvTranspose) on hand-built graphs.

One test (or parametrized set) per numbered case of the module docstring: 1 plain,
2 depthwise, 3 grouped, 4 non-constant weight, 5 quantized weight; plus the axis
check every NCHW rule makes and the MACs the rule reports.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.builders import GraphBuilder
from tests.oracle import node_input_shape, prune_and_check
from tests.rule_checks import (
    analyzed,
    coupled,
    group_of,
    layout_ids,
    macs,
    reasons,
    removing,
    source_ids,
)


def _stem(b: GraphBuilder, c: int = 8) -> str:
    return b.op("Relu", [b.conv(b.input(["N", 3, 8, 8]), 3, c, name="stem")])


# -- case 1: group == 1 --------------------------------------------------------------
def test_plain_conv_couples_input_axis_and_creates_a_source_with_bias():
    b = GraphBuilder()
    h = _stem(b)
    b.output(b.conv(h, 8, 4, name="c2"))
    analysis = analyzed(b.model())
    stem, c2 = source_ids(analysis, "stem"), source_ids(analysis, "c2")
    assert coupled(analysis, "stem") == {(1, 0): ("out", stem), (2, 0): ("bias", stem)}
    assert coupled(analysis, "c2") == {(1, 1): ("in", stem), (1, 0): ("out", c2),
                                       (2, 0): ("bias", c2)}
    assert layout_ids(analysis, "stem_out") == (1, stem)
    assert group_of(analysis, "stem").prunable


def test_conv_transpose_couples_axis_0_in_and_axis_1_out():
    b = GraphBuilder()
    h = _stem(b)
    up = b.op("ConvTranspose", [h, b.weight(8, 6, 2, 2), b.weight(6)], name="up",
              strides=[2, 2])
    b.output(b.conv(up, 6, 2, name="head"))
    analysis = analyzed(b.model())
    stem, up_ids = source_ids(analysis, "stem"), source_ids(analysis, "up")
    assert len(up_ids) == 6
    assert coupled(analysis, "up") == {(1, 0): ("in", stem), (1, 1): ("out", up_ids),
                                       (2, 0): ("bias", up_ids)}
    assert analysis.ctx.sources[-2].kind == "ConvTranspose output"


@pytest.mark.parametrize("attrs", [
    {"strides": [2, 2]},
    {"dilations": [2, 2], "pads": [2, 2, 2, 2]},
    {"strides": [2, 1], "dilations": [1, 2], "pads": [1, 2, 1, 2]},
], ids=["strided", "dilated", "mixed"])
def test_strides_and_dilations_do_not_change_the_coupling(attrs):
    b = GraphBuilder()
    h = _stem(b)
    w = b.weight(6, 8, 3, 3)
    h = b.op("Relu", [b.op("Conv", [h, w, b.weight(6)], name="mid", **({"pads": [1] * 4} | attrs))])
    b.output(b.conv(h, 6, 2, name="head"))
    checked = prune_and_check(b.model(), 0.4, batches=(2,))
    assert node_input_shape(checked.pruned, "mid", 1)[1] == node_input_shape(
        checked.pruned, "stem", 1)[0]
    assert node_input_shape(checked.pruned, "head", 1)[1] == node_input_shape(
        checked.pruned, "mid", 1)[0]
    assert checked.plan.removed_units.any()


def test_conv_without_bias_couples_only_the_weight():
    b = GraphBuilder()
    h = _stem(b)
    b.output(b.conv(h, 8, 4, bias=False, name="c2"))
    analysis = analyzed(b.model())
    assert set(coupled(analysis, "c2")) == {(1, 1), (1, 0)}


def test_conv1d_and_conv3d_use_the_same_axes():
    b = GraphBuilder()
    x = b.input(["N", 3, 10])
    h = b.op("Relu", [b.op("Conv", [x, b.weight(8, 3, 3), b.weight(8)], name="c1",
                           pads=[1, 1])])
    b.output(b.op("Conv", [h, b.weight(4, 8, 3)], name="c2", pads=[1, 1]))
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "c2", 1)[1] == node_input_shape(
        checked.pruned, "c1", 1)[0] < 8
    b = GraphBuilder()
    x = b.input(["N", 2, 4, 4, 4])
    h = b.op("Relu", [b.op("Conv", [x, b.weight(6, 2, 3, 3, 3)], name="c1", pads=[1] * 6)])
    b.output(b.op("Conv", [h, b.weight(3, 6, 1, 1, 1)], name="c2"))
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "c2", 1)[1] == node_input_shape(
        checked.pruned, "c1", 1)[0] < 6


# -- case 2: depthwise -----------------------------------------------------------------
@pytest.mark.parametrize("multiplier", [1, 3])
def test_depthwise_conv_repeats_the_input_ids(multiplier):
    b = GraphBuilder()
    h = _stem(b, 4)
    h = b.conv(h, 4, 4 * multiplier, group=4, name="dw")
    b.output(b.conv(h, 4 * multiplier, 2, name="head"))
    analysis = analyzed(b.model())
    stem = source_ids(analysis, "stem")
    repeated = [int(i) for i in np.repeat(stem, multiplier)]
    assert layout_ids(analysis, "dw_out") == (1, repeated)
    assert not [s for s in analysis.ctx.sources if s.node == "dw"]  # nothing new prunable
    assert coupled(analysis, "dw") == {(1, 0): ("out", repeated), (2, 0): ("bias", repeated)}
    assert coupled(analysis, "head")[(1, 1)] == ("in", repeated)


@pytest.mark.parametrize("multiplier", [1, 2])
def test_depthwise_conv_transpose_slices_axis_0_by_input_channel(multiplier):
    b = GraphBuilder()
    h = _stem(b, 6)
    up = b.op("ConvTranspose", [h, b.weight(6, multiplier, 2, 2), b.weight(6 * multiplier)],
              name="dwt", group=6, strides=[2, 2])
    b.output(b.conv(b.op("Relu", [up]), 6 * multiplier, 2, name="head"))
    analysis = analyzed(b.model())
    stem = source_ids(analysis, "stem")
    assert coupled(analysis, "dwt")[(1, 0)] == ("out", stem)
    assert layout_ids(analysis, "dwt_out") == (1, [int(i) for i in np.repeat(stem, multiplier)])
    checked = prune_and_check(b.model(), 0.4)
    kept = node_input_shape(checked.pruned, "stem", 1)[0]
    assert kept < 6
    assert node_input_shape(checked.pruned, "dwt", 1) == (kept, multiplier, 2, 2)
    dwt = next(n for n in checked.pruned.graph.node if n.name == "dwt")
    assert next(a.i for a in dwt.attribute if a.name == "group") == kept


def test_depthwise_conv_on_an_untracked_input_creates_nothing():
    """A depthwise conv reading the graph input: its channels are the input's, which
    cannot be removed, so the output carries no layout and no source is made."""
    b = GraphBuilder()
    h = b.conv(b.input(["N", 3, 8, 8]), 3, 6, group=3, name="dw")
    b.output(b.conv(b.op("Relu", [h]), 6, 2, name="head"))
    analysis = analyzed(b.model())
    assert layout_ids(analysis, "dw_out") is None
    assert [s.node for s in analysis.ctx.sources] == ["head"]


def test_depthwise_macs_follow_the_kept_channels():
    b = GraphBuilder()
    h = _stem(b, 4)
    h = b.conv(h, 4, 8, group=4, name="dw")
    b.output(b.conv(h, 8, 2, name="head"))
    analysis = analyzed(b.model())
    full = macs(analysis, "dw")
    assert full == 8 * 8 * 8 * 1 * 9  # 8 output channels of 8x8, one input channel each, 3x3
    assert macs(analysis, "dw", removing(analysis, "stem", 1)) == 6 * 8 * 8 * 9


# -- case 3: grouped -------------------------------------------------------------------
def test_grouped_conv_adds_equal_block_constraints_on_both_sides():
    b = GraphBuilder()
    h = _stem(b, 8)
    h = b.op("Relu", [b.conv(h, 8, 12, group=4, name="grouped")])
    b.output(b.conv(h, 12, 2, name="head"))
    analysis = analyzed(b.model())
    stem, grouped = source_ids(analysis, "stem"), source_ids(analysis, "grouped")
    constraints = [([int(i) for i in np.concatenate(c.blocks)], len(c.blocks))
                   for c in analysis.ctx.constraints]
    assert (stem, 4) in constraints and (grouped, 4) in constraints
    weight = [c for c in analysis.ctx.couplings if c.node.name == "grouped" and c.axis == 1]
    assert weight[0].groups == 4 and weight[0].role == "in"
    assert group_of(analysis, "grouped").constraints  # translated to unit indices


def test_grouped_conv_with_dilation_passes_the_oracle():
    b = GraphBuilder()
    h = _stem(b, 8)
    h = b.op("Relu", [b.op("Conv", [h, b.weight(8, 4, 3, 3), b.weight(8)], name="grouped",
                           group=2, dilations=[2, 2], pads=[2, 2, 2, 2])])
    b.output(b.conv(h, 8, 2, name="head"))
    checked = prune_and_check(b.model(), 0.5)
    stem_kept = node_input_shape(checked.pruned, "stem", 1)[0]
    grouped = node_input_shape(checked.pruned, "grouped", 1)
    assert stem_kept % 2 == 0 and grouped[1] * 2 == stem_kept
    assert grouped[0] % 2 == 0


def test_grouped_conv_transpose_couples_the_per_group_output_axis():
    b = GraphBuilder()
    h = _stem(b, 8)
    up = b.op("ConvTranspose", [h, b.weight(8, 3, 2, 2)], name="up", group=2, strides=[2, 2])
    b.output(b.conv(up, 6, 2, name="head"))
    analysis = analyzed(b.model())
    out = next(c for c in analysis.ctx.couplings if c.node.name == "up" and c.axis == 1)
    assert out.groups == 2 and out.role == "out" and len(out.ids) == 6
    inp = next(c for c in analysis.ctx.couplings if c.node.name == "up" and c.axis == 0)
    assert inp.groups == 1 and inp.role == "in"
    full = macs(analysis, "up")
    assert full == 8 * 64 * (6 / 2) * 4  # 8 input channels of 8x8, 3 outputs per group, 2x2


# -- case 4: weight not a constant -----------------------------------------------------
def test_weight_from_a_graph_input_blocks_the_input_channels():
    b = GraphBuilder()
    h = _stem(b)
    w = b.input([4, 8, 3, 3], name="w_dynamic")
    b.output(b.op("Conv", [h, w], name="c2", pads=[1] * 4))
    analysis = analyzed(b.model())
    assert not group_of(analysis, "stem").prunable
    assert "Conv 'c2': weight is not a constant initializer" in reasons(analysis, "stem")
    assert not [s for s in analysis.ctx.sources if s.node == "c2"]


def test_bias_from_a_graph_input_blocks_the_output_channels():
    b = GraphBuilder()
    h = _stem(b)
    bias = b.input([4], name="b_dynamic")
    h = b.op("Conv", [h, b.weight(4, 8, 3, 3), bias], name="c2", pads=[1] * 4)
    b.output(b.conv(h, 4, 2, name="head"))
    analysis = analyzed(b.model())
    assert group_of(analysis, "stem").prunable
    assert "Conv 'c2': bias is not a constant" in reasons(analysis, "c2")
    assert not group_of(analysis, "c2").prunable


def test_channels_on_another_axis_are_blocked():
    b = GraphBuilder()
    h = _stem(b)
    t = b.op("Transpose", [h], perm=[0, 2, 1, 3])  # channels now on axis 2
    b.output(b.conv(t, 8, 4, name="c2"))
    analysis = analyzed(b.model())
    assert "Conv 'c2' reads channels on axis 1, but the pruned axis is 2" in reasons(
        analysis, "stem")
    assert len(source_ids(analysis, "c2")) == 4  # its own output channels are still a source


# -- case 5: quantized weight ----------------------------------------------------------
def _qweight(b: GraphBuilder, shape: tuple[int, ...], axis: int) -> str:
    q = b.rng.integers(-100, 100, shape).astype(np.int8)
    scale = np.linspace(0.01, 0.02, shape[axis]).astype(np.float32)
    return b.op("DequantizeLinear", [b.init(q), b.init(scale),
                                     b.init(np.zeros(shape[axis], np.int8))], axis=axis,
                name=b.name("dq"))


def test_quantized_weight_couples_the_integer_tensor_and_its_scales():
    b = GraphBuilder()
    h = _stem(b)
    h = b.op("Relu", [b.op("Conv", [h, _qweight(b, (6, 8, 3, 3), 0)], name="qconv",
                           pads=[1] * 4)])
    b.output(b.conv(h, 6, 2, name="head"))
    analysis = analyzed(b.model())
    dq = next(n for n in analysis.model.graph if n.op_type == "DequantizeLinear").name
    qconv, stem = source_ids(analysis, "qconv"), source_ids(analysis, "stem")
    assert coupled(analysis, dq) == {(0, 1): ("in", stem), (0, 0): ("out", qconv),
                                     (1, 0): ("qparam", qconv), (2, 0): ("qparam", qconv)}
    assert coupled(analysis, "qconv") == {}
    checked = prune_and_check(b.model(), 0.4, tol=1e-3)
    assert node_input_shape(checked.pruned, "head", 1)[1] < 6


def test_quantized_conv_transpose_weight_grouped_on_its_scale_axis_blocks():
    b = GraphBuilder()
    h = _stem(b)
    up = b.op("ConvTranspose", [h, _qweight(b, (8, 3, 2, 2), 1)], name="up", group=2,
              strides=[2, 2])
    b.output(b.conv(up, 6, 2, name="head"))
    analysis = analyzed(b.model())
    assert "per-channel scales on a grouped axis" in reasons(analysis, "up")
    assert not group_of(analysis, "up").prunable


# -- MACs ------------------------------------------------------------------------------
def test_conv_macs_count_kept_input_and_output_channels():
    b = GraphBuilder()
    h = _stem(b)
    b.output(b.conv(b.op("Relu", [b.conv(h, 8, 6, name="c2")]), 6, 2, name="head"))
    analysis = analyzed(b.model())
    assert macs(analysis, "c2") == 6 * 64 * 8 * 9
    assert macs(analysis, "c2", removing(analysis, "stem", 3)) == 6 * 64 * 5 * 9
    assert macs(analysis, "c2", removing(analysis, "c2", 2)) == 4 * 64 * 8 * 9
