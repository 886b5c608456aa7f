"""Unit tests of ``analysis/rules/norm.py`` on hand-built graphs.

Case 1 (BatchNormalization / InstanceNormalization per channel), case 2
(LayerNormalization: normalised axes block, earlier axes pass, ``prune_hidden`` on the
last axis), case 3 (GroupNormalization blocks; its reason is checked in
``tests/analysis/test_rules.py``), case 4 (LpNormalization) and case 5 (an input of
unknown rank blocks).
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
    reasons,
    source_ids,
)

C = 8


def _conv(b: GraphBuilder, c: int = C) -> str:
    return b.conv(b.input(["N", 3, 6, 6]), 3, c, name="c1")


# -- case 1 ------------------------------------------------------------------------------
def test_batch_norm_couples_all_four_statistics():
    b = GraphBuilder()
    h = b.op("BatchNormalization", [_conv(b), b.positive(C), b.weight(C), b.weight(C),
                                    b.positive(C)], name="bn")
    b.output(b.conv(b.op("Relu", [h]), C, 4, name="c2"))
    analysis = analyzed(b.model())
    ids = source_ids(analysis, "c1")
    assert coupled(analysis, "bn") == {(1, 0): ("bn_scale", ids), (2, 0): ("norm", ids),
                                       (3, 0): ("norm", ids), (4, 0): ("norm", ids)}
    assert layout_ids(analysis, "bn_out") == (1, ids)


def test_batch_norm_1d_after_a_linear_layer_passes_the_oracle():
    b = GraphBuilder()
    x = b.input(["N", 5])
    h = b.op("Gemm", [x, b.weight(5, C)], name="fc1")
    h = b.op("Relu", [b.bn(h, C)])
    b.output(b.op("Gemm", [h, b.weight(C, 3)], name="fc2"))
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "fc2", 1)[0] < C


def test_instance_norm_couples_scale_and_bias():
    b = GraphBuilder()
    h = b.op("InstanceNormalization", [_conv(b), b.positive(C), b.weight(C)], name="inorm")
    b.output(b.conv(h, C, 4, name="c2"))
    analysis = analyzed(b.model())
    ids = source_ids(analysis, "c1")
    assert coupled(analysis, "inorm") == {(1, 0): ("bn_scale", ids), (2, 0): ("norm", ids)}


def test_batch_norm_with_a_runtime_statistic_blocks():
    b = GraphBuilder()
    mean = b.input([C], name="mean")
    h = b.op("BatchNormalization", [_conv(b), b.positive(C), b.weight(C), mean,
                                    b.positive(C)], name="bn")
    b.output(b.conv(h, C, 4, name="c2"))
    analysis = analyzed(b.model())
    assert "BatchNormalization 'bn': input 3 is not a constant" in reasons(analysis, "c1")
    assert layout_ids(analysis, "bn_out") is None


def test_batch_norm_with_used_training_outputs_blocks():
    b = GraphBuilder(opset=15)
    outs = b.op("BatchNormalization", [_conv(b), b.positive(C), b.weight(C), b.weight(C),
                                       b.positive(C)], n_out=3, name="bn", training_mode=1)
    b.output(b.conv(outs[0], C, 4, name="c2"))
    b.output(outs[1])
    analysis = analyzed(b.model())
    assert "BatchNormalization 'bn': training-mode outputs are used" in reasons(analysis, "c1")


def test_batch_norm_on_channels_off_axis_1_blocks():
    b = GraphBuilder()
    t = b.op("Transpose", [_conv(b)], perm=[0, 2, 1, 3])  # channels on axis 2
    h = b.op("BatchNormalization", [t, b.positive(6), b.weight(6), b.weight(6),
                                    b.positive(6)], name="bn")
    b.output(h)
    analysis = analyzed(b.model())
    assert "BatchNormalization 'bn' reads channels on axis 1, but the pruned axis is 2" in \
        reasons(analysis, "c1")


# -- case 2: LayerNormalization --------------------------------------------------------
def _tokens(b: GraphBuilder) -> str:
    x = b.input(["N", 5, 6])
    return b.op("MatMul", [x, b.weight(6, C)], name="fc1")


@pytest.mark.parametrize("axis", [-1, 2])
def test_layer_norm_over_the_channel_axis_blocks(axis):
    b = GraphBuilder()
    h = b.op("LayerNormalization", [_tokens(b), b.positive(C), b.weight(C)], name="ln",
             axis=axis)
    b.output(b.op("MatMul", [h, b.weight(C, 3)], name="fc2"))
    analysis = analyzed(b.model())
    assert "LayerNormalization 'ln' normalises over the channel axis" in reasons(analysis, "fc1")


def test_layer_norm_over_later_axes_passes_a_channel_layout():
    """Channels on axis 1 of a conv output, LayerNorm over (H, W): per channel."""
    b = GraphBuilder()
    h = b.op("LayerNormalization", [_conv(b), b.positive(6, 6), b.weight(6, 6)], name="ln",
             axis=-2)
    b.output(b.conv(h, C, 4, name="c2"))
    analysis = analyzed(b.model())
    assert layout_ids(analysis, "ln_out") == (1, source_ids(analysis, "c1"))
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "c2", 1)[1] < C


def test_layer_norm_on_the_hidden_axis_is_prunable_with_prune_hidden():
    b = GraphBuilder()
    h = b.op("LayerNormalization", [_tokens(b), b.positive(C), b.weight(C)], name="ln")
    b.output(b.op("MatMul", [h, b.weight(C, 3)], name="fc2"))
    analysis = analyzed(b.model(), prune_hidden=True)
    ids = source_ids(analysis, "fc1")
    assert coupled(analysis, "ln") == {(1, 0): ("norm", ids), (2, 0): ("norm", ids)}
    assert group_of(analysis, "fc1").prunable
    assert "hidden width" in group_of(analysis, "fc1").description
    checked = prune_and_check(b.model(), 0.4, prune_hidden=True)
    assert node_input_shape(checked.pruned, "fc2", 1)[0] < C


def test_prune_hidden_still_blocks_a_layer_norm_over_two_axes():
    b = GraphBuilder()
    h = b.op("LayerNormalization", [_tokens(b), b.positive(5, C), b.weight(5, C)], name="ln",
             axis=-2)
    b.output(b.op("MatMul", [h, b.weight(C, 3)], name="fc2"))
    analysis = analyzed(b.model(), prune_hidden=True)
    assert "normalises over the channel axis" in reasons(analysis, "fc1")


def test_prune_hidden_blocks_a_scale_that_is_not_a_vector():
    b = GraphBuilder()
    h = b.op("LayerNormalization", [_tokens(b), b.positive(1, C), b.weight(C)], name="ln")
    b.output(b.op("MatMul", [h, b.weight(C, 3)], name="fc2"))
    analysis = analyzed(b.model(), prune_hidden=True)
    assert "LayerNormalization 'ln': input 1 is not a constant vector over the normalised " \
           "channels" in reasons(analysis, "fc1")


def test_prune_hidden_blocks_when_mean_or_inverse_std_is_used():
    b = GraphBuilder()
    y, mean, _ = b.op("LayerNormalization", [_tokens(b), b.positive(C), b.weight(C)],
                      n_out=3, name="ln")
    b.output(b.op("MatMul", [y, b.weight(C, 3)], name="fc2"))
    b.output(mean)
    analysis = analyzed(b.model(), prune_hidden=True)
    assert "LayerNormalization 'ln': mean / inverse std outputs are used" in reasons(
        analysis, "fc1")


def test_layer_norm_without_bias_with_prune_hidden():
    b = GraphBuilder()
    h = b.op("LayerNormalization", [_tokens(b), b.positive(C)], name="ln")
    b.output(b.op("MatMul", [h, b.weight(C, 3)], name="fc2"))
    checked = prune_and_check(b.model(), 0.4, prune_hidden=True)
    assert coupled(checked.analysis, "ln").keys() == {(1, 0)}
    assert node_input_shape(checked.pruned, "fc2", 1)[0] < C


# -- case 4: LpNormalization -------------------------------------------------------------
@pytest.mark.parametrize("axis", [1, -3])
def test_lp_norm_over_the_channel_axis_blocks(axis):
    b = GraphBuilder()
    h = b.op("LpNormalization", [_conv(b)], name="lp", axis=axis)
    b.output(b.conv(h, C, 4, name="c2"))
    analysis = analyzed(b.model())
    assert "LpNormalization 'lp' normalises over the channel axis" in reasons(analysis, "c1")


@pytest.mark.parametrize("p", [1, 2])
def test_lp_norm_over_another_axis_passes(p):
    b = GraphBuilder()
    h = b.op("LpNormalization", [_conv(b)], name="lp", p=p)  # default axis -1
    b.output(b.conv(h, C, 4, name="c2"))
    analysis = analyzed(b.model())
    assert layout_ids(analysis, "lp_out") == (1, source_ids(analysis, "c1"))
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "c2", 1)[1] < C


def test_group_norm_blocks_every_layout():
    b = GraphBuilder(opset=18)
    h = b.op("GroupNormalization", [_conv(b), b.positive(C), b.weight(C)], name="gn",
             num_groups=C)  # one channel per group would be sliceable; not handled yet
    b.output(b.conv(h, C, 4, name="c2"))
    analysis = analyzed(b.model())
    assert not group_of(analysis, "c1").prunable
    assert layout_ids(analysis, "gn_out") is None
    assert np.all(group_of(analysis, "c1").blocked)


@pytest.mark.parametrize("op", ["LayerNormalization", "LpNormalization"])
def test_an_input_of_unknown_rank_blocks(op):
    """Neither inference nor the probe found the rank: the axes cannot be checked, so the
    channels are blocked (before, the layout was dropped silently and the channels
    pruned under a normalisation over them)."""
    b = GraphBuilder(opset=17)
    h = b.op("Relu", [_tokens(b)], name="act")
    inputs = [h, b.positive(C)] if op == "LayerNormalization" else [h]
    h = b.op(op, inputs, name="n")
    b.output(b.op("MatMul", [h, b.weight(C, 3)], name="fc2"))
    analysis = analyzed(b.model(), unknown_shapes=("act_out",))
    assert f"{op} 'n': input rank unknown" in reasons(analysis, "fc1")
    assert not group_of(analysis, "fc1").prunable
