"""Per-op rules, each checked by the masked-equivalence oracle on a tiny graph."""

from __future__ import annotations

import numpy as np
import pytest

from tests.builders import GraphBuilder
from tests.oracle import node_input_shape, prune_and_check

UNARY = ["Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
         "Softplus", "Softsign", "Mish", "Erf", "Abs", "Neg", "Identity", "Dropout", "Celu"]


def conv_act_conv(act: str, **attrs) -> GraphBuilder:
    b = GraphBuilder(opset=18)
    x = b.input(["N", 3, 8, 8])
    h = b.conv(x, 3, 16, name="c1")
    h = b.op(act, [h], **attrs)
    b.output(b.conv(h, 16, 4, name="c2"))
    return b


@pytest.mark.parametrize("act", UNARY)
def test_unary_activation_passes_channels_through(act):
    checked = prune_and_check(conv_act_conv(act).model(), 0.3)
    assert node_input_shape(checked.pruned, "c2", 1)[1] < 16


def test_clip_gelu_and_prelu_with_per_channel_slope():
    b = GraphBuilder(opset=20)
    x = b.input(["N", 3, 8, 8])
    h = b.conv(x, 3, 16, name="c1")
    h = b.op("Clip", [h, b.init(np.float32(-1)), b.init(np.float32(2))])
    h = b.op("Gelu", [h])
    h = b.op("PRelu", [h, b.weight(16, 1, 1)])
    b.output(b.conv(h, 16, 4, name="c2"))
    checked = prune_and_check(b.model(), 0.3)
    assert node_input_shape(checked.pruned, "c2", 1)[1] < 16


def test_residual_add_merges_groups_and_bn_is_sliced():
    b = GraphBuilder()
    x = b.input(["N", 3, 8, 8])
    h = b.op("Relu", [b.bn(b.conv(x, 3, 8, name="stem"), 8)])
    y = b.bn(b.conv(b.op("Relu", [b.conv(h, 8, 8, name="a")]), 8, 8, name="b"), 8)
    s = b.op("Add", [y, h])
    b.output(b.conv(s, 8, 4, name="head"))
    checked = prune_and_check(b.model(), 0.3)
    merged = [g for g in checked.analysis.groups if len(g.sources) == 2]
    assert {s.node for s in merged[0].sources} == {"stem", "b"}
    stem_out = node_input_shape(checked.pruned, "stem", 1)[0]
    assert node_input_shape(checked.pruned, "b", 1)[0] == stem_out
    assert node_input_shape(checked.pruned, "head", 1)[1] == stem_out


def test_concat_offsets_follow_pruned_channels():
    b = GraphBuilder()
    x = b.input(["N", 3, 8, 8])
    left, right = b.conv(x, 3, 8, name="left"), b.conv(x, 3, 12, name="right")
    c = b.op("Concat", [left, right, x], axis=1)
    b.output(b.conv(c, 23, 4, name="head"))
    checked = prune_and_check(b.model(), 0.4)
    kept = node_input_shape(checked.pruned, "left", 1)[0] + node_input_shape(
        checked.pruned, "right", 1)[0]
    assert node_input_shape(checked.pruned, "head", 1)[1] == kept + 3


@pytest.mark.parametrize("opset,form", [(11, "attr"), (13, "input"), (18, "num_outputs"),
                                        (13, "equal")])
def test_split_sizes_are_patched(opset, form):
    b = GraphBuilder(opset=opset)
    x = b.input(["N", 3, 8, 8])
    h = b.conv(x, 3, 16, name="c1")
    if form == "attr":
        parts = b.op("Split", [h], n_out=2, axis=1, split=[6, 10])
    elif form == "input":
        parts = b.op("Split", [h, b.ints([6, 10])], n_out=2, axis=1)
    elif form == "num_outputs":
        parts = b.op("Split", [h], n_out=2, axis=1, num_outputs=2)
    else:
        parts = b.op("Split", [h], n_out=2, axis=1)
    n0 = 6 if form in ("attr", "input") else 8
    left = b.conv(parts[0], n0, 4, name="l")
    right = b.conv(parts[1], 16 - n0, 4, name="r")
    b.output(b.op("Add", [left, right]))
    checked = prune_and_check(b.model(), 0.4)
    pruned = checked.pruned
    total = node_input_shape(pruned, "l", 1)[1] + node_input_shape(pruned, "r", 1)[1]
    assert total == node_input_shape(checked.pruned, "c1", 1)[0] < 16


def test_slice_on_channel_axis_is_patched():
    b = GraphBuilder(opset=13)
    x = b.input(["N", 3, 8, 8])
    h = b.conv(x, 3, 16, name="c1")
    s = b.op("Slice", [h, b.ints([4]), b.ints([12]), b.ints([1])])
    b.output(b.conv(s, 8, 4, name="c2"))
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "c2", 1)[1] <= 8


