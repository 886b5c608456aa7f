"""Attention heads and MLP blocks on tiny hand-built graphs, checked by the oracle.

Inputs are ``[N, T, C]`` with symbolic batch ``N`` and sequence ``T``; the oracle runs
them at two batch sizes and at sequence lengths 7 and 33.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, numpy_helper

from onnxprune.analysis import analyze
from tests.builders import GraphBuilder
from tests.oracle import initializer_shapes, load, node_input_shape, prune_and_check

C, H, D = 16, 4, 3
SEQS = ({"T": 7}, {"T": 33})


def _dims(b: GraphBuilder, x: str) -> tuple[str, str]:
    """Run-time batch and sequence entries (Shape -> Gather -> Unsqueeze), as exporters do."""
    shape = b.op("Shape", [x])
    out = []
    for i in (0, 1):
        g = b.op("Gather", [shape, b.init(np.int64(i))], axis=0)
        out.append(b.op("Unsqueeze", [g, b.ints([0])]))
    return out[0], out[1]


def _target(b: GraphBuilder, x: str, style: str, tail: list[int]) -> str:
    """A Reshape target ``[N, T, *tail]``: run-time N and T, constant tail entries."""
    del style
    n, t = _dims(b, x)
    return b.op("Concat", [n, t, *[b.ints([v]) for v in tail]], axis=0)


def _project(b: GraphBuilder, x: str, width: int, name: str, bias: bool = True,
             fan_in: int = C) -> str:
    h = b.op("MatMul", [x, b.weight(fan_in, width)], name=name)
    return b.op("Add", [h, b.weight(width, scale=0.1)]) if bias else h


def _heads(b: GraphBuilder, x: str, style: str, heads: int = H, perm=(0, 2, 1, 3)) -> str:
    tail = [heads, D] if style == "concat_heads" else [-1, D]
    h = b.op("Reshape", [x, _target(b, x, style, tail)])
    return b.op("Transpose", [h], perm=list(perm))


def _attend(b: GraphBuilder, q: str, k: str, v: str, style: str, heads: int = H) -> str:
    scores = b.op("MatMul", [q, k])
    scores = b.op("Mul", [scores, b.init(np.float32(D ** -0.5))])
    scores = b.op("Add", [scores, b.init(np.zeros((1, 1, 1, 1), np.float32))])
    probs = b.op("Softmax", [scores], axis=-1)
    ctx = b.op("Transpose", [b.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    merged = _target(b, ctx, style, [heads * D if style == "concat_heads" else -1])
    return b.op("Reshape", [ctx, merged])


def mha(style: str) -> GraphBuilder:
    b = GraphBuilder(opset=18)
    x = b.input(["N", "T", C])
    q = _heads(b, _project(b, x, H * D, "q"), style)
    k = _heads(b, _project(b, x, H * D, "k"), style, perm=(0, 2, 3, 1))
    v = _heads(b, _project(b, x, H * D, "v"), style)
    out = _project(b, _attend(b, q, k, v, style), C, "o", fan_in=H * D)  # MatMul K = H*D
    b.output(b.op("Add", [out, x]))
    return b


def _o_rows(checked) -> int:
    return node_input_shape(checked.pruned, "o", 1)[0]


@pytest.mark.parametrize("style", ["concat_heads", "minus_one"])
def test_attention_heads_are_pruned_whole(style):
    checked = prune_and_check(mha(style).model(), 0.3, dims=SEQS)
    (group,) = checked.analysis.prunable_groups
    kept = checked.plan.kept[group.index]
    assert group.size == H and group.unit_size == D and kept < H
    assert "attention: 4 heads of 3" in group.description
    for name in ("q", "k", "v"):
        assert node_input_shape(checked.pruned, name, 1)[1] == kept * D
    assert _o_rows(checked) == kept * D
    heads_entries = {int(numpy_helper.to_array(t).ravel()[0])
                     for t in checked.pruned.graph.initializer
                     if t.data_type == TensorProto.INT64 and t.dims == [1]}
    if style == "concat_heads":  # the head count and all-heads width were rewritten
        assert kept in heads_entries and kept * D in heads_entries
        assert H not in heads_entries and H * D not in heads_entries


def test_static_shape_constant_nodes_are_rewritten():
    """Fixed sequence length: Reshape targets are Constant nodes ``[-1, 5, H, D]``."""
    b = GraphBuilder(opset=18)
    x = b.input(["N", 5, C])

    def const(values):
        return b.op("Constant", [], value=numpy_helper.from_array(np.array(values, np.int64)))

    def heads(h, perm):
        return b.op("Transpose", [b.op("Reshape", [h, const([-1, 5, H, D])])], perm=perm)

    q = heads(_project(b, x, H * D, "q"), [0, 2, 1, 3])
    k = heads(_project(b, x, H * D, "k"), [0, 2, 3, 1])
    v = heads(_project(b, x, H * D, "v"), [0, 2, 1, 3])
    probs = b.op("Softmax", [b.op("MatMul", [q, k])], axis=-1)
    ctx = b.op("Transpose", [b.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    b.output(_project(b, b.op("Reshape", [ctx, const([-1, 5, H * D])]), C, "o", fan_in=H * D))
    checked = prune_and_check(b.model(), 0.3)
    kept = checked.plan.kept[checked.analysis.prunable_groups[0].index]
    targets = sorted(tuple(numpy_helper.to_array(t).tolist())
                     for t in checked.pruned.graph.initializer
                     if t.data_type == TensorProto.INT64 and len(t.dims) == 1 and t.dims[0] > 2)
    assert (-1, 5, kept * D) in targets and (-1, 5, kept, D) in targets


def test_fused_qkv_split_prunes_matching_heads():
    b = GraphBuilder(opset=18)
    x = b.input(["N", "T", C])
    qkv = _project(b, x, 3 * H * D, "qkv")
    q, k, v = b.op("Split", [qkv, b.ints([H * D] * 3)], n_out=3, axis=-1)
    q, v = _heads(b, q, "concat_heads"), _heads(b, v, "concat_heads")
    k = _heads(b, k, "concat_heads", perm=(0, 2, 3, 1))
    b.output(_project(b, _attend(b, q, k, v, "concat_heads"), C, "o", fan_in=H * D))
    checked = prune_and_check(b.model(), 0.3, dims=SEQS)
    kept = checked.plan.kept[checked.analysis.prunable_groups[0].index]
    assert kept < H
    assert node_input_shape(checked.pruned, "qkv", 1)[1] == 3 * kept * D
    assert _o_rows(checked) == kept * D


def test_grouped_query_attention_prunes_key_value_groups():
    """4 query heads share 2 key/value heads through Unsqueeze/Expand/Reshape (repeat_kv)."""
    b = GraphBuilder(opset=18)
    x = b.input(["N", "T", C])
    q = _heads(b, _project(b, x, H * D, "q"), "concat_heads")

    def repeat_kv(h):
        h = b.op("Unsqueeze", [h, b.ints([2])])  # [N, 2, 1, T, D]
        n, t = _dims(b, x)
        target = b.op("Concat", [n, b.ints([2]), b.ints([2]), t, b.ints([D])], axis=0)
        h = b.op("Expand", [h, target])
        merged = b.op("Concat", [n, b.ints([H]), t, b.ints([D])], axis=0)
        return b.op("Reshape", [h, merged])

    k = repeat_kv(_heads(b, _project(b, x, 2 * D, "k"), "concat_heads", heads=2))
    k = b.op("Transpose", [k], perm=[0, 1, 3, 2])
    v = repeat_kv(_heads(b, _project(b, x, 2 * D, "v"), "concat_heads", heads=2))
    b.output(_project(b, _attend(b, q, k, v, "concat_heads"), C, "o", fan_in=H * D))
    checked = prune_and_check(b.model(), 0.4, dims=SEQS, min_keep=0.5)
    (group,) = checked.analysis.prunable_groups
    assert group.size == 2 and checked.plan.kept[group.index] == 1
    assert "2 key/value heads, each shared by 2 query heads" in group.description
    assert node_input_shape(checked.pruned, "q", 1)[1] == 2 * D  # 2 query heads left
    assert node_input_shape(checked.pruned, "k", 1)[1] == D      # 1 key/value head left


def test_round_to_counts_heads():
    b = GraphBuilder(opset=18)
    x = b.input(["N", "T", C])
    heads = 8
    q = _heads(b, _project(b, x, heads * D, "q"), "concat_heads", heads=heads)
    k = _heads(b, _project(b, x, heads * D, "k"), "concat_heads", heads=heads, perm=(0, 2, 3, 1))
    v = _heads(b, _project(b, x, heads * D, "v"), "concat_heads", heads=heads)
    b.output(_project(b, _attend(b, q, k, v, "concat_heads", heads=heads), C, "o",
                      fan_in=heads * D))
    checked = prune_and_check(b.model(), 0.4, round_to=4)
    assert checked.plan.kept[checked.analysis.prunable_groups[0].index] == 4


def test_fused_com_microsoft_attention_is_a_barrier():
    b = GraphBuilder(opset=18)
    x = b.input(["N", "T", C])
    qkv = b.op("MatMul", [x, b.weight(C, 3 * C)], name="qkv")
    attn = b.op("Attention", [x, b.weight(C, 3 * C), b.weight(3 * C), "", "", qkv],
                domain="com.microsoft", num_heads=H)
    b.output(attn)
    analysis = analyze(load(b.model()))
    (group,) = analysis.groups
    assert not group.prunable
    assert any("com.microsoft attention is a barrier" in r for r in group.reasons)


def _mlp(act: str) -> GraphBuilder:
    b = GraphBuilder(opset=20)
    x = b.input(["N", "T", C])
    h = _project(b, x, 32, "fc1")
    if act == "erf_gelu":
        e = b.op("Erf", [b.op("Div", [h, b.init(np.float32(2 ** 0.5))])])
        h = b.op("Mul", [b.op("Mul", [h, b.op("Add", [e, b.init(np.float32(1))])]),
                         b.init(np.float32(0.5))])
    elif act == "tanh_gelu":
        cube = b.op("Pow", [h, b.init(np.float32(3))])
        inner = b.op("Add", [h, b.op("Mul", [cube, b.init(np.float32(0.044715))])])
        t = b.op("Tanh", [b.op("Mul", [inner, b.init(np.float32(0.79788456))])])
        h = b.op("Mul", [b.op("Mul", [h, b.init(np.float32(0.5))]),
                         b.op("Add", [t, b.init(np.float32(1))])])
    elif act == "silu":
        h = b.op("Mul", [h, b.op("Sigmoid", [h])])
    elif act == "gated":  # SiLU(gate) * up
        up = _project(b, x, 32, "up", bias=False)
        h = b.op("Mul", [b.op("Mul", [h, b.op("Sigmoid", [h])]), up])
    else:
        h = b.op(act, [h])
    b.output(_project(b, h, C, "fc2", fan_in=32))
    return b


@pytest.mark.parametrize("act", ["Gelu", "erf_gelu", "tanh_gelu", "Relu", "silu", "gated"])
def test_mlp_neurons_prune_through_activation(act):
    checked = prune_and_check(_mlp(act).model(), 0.3, dims=SEQS)
    (group,) = checked.analysis.prunable_groups
    kept = checked.plan.kept[group.index]
    assert kept < 32 and "MLP: 32 neurons" in group.description
    assert node_input_shape(checked.pruned, "fc1", 1) == (C, kept)
    assert node_input_shape(checked.pruned, "fc2", 1) == (kept, C)
    if act == "gated":
        assert node_input_shape(checked.pruned, "up", 1) == (C, kept)


def test_gemm_transposed_weights_and_bias():
    b = GraphBuilder(opset=18)
    x = b.input(["N", C])
    h = b.op("Gemm", [x, b.weight(32, C), b.weight(32, scale=0.1)], name="fc1", transB=1)
    h = b.op("Relu", [h])
    b.output(b.op("Gemm", [h, b.weight(C, 32), b.weight(C)], name="fc2", transB=1))
    checked = prune_and_check(b.model(), 0.3)
    kept = checked.plan.kept[checked.analysis.prunable_groups[0].index]
    shapes = initializer_shapes(checked.pruned)
    fc1 = next(n for n in checked.pruned.graph.node if n.name == "fc1")
    assert shapes[fc1.input[1]] == (kept, C) and shapes[fc1.input[2]] == (kept,)
    assert node_input_shape(checked.pruned, "fc2", 1) == (C, kept)


def test_attention_graph_has_no_unknown_op_reason():
    """Shape/Gather/Concat chains and Constant nodes leave no 'no rule for op' reason."""
    analysis = analyze(load(mha("concat_heads").model()))
    assert not [r for g in analysis.groups for r in g.reasons if "no rule" in r]


def test_split_map_and_minus_one_inference():
    from onnxprune.analysis.rules.reshape_math import fill_minus_one, split_map

    assert fill_minus_one((None, None, 32), [None, None, -1, 8]) == [None, None, 4, 8]
    assert fill_minus_one((None, None, 4, 8), [None, None, -1]) == [None, None, 32]
    # a dynamic entry that merges two dynamic dims: the -1 cannot be inferred
    assert fill_minus_one((None, None, 32), [None, -1]) == [None, None]
    split = split_map((None, None, 32), (None, None, 4, 8), 2)
    assert (split.out_axis, split.heads, split.width) == (2, 4, 8)
    assert split_map((None, 2, 16), (None, 4, 8), 2) is None  # not the channel axis alone


def test_head_width_computed_at_run_time_blocks():
    """``view(B, T, H, C // H)`` with C read from the shape: after pruning C // H would
    change the head width, so the split is refused with the reason."""
    b = GraphBuilder(opset=18)
    x = b.input(["N", "T", C])
    q = _project(b, x, H * D, "q")
    n, t = _dims(b, q)
    width = b.op("Gather", [b.op("Shape", [q]), b.init(np.int64(2))], axis=0)
    width = b.op("Unsqueeze", [b.op("Div", [width, b.init(np.int64(H))]), b.ints([0])])
    heads = b.op("Reshape", [q, b.op("Concat", [n, t, b.ints([H]), width], axis=0)])
    b.output(b.op("ReduceSum", [heads, b.ints([-1])], keepdims=0))
    analysis = analyze(load(b.model()))
    group = next(g for g in analysis.groups if g.sources[0].node == "q")
    assert not group.prunable
    assert any("head width is computed at run time" in r for r in group.reasons)


def test_matmul_weight_transposed_in_the_graph():
    """``x @ Transpose(W)`` with W a torch-style ``[out, in]`` initializer."""
    b = GraphBuilder(opset=18)
    x = b.input(["N", "T", C])
    w1t = b.op("Transpose", [b.weight(32, C)], perm=[1, 0])
    h = b.op("Relu", [b.op("MatMul", [x, w1t], name="fc1")])
    w2t = b.op("Transpose", [b.weight(C, 32)], perm=[1, 0], name="t2")
    b.output(b.op("MatMul", [h, w2t], name="fc2"))
    checked = prune_and_check(b.model(), 0.3, dims=SEQS)
    kept = checked.plan.kept[checked.analysis.prunable_groups[0].index]
    assert kept < 32
    assert node_input_shape(checked.pruned, "t2", 0) == (C, kept)


def test_grouped_query_attention_with_tiled_key_value_heads():
    """``k.repeat(1, 2, 1, 1)``: query head h uses key/value head h % 2."""
    b = GraphBuilder(opset=18)
    x = b.input(["N", "T", C])
    q = _heads(b, _project(b, x, H * D, "q"), "concat_heads")
    k = _heads(b, _project(b, x, 2 * D, "k"), "concat_heads", heads=2, perm=(0, 2, 3, 1))
    v = _heads(b, _project(b, x, 2 * D, "v"), "concat_heads", heads=2)
    k, v = (b.op("Tile", [t, b.ints([1, 2, 1, 1])]) for t in (k, v))
    b.output(_project(b, _attend(b, q, k, v, "concat_heads"), C, "o", fan_in=H * D))
    checked = prune_and_check(b.model(), 0.4, dims=SEQS, min_keep=0.5)
    (group,) = checked.analysis.prunable_groups
    assert group.size == 2 and checked.plan.kept[group.index] == 1
    assert node_input_shape(checked.pruned, "q", 1)[1] == 2 * D
    assert node_input_shape(checked.pruned, "k", 1)[1] == D


@pytest.mark.parametrize("name", ["bert_tiny.ts", "gpt2_tiny.dynamo", "llama_gqa_tiny.ts"])
def test_blocked_residual_stream_points_to_prune_hidden(name):
    """Groups blocked only because they are the hidden width say that --prune-hidden
    prunes them, and they are prunable with it; CNNs get no such hint."""
    from onnxprune.analysis.analyze import HIDDEN_HINT
    from onnxprune.graph import load_model
    from tests.conftest import MODELS

    model = load_model(MODELS / f"{name}.onnx").model
    hinted = [g for g in analyze(model).groups if g.reasons and g.reasons[0] == HIDDEN_HINT]
    assert hinted and not any(g.prunable for g in hinted)
    hidden = analyze(model, prune_hidden=True)
    prunable = {s.node for g in hidden.groups if g.prunable for s in g.sources}
    assert all(any(s.node in prunable for s in g.sources) for g in hinted)
    cnn = analyze(load_model(MODELS / "resnet_basic.ts.onnx").model)
    assert not any(HIDDEN_HINT in g.reasons for g in cnn.groups)
