"""concat: Concat on the channel axis (layouts one after the other) or beside it (merged)."""

from __future__ import annotations

from onnxprune.analysis import analyze
from tests.builders import GraphBuilder
from tests.oracle import load, node_input_shape, prune_and_check


def _group(analysis, source: str):
    return next(g for g in analysis.groups if g.sources[0].node == source)


def test_channel_concat_keeps_untracked_inputs_as_fixed_positions():
    """Concat(conv a (8), the 3-channel image, conv b (6)) -> conv head: the image's
    channels are never pruned, a's and b's are."""
    b = GraphBuilder(opset=17)
    x = b.input(["N", 3, 6, 6])
    a = b.op("Relu", [b.conv(x, 3, 8, name="a")])
    c = b.op("Relu", [b.conv(x, 3, 6, name="b")])
    joined = b.op("Concat", [a, x, c], axis=1)
    b.output(b.conv(joined, 17, 4, name="head"))
    checked = prune_and_check(b.model(), 0.4)
    kept_a = checked.plan.kept[_group(checked.analysis, "a").index]
    kept_b = checked.plan.kept[_group(checked.analysis, "b").index]
    assert kept_a + kept_b < 14
    assert node_input_shape(checked.pruned, "head", 1)[1] == kept_a + 3 + kept_b


def test_concat_beside_the_channels_merges_the_inputs_groups():
    b = GraphBuilder(opset=17)
    x = b.input(["N", 3, 6, 6])
    joined = b.op("Concat", [b.conv(x, 3, 8, name="a"), b.conv(x, 3, 8, name="b")], axis=3)
    b.output(b.conv(joined, 8, 4, name="head"))
    checked = prune_and_check(b.model(), 0.4)
    group = _group(checked.analysis, "a")
    assert {s.node for s in group.sources} == {"a", "b"}
    kept = checked.plan.kept[group.index]
    assert kept < 8
    assert node_input_shape(checked.pruned, "a", 1)[0] == kept
    assert node_input_shape(checked.pruned, "b", 1)[0] == kept


def test_concat_of_inputs_with_channels_on_different_axes_blocks():
    """a [N, 4, 4, 4] (channels on 1) and Transpose(b) (channels on 2), joined on axis 1."""
    b = GraphBuilder(opset=17)
    x = b.input(["N", 3, 4, 4])
    turned = b.op("Transpose", [b.conv(x, 3, 4, name="b")], perm=[0, 2, 1, 3])
    joined = b.op("Concat", [b.conv(x, 3, 4, name="a"), turned], axis=1)
    b.output(b.conv(joined, 8, 2, name="head"))
    analysis = analyze(load(b.model()))
    for source in ("a", "b"):
        group = _group(analysis, source)
        assert not group.prunable
        assert any("inputs carry channels on different axes" in r for r in group.reasons)


def test_concat_beside_the_channels_with_a_runtime_untracked_input_blocks():
    b = GraphBuilder(opset=17)
    x = b.input(["N", 3, 4, 4])
    y = b.input(["N", 8, 2, 4], name="y")
    joined = b.op("Concat", [b.conv(x, 3, 8, name="a"), y], axis=2)
    b.output(b.conv(joined, 8, 2, name="head"))
    group = _group(analyze(load(b.model())), "a")
    assert not group.prunable
    assert any("not all tracked" in r for r in group.reasons)
