"""gather: Gather beside the channels (passed, moved), on them (blocked), embeddings."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from onnxprune.analysis import analyze
from tests.builders import GraphBuilder
from tests.oracle import load, node_input_shape, prune_and_check


def _group(analysis, source: str):
    return next(g for g in analysis.groups if g.sources[0].node == source)


def test_gather_beside_the_channels_moves_the_axis_by_the_indices_rank():
    """conv [N, 8, 4, 4] -> Gather(scalar index, axis 2) [N, 8, 4] -> Transpose ->
    MatMul over the channels: the channel axis stays 1 (before the gathered axis)."""
    b = GraphBuilder(opset=17)
    x = b.input(["N", 3, 4, 4])
    h = b.op("Relu", [b.conv(x, 3, 8, name="c1")])
    row = b.op("Gather", [h, b.init(np.int64(1))], axis=2)
    b.output(b.op("MatMul", [b.op("Transpose", [row], perm=[0, 2, 1]), b.weight(8, 3)],
                  name="fc"))
    checked = prune_and_check(b.model(), 0.4)
    kept = checked.plan.kept[_group(checked.analysis, "c1").index]
    assert kept < 8 and node_input_shape(checked.pruned, "fc", 1) == (kept, 3)


def test_gather_before_the_channel_axis_shifts_it_by_the_indices_rank():
    """MatMul [N, 5, 8] -> Gather(indices [2, 3], axis 1) [N, 2, 3, 8] -> MatMul."""
    b = GraphBuilder(opset=17)
    x = b.input(["N", 5, 6])
    h = b.op("Relu", [b.op("MatMul", [x, b.weight(6, 8)], name="fc1")])
    picked = b.op("Gather", [h, b.ints([[0, 1, 2], [4, 3, 2]])], axis=1)
    b.output(b.op("MatMul", [picked, b.weight(8, 3)], name="fc2"))
    checked = prune_and_check(b.model(), 0.4)
    kept = checked.plan.kept[_group(checked.analysis, "fc1").index]
    assert kept < 8 and node_input_shape(checked.pruned, "fc2", 1) == (kept, 3)


def test_gather_along_the_channels_blocks():
    b = GraphBuilder(opset=17)
    x = b.input(["N", 3, 4, 4])
    h = b.op("Gather", [b.conv(x, 3, 8, name="c1"), b.ints([0, 2, 4])], axis=1)
    b.output(b.conv(h, 3, 2, name="c2"))
    group = _group(analyze(load(b.model())), "c1")
    assert not group.prunable
    assert any("gathers along the channel axis" in r for r in group.reasons)


def test_an_embedding_table_lookup_is_a_source_of_its_columns():
    """ids [N, 4] -> Gather(table [10, 6]) -> MatMul: the table loses columns."""
    b = GraphBuilder(opset=17)
    ids = b.input(["N", 4], name="ids", dtype=TensorProto.INT64)
    emb = b.op("Gather", [b.weight(10, 6), ids], name="embed")
    b.output(b.op("MatMul", [emb, b.weight(6, 3)], name="fc"))
    checked = prune_and_check(b.model(), 0.3, int_high={"ids": 10})
    group = _group(checked.analysis, "embed")
    kept = checked.plan.kept[group.index]
    assert group.sources[0].kind == "embedding table"
    assert kept < 6
    assert node_input_shape(checked.pruned, "embed", 0) == (10, kept)
    assert node_input_shape(checked.pruned, "fc", 1) == (kept, 3)
