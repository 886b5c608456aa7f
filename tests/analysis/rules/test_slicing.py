"""slicing: Split and Slice on the channel axis (cut and patched) or beside it (passed)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, numpy_helper

from onnxprune.analysis import analyze
from tests.builders import GraphBuilder
from tests.oracle import load, node_input_shape, prune_and_check


def _group(analysis, source: str):
    return next(g for g in analysis.groups if g.sources[0].node == source)


def _constants(model, op_type: str) -> list[list[int]]:
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    node = next(n for n in model.graph.node if n.op_type == op_type)
    return [inits[name].tolist() for name in node.input[1:] if name in inits]


def test_split_beside_the_channels_passes_the_layout_to_every_part():
    b = GraphBuilder(opset=13)
    x = b.input(["N", 3, 8, 8])
    top, bottom = b.op("Split", [b.conv(x, 3, 8, name="c1"), b.ints([3, 5])], n_out=2, axis=2)
    b.output(b.op("Add", [b.conv(top, 8, 4, name="l", k=1),
                          b.op("Slice", [b.conv(bottom, 8, 4, name="r", k=1),
                                         b.ints([0]), b.ints([3]), b.ints([2])])]))
    checked = prune_and_check(b.model(), 0.3)
    kept = checked.plan.kept[_group(checked.analysis, "c1").index]
    assert kept < 8
    assert node_input_shape(checked.pruned, "l", 1)[1] == node_input_shape(
        checked.pruned, "r", 1)[1] == kept
    assert _constants(checked.pruned, "Split") == [[3, 5]]


def test_every_split_part_keeps_a_channel():
    """Parts of 1 and 15 channels: the 1-channel part is never emptied."""
    b = GraphBuilder(opset=13)
    x = b.input(["N", 3, 6, 6])
    one, rest = b.op("Split", [b.conv(x, 3, 16, name="c1"), b.ints([1, 15])], n_out=2, axis=1)
    b.output(b.op("Add", [b.conv(one, 1, 4, name="l"), b.conv(rest, 15, 4, name="r")]))
    checked = prune_and_check(b.model(), 0.6)
    assert node_input_shape(checked.pruned, "l", 1)[1] == 1
    left, right = _constants(checked.pruned, "Split")[0]
    assert left == 1 and right == node_input_shape(checked.pruned, "r", 1)[1] < 15


def test_slice_with_a_negative_end_moves_its_bounds_to_the_kept_channels():
    """Slice [2:-2] of 12 channels: starts/ends become kept positions."""
    b = GraphBuilder(opset=13)
    x = b.input(["N", 3, 6, 6])
    h = b.op("Relu", [b.conv(x, 3, 12, name="c1")])
    part = b.op("Slice", [h, b.ints([2]), b.ints([-2]), b.ints([1])])
    b.output(b.op("Add", [b.conv(part, 8, 4, name="inner"), b.conv(h, 12, 4, name="all")]))
    checked = prune_and_check(b.model(), 0.4)
    inner = node_input_shape(checked.pruned, "inner", 1)[1]
    starts, ends, _ = _constants(checked.pruned, "Slice")
    assert inner < 8 and ends[0] - starts[0] == inner


def test_strided_slice_over_channels_blocks():
    b = GraphBuilder(opset=13)
    x = b.input(["N", 3, 6, 6])
    h = b.conv(x, 3, 8, name="c1")
    part = b.op("Slice", [h, b.ints([0]), b.ints([8]), b.ints([1]), b.ints([2])])
    b.output(b.conv(part, 4, 2, name="c2"))
    group = _group(analyze(load(b.model())), "c1")
    assert not group.prunable
    assert any("strided slice over channels" in r for r in group.reasons)


def test_slice_with_runtime_bounds_beside_the_channels_passes_through():
    """Bounds from a graph input, constant axes [2] (RoPE's rotate_half)."""
    b = GraphBuilder(opset=13)
    x = b.input([1, 3, 6, 6])
    end = b.input([1], name="end", dtype=TensorProto.INT64)
    h = b.op("Relu", [b.conv(x, 3, 8, name="c1")])
    part = b.op("Slice", [h, b.ints([0]), end, b.ints([2])])
    b.output(b.op("ReduceMean", [b.conv(part, 8, 4, name="c2")], axes=[2, 3]))
    analysis = analyze(load(b.model()))
    assert _group(analysis, "c1").prunable


def test_slice_with_runtime_bounds_on_the_channels_blocks():
    b = GraphBuilder(opset=13)
    x = b.input(["N", 3, 6, 6])
    end = b.input([1], name="end", dtype=TensorProto.INT64)
    h = b.conv(x, 3, 8, name="c1")
    part = b.op("Slice", [h, b.init(np.array([0], np.int64)), end, b.ints([1])])
    b.output(b.op("ReduceMean", [part], axes=[1, 2, 3]))
    group = _group(analyze(load(b.model())), "c1")
    assert not group.prunable
    assert any("starts/ends are not constant" in r for r in group.reasons)