@pytest.mark.parametrize("multiplier", [1, 2])
def test_depthwise_conv_ties_input_and_output(multiplier):
    b = GraphBuilder()
    x = b.input(["N", 3, 8, 8])
    h = b.op("Relu", [b.conv(x, 3, 12, name="expand")])
    h = b.conv(h, 12, 12 * multiplier, group=12, name="dw")
    b.output(b.conv(h, 12 * multiplier, 4, name="project"))
    checked = prune_and_check(b.model(), 0.4)
    kept = node_input_shape(checked.pruned, "expand", 1)[0]
    assert node_input_shape(checked.pruned, "dw", 1)[0] == kept * multiplier
    dw = next(n for n in checked.pruned.graph.node if n.name == "dw")
    assert next(a.i for a in dw.attribute if a.name == "group") == kept


def test_grouped_conv_keeps_equal_channels_per_group():
    b = GraphBuilder()
    x = b.input(["N", 3, 8, 8])
    h = b.op("Relu", [b.conv(x, 3, 16, name="reduce")])
    h = b.op("Relu", [b.conv(h, 16, 16, group=4, name="grouped")])
    b.output(b.conv(h, 16, 4, name="expand"))
    checked = prune_and_check(b.model(), 0.4)
    reduce_out = node_input_shape(checked.pruned, "reduce", 1)[0]
    grouped = node_input_shape(checked.pruned, "grouped", 1)
    assert reduce_out % 4 == 0 and grouped[1] * 4 == reduce_out
    assert (grouped[0] % 4 == 0 and grouped[0] < 16) or reduce_out < 16


@pytest.mark.parametrize("group", [1, 2])
def test_conv_transpose_maps_input_and_output_axes(group):
    b = GraphBuilder()
    x = b.input(["N", 3, 8, 8])
    h = b.op("Relu", [b.conv(x, 3, 8, name="enc")])
    w = b.weight(8, 12 // group, 2, 2)
    h = b.op("ConvTranspose", [h, w, b.weight(12)], name="up", strides=[2, 2], group=group)
    b.output(b.conv(b.op("Relu", [h]), 12, 2, name="head"))
    checked = prune_and_check(b.model(), 0.4)
    up = node_input_shape(checked.pruned, "up", 1)
    assert up[0] == node_input_shape(checked.pruned, "enc", 1)[0]
    assert up[1] * group == node_input_shape(checked.pruned, "head", 1)[1]


def flatten_head(kind: str, opset: int = 13):
    b = GraphBuilder(opset=opset)
    x = b.input(["N", 3, 8, 8])
    h = b.op("MaxPool", [b.conv(x, 3, 8, name="c1")], kernel_shape=[2, 2], strides=[2, 2])
    if kind == "flatten":
        f = b.op("Flatten", [h])
    elif kind == "reshape_const":
        f = b.op("Reshape", [h, b.ints([-1, 128])])
    elif kind == "reshape_zero":
        f = b.op("Reshape", [h, b.ints([0, 128])])
    else:  # Shape -> Gather -> Unsqueeze -> Concat with a constant piece
        shape = b.op("Shape", [h])
        n = b.op("Gather", [shape, b.init(np.int64(0))], axis=0)
        n = b.op("Unsqueeze", [n, b.ints([0])])
        f = b.op("Reshape", [h, b.op("Concat", [n, b.ints([128])], axis=0)])
    b.output(b.op("Gemm", [f, b.weight(10, 128), b.weight(10)], name="fc", transB=1))
    return b.model()


@pytest.mark.parametrize("kind", ["flatten", "reshape_const", "reshape_zero", "shape_chain"])
def test_flatten_to_linear_maps_each_channel_to_its_spatial_block(kind):
    checked = prune_and_check(flatten_head(kind), 0.3)
    kept = node_input_shape(checked.pruned, "c1", 1)[0]
    assert kept < 8
    assert node_input_shape(checked.pruned, "fc", 1) == (10, kept * 16)


def test_matmul_mlp_with_bias_add_prunes_hidden_neurons():
    b = GraphBuilder()
    x = b.input(["N", 32])
    h = b.op("Add", [b.op("MatMul", [x, b.weight(32, 64)], name="fc1"), b.weight(64)])
    h = b.op("Relu", [h])
    b.output(b.op("MatMul", [h, b.weight(64, 10)], name="fc2"))
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "fc2", 1)[0] < 64


