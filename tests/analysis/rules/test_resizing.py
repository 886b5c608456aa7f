"""resizing: Pad, Resize, Expand and Tile pass, patch or block the channel layout."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, numpy_helper

from onnxprune.analysis import analyze
from tests.builders import GraphBuilder
from tests.oracle import load, node_input_shape, prune_and_check


def _group(analysis, source: str):
    return next(g for g in analysis.groups if g.sources[0].node == source)


def _blocked_with(model, source: str, reason: str) -> None:
    group = _group(analyze(load(model)), source)
    assert not group.prunable
    assert any(reason in r for r in group.reasons), group.reasons


def _conv_op_conv(op: str, inputs: list, batch="N", **attrs) -> GraphBuilder:
    """x -> conv c1 (8) -> ``op`` -> conv c2; ``inputs`` follow the conv output."""
    b = GraphBuilder(opset=18)
    x = b.input([batch, 3, 4, 4])
    h = b.op(op, [b.op("Relu", [b.conv(x, 3, 8, name="c1")]), *inputs(b)], **attrs)
    b.output(b.conv(h, 8, 2, name="c2"))
    return b


def test_pad_beside_the_channels_passes_through():
    b = _conv_op_conv("Pad", lambda b: [b.ints([0, 0, 1, 1, 0, 0, 1, 1])])
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "c2", 1)[1] < 8


@pytest.mark.parametrize(("pads", "reason"), [
    ("channel", "pads the channel axis"), ("runtime", "pads are not constant")])
def test_pad_on_the_channels_or_with_runtime_pads_blocks(pads, reason):
    def inputs(b):
        if pads == "runtime":
            return [b.input([8], name="pads", dtype=TensorProto.INT64)]
        return [b.ints([0, 1, 0, 0, 0, 0, 0, 0])]
    _blocked_with(_conv_op_conv("Pad", inputs).model(), "c1", reason)


def test_resize_with_sizes_patches_the_channel_size():
    """Resize by constant sizes [1, 8, 8, 8]: the channel entry becomes the kept count."""
    b = _conv_op_conv("Resize", lambda b: ["", "", b.ints([1, 8, 8, 8])], batch=1,
                      mode="nearest")
    checked = prune_and_check(b.model(), 0.4, batches=(1,))
    kept = node_input_shape(checked.pruned, "c2", 1)[1]
    resize = next(n for n in checked.pruned.graph.node if n.op_type == "Resize")
    sizes = {t.name: numpy_helper.to_array(t) for t in checked.pruned.graph.initializer}
    assert kept < 8 and sizes[resize.input[3]].tolist() == [1, kept, 8, 8]


def test_resize_scaling_the_channels_blocks():
    b = _conv_op_conv("Resize", lambda b: ["", b.init(np.array([1, 2, 2, 2], np.float32))],
                      mode="nearest")
    _blocked_with(b.model(), "c1", "resizes the channel axis")


def test_expand_of_the_spatial_dims_patches_a_constant_channel_entry():
    """conv -> GlobalAveragePool [N, 8, 1, 1] -> Expand to [1, 8, 4, 4] -> conv: the 8 of
    the target becomes the kept count."""
    b = GraphBuilder(opset=17)
    x = b.input(["N", 3, 4, 4])
    h = b.op("GlobalAveragePool", [b.op("Relu", [b.conv(x, 3, 8, name="c1")])])
    h = b.op("Expand", [h, b.ints([1, 8, 4, 4])])
    b.output(b.conv(h, 8, 2, name="c2"))
    checked = prune_and_check(b.model(), 0.4)
    kept = node_input_shape(checked.pruned, "c2", 1)[1]
    assert kept < 8
    expand = next(n for n in checked.pruned.graph.node if n.op_type == "Expand")
    shapes = {t.name: numpy_helper.to_array(t) for t in checked.pruned.graph.initializer}
    assert shapes[expand.input[1]].tolist() == [1, kept, 4, 4]


def test_expand_growing_the_channel_axis_blocks():
    b = GraphBuilder(opset=17)
    x = b.input(["N", 3, 4, 4])
    h = b.op("Expand", [b.conv(x, 3, 1, name="c1"), b.ints([1, 3, 4, 4])])
    b.output(b.conv(h, 3, 2, name="c2"))
    _blocked_with(b.model(), "c1", "expands the channel axis")


def test_tile_repeats_the_channel_ids():
    """Tile [1, 2, 1, 1]: c2 reads every kept channel twice."""
    b = GraphBuilder(opset=17)
    x = b.input(["N", 3, 4, 4])
    h = b.op("Tile", [b.op("Relu", [b.conv(x, 3, 8, name="c1")]), b.ints([1, 2, 1, 1])])
    b.output(b.conv(h, 16, 2, name="c2"))
    checked = prune_and_check(b.model(), 0.4)
    kept = checked.plan.kept[_group(checked.analysis, "c1").index]
    assert kept < 8 and node_input_shape(checked.pruned, "c2", 1)[1] == 2 * kept


def test_tile_with_runtime_repeats_blocks():
    b = GraphBuilder(opset=17)
    x = b.input(["N", 3, 4, 4])
    repeats = b.input([4], name="repeats", dtype=TensorProto.INT64)
    b.output(b.op("Tile", [b.conv(x, 3, 8, name="c1"), repeats]))
    _blocked_with(b.model(), "c1", "repeats are not constant")
