"""ShuffleNet's channel shuffle ``Reshape(N, g, C/g, H, W) -> Transpose(0, 2, 1, 3, 4) ->
Reshape(N, C, H, W)``: channel ``j`` of every group is one unit, so each group loses the
same channels and the kept ones keep their order through the transpose; both Reshape
targets are patched. Checked by the masked oracle."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper

from onnxprune.analysis import analyze
from tests.builders import GraphBuilder
from tests.oracle import load, node_input_shape, prune_and_check

S = 6  # spatial size


def _target(b: GraphBuilder, x: str, dims: list[int], dynamic: bool) -> str:
    if not dynamic:
        return b.ints([0, *dims])
    n = b.op("Unsqueeze", [b.op("Gather", [b.op("Shape", [x]), b.init(np.int64(0))], axis=0),
                           b.ints([0])])
    return b.op("Concat", [n, b.ints(dims)], axis=0)


def shuffle(b: GraphBuilder, x: str, channels: int, groups: int, dynamic: bool) -> str:
    x = b.op("Reshape", [x, _target(b, x, [groups, channels // groups, S, S], dynamic)],
             name="split_groups")
    x = b.op("Transpose", [x], perm=[0, 2, 1, 3, 4])
    return b.op("Reshape", [x, _target(b, x, [channels, S, S], dynamic)], name="merge_groups")


def shuffle_model(channels: int = 12, groups: int = 2, dynamic: bool = False) -> GraphBuilder:
    b = GraphBuilder(opset=17)
    x = b.input(["N", 3, S, S])
    h = b.op("Relu", [b.conv(x, 3, channels, name="conv1")])
    h = shuffle(b, h, channels, groups, dynamic)
    b.output(b.conv(h, channels, 4, name="conv2"))
    return b


@pytest.mark.parametrize(("groups", "dynamic"), [(2, False), (3, False), (4, True)],
                         ids=["g2", "g3", "g4_dynamic_batch"])
def test_shuffle_prunes_the_same_channels_in_every_group(groups, dynamic):
    channels = 12
    checked = prune_and_check(shuffle_model(channels, groups, dynamic).model(), 0.3)
    group = next(g for g in checked.analysis.prunable_groups if g.sources[0].node == "conv1")
    kept = checked.plan.kept[group.index]
    per_group = channels // groups
    assert group.size == per_group and group.unit_size == groups
    assert f"{per_group} channels in each of {groups} shuffled groups" in group.description
    assert kept < per_group
    assert node_input_shape(checked.pruned, "conv1", 1)[0] == kept * groups
    assert node_input_shape(checked.pruned, "conv2", 1)[1] == kept * groups
    if not dynamic:
        inits = {t.name: numpy_helper.to_array(t) for t in checked.pruned.graph.initializer}
        targets = {n.name: inits[n.input[1]].tolist() for n in checked.pruned.graph.node
                   if n.op_type == "Reshape"}
        assert targets["split_groups"] == [0, groups, kept, S, S]
        assert targets["merge_groups"] == [0, kept * groups, S, S]


def test_removed_channels_are_the_same_index_in_every_group():
    checked = prune_and_check(shuffle_model(12, 3).model(), 0.3)
    w = numpy_helper.to_array(next(t for t in checked.original.graph.initializer
                                   if t.name == checked.original.graph.node[0].input[1]))
    pruned = numpy_helper.to_array(next(t for t in checked.pruned.graph.initializer
                                        if t.name == node_name_input(checked.pruned, "conv1")))
    kept_rows = [r for r in range(12) if any(np.array_equal(w[r], p) for p in pruned)]
    within = [sorted(r % 4 for r in kept_rows if r // 4 == g) for g in range(3)]
    assert within[0] == within[1] == within[2] and len(within[0]) < 4


def node_name_input(model, name: str) -> str:
    return next(n for n in model.graph.node if n.name == name).input[1]


def test_shufflenet_v2_unit_with_split_after_the_shuffle():
    """Concat(branch1, branch2) -> shuffle -> Split in halves -> two convs."""
    b = GraphBuilder(opset=17)
    x = b.input(["N", 3, S, S])
    left = b.op("Relu", [b.conv(x, 3, 8, name="left")])
    right = b.op("Relu", [b.conv(x, 3, 8, name="right")])
    h = shuffle(b, b.op("Concat", [left, right], axis=1), 16, 2, False)
    first, second = b.op("Split", [h, b.ints([8, 8])], n_out=2, axis=1)
    b.output(b.op("Add", [b.conv(first, 8, 4, name="head1"), b.conv(second, 8, 4,
                                                                    name="head2")]))
    checked = prune_and_check(b.model(), 0.3)
    assert any(checked.plan.kept[g.index] < g.size for g in checked.analysis.prunable_groups)


def test_a_transpose_that_does_not_swap_the_groups_is_no_shuffle():
    """``(g, C/g)`` then a different permutation: the head rule, not the shuffle."""
    b = GraphBuilder(opset=17)
    x = b.input(["N", 3, S, S])
    h = b.op("Relu", [b.conv(x, 3, 12, name="conv1")])
    h = b.op("Reshape", [h, b.ints([0, 2, 6, S, S])])
    h = b.op("Transpose", [h], perm=[0, 1, 2, 4, 3])
    b.output(h)
    group = analyze(load(b.model())).groups[0]
    assert "shuffled" not in group.description