def test_squeeze_excite_couples_expand_conv_with_features():
    b = GraphBuilder()
    x = b.input(["N", 3, 8, 8])
    h = b.op("Relu", [b.conv(x, 3, 16, name="feat")])
    s = b.op("GlobalAveragePool", [h])
    s = b.op("Relu", [b.conv(s, 16, 4, k=1, name="se_reduce")])
    s = b.op("Sigmoid", [b.conv(s, 4, 16, k=1, name="se_expand")])
    b.output(b.conv(b.op("Mul", [h, s]), 16, 4, name="head"))
    checked = prune_and_check(b.model(), 0.4)
    group = next(g for g in checked.analysis.groups if g.sources[0].node == "feat")
    assert {s.node for s in group.sources} == {"feat", "se_expand"}


def test_layer_scale_and_per_channel_constants_are_sliced():
    b = GraphBuilder()
    x = b.input(["N", 3, 8, 8])
    h = b.conv(x, 3, 16, name="c1")
    h = b.op("Mul", [h, b.weight(16, 1, 1)])
    h = b.op("Add", [h, b.weight(1, 16, 1, 1)])
    h = b.op("Div", [h, b.positive(16, 1, 1)])
    h = b.op("Where", [b.init(np.random.default_rng(0).random((16, 1, 1)) > 0.5), h, b.weight(1)])
    b.output(b.conv(h, 16, 4, name="c2"))
    prune_and_check(b.model(), 0.3)


def test_channels_last_linear_between_transposes():
    b = GraphBuilder()
    x = b.input(["N", 3, 8, 8])
    h = b.conv(x, 3, 8, name="stem")
    t = b.op("Transpose", [h], perm=[0, 2, 3, 1])
    t = b.op("Relu", [b.op("MatMul", [t, b.weight(8, 32)], name="pw1")])
    t = b.op("MatMul", [t, b.weight(32, 8)], name="pw2")
    h2 = b.op("Transpose", [t], perm=[0, 3, 1, 2])
    b.output(b.conv(b.op("Add", [h, h2]), 8, 4, name="head"))
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "pw2", 1)[0] < 32


@pytest.mark.parametrize("op,reason", [
    ("GroupNormalization", "groups of channels"),
    ("LayerNormalization", "normalises over the channel axis"),
    ("Softmax", "normalises over the channel axis"),
])
def test_channel_mixing_normalisations_block_with_reason(op, reason):
    b = GraphBuilder(opset=18)
    x = b.input(["N", 3, 8, 8])
    h = b.conv(x, 3, 8, name="c1")
    if op == "GroupNormalization":
        h = b.op(op, [h, b.weight(8), b.weight(8)], num_groups=2)
    elif op == "LayerNormalization":
        h = b.op(op, [h, b.weight(8, 8, 8), b.weight(8, 8, 8)], axis=1)
    else:
        h = b.op(op, [h], axis=1)
    b.output(b.conv(h, 8, 4, name="c2"))
    from onnxprune.analysis import analyze
    from tests.oracle import load
    analysis = analyze(load(b.model()))
    group = next(g for g in analysis.groups if g.sources[0].node == "c1")
    assert not group.prunable
    assert any(reason in r for r in group.reasons)


