"""axis_moves: Transpose, Squeeze and Unsqueeze move the channel axis."""

from __future__ import annotations

import pytest
from onnx import TensorProto

from onnxprune.analysis import analyze
from tests.builders import GraphBuilder
from tests.oracle import load, node_input_shape, prune_and_check


def _group(analysis, source: str):
    return next(g for g in analysis.groups if g.sources[0].node == source)


@pytest.mark.parametrize("perm", [[0, 2, 3, 1], None], ids=["perm", "reversed"])
def test_transpose_moves_the_channel_axis(perm):
    """conv [N, 8, 4, 4] -> Transpose -> MatMul over the channels (now last or first)."""
    b = GraphBuilder(opset=17)
    x = b.input([1, 3, 4, 4])
    h = b.conv(x, 3, 8, name="c1")
    t = b.op("Transpose", [h], **({"perm": perm} if perm else {}))
    # reversed: [4, 4, 8, 1] -> channels on axis 2; MatMul needs them last
    if perm is None:
        t = b.op("Transpose", [t], perm=[0, 1, 3, 2])
    b.output(b.op("MatMul", [t, b.weight(8, 5)], name="fc"))
    checked = prune_and_check(b.model(), 0.4, batches=(1,))
    kept = checked.plan.kept[_group(checked.analysis, "c1").index]
    assert kept < 8
    assert node_input_shape(checked.pruned, "fc", 1) == (kept, 5)


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_shifts_the_axis_past_squeezed_dims(opset):
    """conv -> GlobalAveragePool [N, 8, 1, 1] -> Squeeze(2, 3) -> Gemm; axes as attribute
    before opset 13, as input from 13."""
    b = GraphBuilder(opset=opset)
    x = b.input(["N", 3, 6, 6])
    h = b.op("GlobalAveragePool", [b.conv(x, 3, 8, name="c1")])
    h = b.op("Squeeze", [h], axes=[2, 3]) if opset < 13 else \
        b.op("Squeeze", [h, b.ints([2, 3])])
    b.output(b.op("Gemm", [h, b.weight(8, 4)], name="fc"))
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "fc", 1)[0] < 8


def test_squeezing_the_channel_axis_blocks():
    b = GraphBuilder(opset=17)
    x = b.input(["N", 3, 6, 6])
    h = b.conv(x, 3, 1, name="c1")
    b.output(b.op("Squeeze", [h, b.ints([1])]))
    group = _group(analyze(load(b.model())), "c1")
    assert not group.prunable
    assert any("squeezes the channel axis" in r for r in group.reasons)


def test_squeeze_with_runtime_axes_blocks():
    b = GraphBuilder(opset=17)
    x = b.input(["N", 3, 1, 1])
    axes = b.input([2], name="axes", dtype=TensorProto.INT64)
    h = b.conv(x, 3, 8, k=1, name="c1")
    b.output(b.op("Squeeze", [h, axes]))
    group = _group(analyze(load(b.model())), "c1")
    assert not group.prunable
    assert any("axes are not constant" in r for r in group.reasons)


def test_unsqueeze_shifts_the_axis_past_inserted_dims():
    """Gemm [N, 8] -> Unsqueeze(0) [1, N, 8] -> MatMul: the channels stay last."""
    b = GraphBuilder(opset=17)
    x = b.input(["N", 6])
    h = b.op("Relu", [b.op("Gemm", [x, b.weight(6, 8), b.weight(8)], name="fc1")])
    h = b.op("Unsqueeze", [h, b.ints([0])])
    b.output(b.op("MatMul", [h, b.weight(8, 3)], name="fc2"))
    checked = prune_and_check(b.model(), 0.4)
    kept = checked.plan.kept[_group(checked.analysis, "fc1").index]
    assert kept < 8
    assert node_input_shape(checked.pruned, "fc2", 1) == (kept, 3)


def test_unsqueeze_with_runtime_axes_blocks():
    b = GraphBuilder(opset=17)
    x = b.input(["N", 6])
    axes = b.input([1], name="axes", dtype=TensorProto.INT64)
    h = b.op("Gemm", [x, b.weight(6, 8)], name="fc1")
    b.output(b.op("Unsqueeze", [h, axes]))
    group = _group(analyze(load(b.model())), "fc1")
    assert not group.prunable
    assert any("axes or rank unknown" in r for r in group.reasons)
