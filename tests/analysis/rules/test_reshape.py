"""reshape: Flatten and Reshape merging the channel axis with neighbours or splitting it
into heads (the channel shuffle has its own tests in ``tests/analysis/test_channel_shuffle``)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, numpy_helper

from onnxprune.analysis import analyze
from tests.builders import GraphBuilder
from tests.oracle import load, node_input_shape, prune_and_check


def _group(analysis, source: str):
    return next(g for g in analysis.groups if g.sources[0].node == source)


def _reshape_targets(model) -> dict[str, list[int]]:
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {n.name: inits[n.input[1]].tolist() for n in model.graph.node
            if n.op_type == "Reshape" and n.input[1] in inits}


def test_flatten_maps_each_channel_to_a_block_of_features():
    """conv [N, 6, 3, 3] -> Flatten -> Gemm: each kept channel keeps its 9 rows."""
    b = GraphBuilder(opset=17)
    x = b.input(["N", 2, 3, 3])
    h = b.op("Flatten", [b.op("Relu", [b.conv(x, 2, 6, name="c1")])], axis=1)
    b.output(b.op("Gemm", [h, b.weight(54, 4)], name="fc"))
    checked = prune_and_check(b.model(), 0.4)
    kept = checked.plan.kept[_group(checked.analysis, "c1").index]
    assert kept < 6
    assert node_input_shape(checked.pruned, "fc", 1) == (kept * 9, 4)


def test_flatten_merging_channels_into_the_rows_blocks():
    b = GraphBuilder(opset=17)
    x = b.input(["N", 2, 3, 3])
    b.output(b.op("Flatten", [b.conv(x, 2, 6, name="c1")], axis=2))
    group = _group(analyze(load(b.model())), "c1")
    assert not group.prunable
    assert any("merges the channel axis into the rows" in r for r in group.reasons)


@pytest.mark.parametrize("dynamic_batch", [False, True], ids=["constant", "concat"])
def test_reshape_merge_patches_the_merged_entry(dynamic_batch):
    """conv [N, 6, 2, 2] -> Reshape to [N, 24] (constant target, or Concat of the run-time
    batch and a constant 24) -> Gemm: the 24 becomes kept * 4."""
    b = GraphBuilder(opset=17)
    x = b.input(["N", 2, 2, 2])
    h = b.op("Relu", [b.conv(x, 2, 6, name="c1")])
    if dynamic_batch:
        batch = b.op("Gather", [b.op("Shape", [h]), b.ints([0])], axis=0)
        target = b.op("Concat", [batch, b.ints([24])], axis=0)
    else:
        target = b.ints([-1, 24])
    h = b.op("Reshape", [h, target], name="merge")
    b.output(b.op("Gemm", [h, b.weight(24, 4)], name="fc"))
    checked = prune_and_check(b.model(), 0.4)
    kept = checked.plan.kept[_group(checked.analysis, "c1").index]
    assert kept < 6 and node_input_shape(checked.pruned, "fc", 1) == (kept * 4, 4)
    concat = next((n for n in checked.pruned.graph.node if n.op_type == "Concat"), None)
    inits = {t.name: numpy_helper.to_array(t) for t in checked.pruned.graph.initializer}
    patched = inits[concat.input[1]] if dynamic_batch else _reshape_targets(checked.pruned)["merge"]
    assert list(np.ravel(patched))[-1] == kept * 4


def _heads_model(width_entry: str) -> GraphBuilder:
    """tokens [N, 5, 6] -> MatMul (8 = 2 heads of 4) -> Reshape [0, 0, 2, 4] -> Relu ->
    Reshape [0, 0, 8] -> MatMul. ``width_entry`` "constant" or "runtime" (the head width
    computed from the shape at run time)."""
    b = GraphBuilder(opset=17)
    x = b.input(["N", 5, 6], name="tokens")
    h = b.op("MatMul", [x, b.weight(6, 8)], name="qkv")
    if width_entry == "constant":
        split = b.ints([0, 0, 2, 4])
    else:
        width = b.op("Div", [b.op("Gather", [b.op("Shape", [h]), b.ints([2])], axis=0),
                             b.ints([2])])
        split = b.op("Concat", [b.ints([0, 0, 2]), width], axis=0)
    h = b.op("Relu", [b.op("Reshape", [h, split], name="split_heads")])
    h = b.op("Reshape", [h, b.ints([0, 0, 8])], name="merge_heads")
    b.output(b.op("MatMul", [h, b.weight(8, 3)], name="out"))
    return b


def test_reshape_splitting_channels_into_heads_prunes_whole_heads():
    checked = prune_and_check(_heads_model("constant").model(), 0.3)
    group = _group(checked.analysis, "qkv")
    assert group.size == 2 and group.unit_size == 4
    assert checked.plan.kept[group.index] == 1
    assert node_input_shape(checked.pruned, "qkv", 1) == (6, 4)
    targets = _reshape_targets(checked.pruned)
    assert targets["split_heads"] == [0, 0, 1, 4] and targets["merge_heads"] == [0, 0, 4]


def test_reshape_with_a_runtime_head_width_blocks():
    group = _group(analyze(load(_heads_model("runtime").model())), "qkv")
    assert not group.prunable
    assert any("head width is computed at run time" in r for r in group.reasons)


def test_reshape_to_a_target_fed_at_run_time_blocks():
    """The target is a graph input: the output shape is unknown, the axes cannot align."""
    b = GraphBuilder(opset=17)
    x = b.input(["N", 2, 2, 2])
    target = b.input([2], name="target", dtype=TensorProto.INT64)
    h = b.op("Reshape", [b.conv(x, 2, 6, name="c1"), target])
    b.output(b.op("Gemm", [h, b.weight(24, 4)], name="fc"))
    group = _group(analyze(load(b.model())), "c1")
    assert not group.prunable
    assert any("cannot be aligned around the channel axis" in r for r in group.reasons)