def test_instance_norm_and_pools_pass_channels():
    b = GraphBuilder()
    x = b.input(["N", 3, 16, 16])
    h = b.conv(x, 3, 8, name="c1")
    h = b.op("InstanceNormalization", [h, b.positive(8), b.weight(8)])
    h = b.op("AveragePool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = b.op("Pad", [h, b.ints([0, 0, 1, 1, 0, 0, 1, 1])])
    h = b.op("Resize", [h, "", b.init(np.array([1, 1, 2, 2], np.float32))], mode="nearest")
    h = b.op("MaxPool", [h], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    h = b.conv(h, 8, 6, name="c2")
    s = b.op("ReduceMean", [h], axes=[2, 3], keepdims=0)
    b.output(b.op("Gemm", [s, b.weight(6, 10)], name="fc"))
    checked = prune_and_check(b.model(), 0.3)
    assert node_input_shape(checked.pruned, "fc", 1)[0] <= 6


def test_reduce_mean_axes_input_opset18():
    b = GraphBuilder(opset=18)
    x = b.input(["N", 3, 8, 8])
    h = b.conv(x, 3, 8, name="c1")
    s = b.op("ReduceMean", [h, b.ints([2, 3])], keepdims=0)
    b.output(b.op("Gemm", [s, b.weight(8, 10)], name="fc"))
    checked = prune_and_check(b.model(), 0.3)
    assert node_input_shape(checked.pruned, "fc", 1)[0] < 8


def test_concat_on_spatial_axis_merges_channel_groups():
    b = GraphBuilder()
    x = b.input(["N", 3, 8, 8])
    a, c = b.conv(x, 3, 8, name="a"), b.conv(x, 3, 8, name="c")
    joined = b.op("Concat", [a, c], axis=2)
    b.output(b.conv(joined, 8, 4, name="head"))
    checked = prune_and_check(b.model(), 0.3)
    pruned = checked.pruned
    assert node_input_shape(pruned, "a", 1)[0] == node_input_shape(pruned, "c", 1)[0]


def test_unknown_and_custom_ops_are_barriers_with_reason():
    b = GraphBuilder()
    x = b.input(["N", 3, 8, 8])
    h = b.conv(x, 3, 8, name="c1")
    h = b.op("MyOp", [h], domain="custom.domain")
    b.output(h)
    from onnxprune.analysis import analyze
    from onnxprune.graph.io import model_from_proto
    analysis = analyze(model_from_proto(b.model()))
    group = analysis.groups[0]
    assert not group.prunable
    assert any("no rule for op MyOp" in r for r in group.reasons)


def test_graph_output_and_subgraph_reads_block():
    from onnx import TensorProto, helper

    from onnxprune.analysis import analyze
    from onnxprune.graph.io import model_from_proto
    b = GraphBuilder()
    x = b.input(["N", 3, 8, 8])
    h = b.conv(x, 3, 8, name="c1")
    h2 = b.conv(x, 3, 8, name="c2")
    then = helper.make_graph([helper.make_node("Identity", [h2], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Identity", [h2], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    cond = b.init(np.array(True))
    b.nodes.append(helper.make_node("If", [cond], ["branch"], then_branch=then, else_branch=other))
    b.output(h)
    b.output("branch")
    analysis = analyze(model_from_proto(b.model()))
    reasons = {g.sources[0].node: g.reasons for g in analysis.groups}
    assert any("graph output" in r for r in reasons["c1"])
    assert any("subgraph" in r for r in reasons["c2"])


def test_runtime_chunk_slices_keep_equal_halves():
    """TorchScript's chunk(2): bounds computed from Shape at run time, never patched."""
    b = GraphBuilder(opset=17)
    x = b.input(["N", 3, 8, 8])
    h = b.conv(x, 3, 16, name="c1")
    channels = b.op("Gather", [b.op("Shape", [h]), b.ints([1])], axis=0)
    half = b.op("Div", [b.op("Add", [channels, b.ints([1])]), b.ints([2])])
    first = b.op("Slice", [h, b.ints([0]), b.op("Mul", [half, b.ints([1])]), b.ints([1])])
    second = b.op("Slice", [h, b.op("Mul", [half, b.ints([1])]),
                            b.op("Mul", [half, b.ints([2])]), b.ints([1])])
    left = b.conv(first, 8, 4, name="l")
    right = b.conv(second, 8, 4, name="r")
    b.output(b.op("Add", [left, right]))
    checked = prune_and_check(b.model(), 0.4)
    kept = node_input_shape(checked.pruned, "c1", 1)[0]
    assert kept < 16 and kept % 2 == 0
    assert node_input_shape(checked.pruned, "l", 1)[1] == kept // 2


def _class_token_model(expand_shape: list[int] | None) -> object:
    """tokens [N, 3, 4] -> MatMul (8 features) -> Concat on axis 1 with a class token
    ([1, 1, 8] parameter, through Expand to ``expand_shape`` unless None) -> MatMul."""
    b = GraphBuilder(seed=5)
    x = b.input(["N", 3, 4], name="tokens")
    h = b.op("MatMul", [x, b.weight(4, 8)], name="proj")
    token = b.weight(1, 1, 8)
    if expand_shape is not None:
        token = b.op("Expand", [token, b.ints(expand_shape)], name="expand")
    joined = b.op("Concat", [token, h], axis=1, name="cat")
    b.output(b.op("MatMul", [b.op("Relu", [joined]), b.weight(8, 5)], name="head"))
    return b.model()


@pytest.mark.parametrize("expand_shape", [None, [1, 1, 1]])
def test_concat_couples_a_constant_class_token_to_the_channels(expand_shape):
    checked = prune_and_check(_class_token_model(expand_shape), 0.3, batches=(1,))
    group = next(g for g in checked.analysis.groups if g.sources[0].node == "proj")
    assert group.prunable and checked.plan.kept[group.index] < 8
    shapes = {t.name: tuple(t.dims) for t in checked.pruned.graph.initializer}
    cat = next(n for n in checked.pruned.graph.node if n.op_type == "Concat")
    token = cat.input[0] if expand_shape is None else next(
        n for n in checked.pruned.graph.node if n.op_type == "Expand").input[0]
    assert shapes[token] == (1, 1, checked.plan.kept[group.index])


def test_concat_blocks_an_expand_whose_shape_pins_the_width():
    from onnxprune.analysis import analyze
    from tests.oracle import load

    analysis = analyze(load(_class_token_model([1, 1, 8])))
    group = next(g for g in analysis.groups if g.sources[0].node == "proj")
    assert not group.prunable
    assert any("not all tracked" in r for r in group.reasons)
