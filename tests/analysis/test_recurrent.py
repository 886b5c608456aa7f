"""LSTM / GRU / RNN hidden units on tiny graphs, checked by the oracle.

The masked twin also masks R's input axis (the recurrence from removed units to kept
ones); without that the pruned model would not equal the masked original.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxprune.analysis import analyze
from tests.builders import GraphBuilder
from tests.oracle import initializer_shapes, load, node_input_shape, prune_and_check

FEATURES, HID = 6, 12
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
SEQS = ({"T": 7}, {"T": 33})


def recurrent(op: str, directions: int = 1, state: str = "none", **attrs) -> GraphBuilder:
    """X [T, N, FEATURES] -> op -> Y [T, D, N, H] -> [T, N, D*H] -> MatMul head."""
    b = GraphBuilder(opset=18)
    x = b.input(["T", "N", FEATURES])
    g = GATES[op]
    inputs = [x, b.weight(directions, g * HID, FEATURES), b.weight(directions, g * HID, HID),
              b.weight(directions, 2 * g * HID, scale=0.1), ""]
    if state == "zeros":  # zeros built at run time, as the torch exporters write them
        shape = b.op("Shape", [x])
        n = b.op("Unsqueeze", [b.op("Gather", [shape, b.init(np.int64(1))], axis=0),
                               b.ints([0])])
        dims = b.op("Concat", [b.ints([directions]), n, b.ints([HID])], axis=0)
        inputs.append(b.op("ConstantOfShape", [dims],
                           value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0])))
    if op == "LSTM" and state == "zeros":
        inputs.append(inputs[-1])  # initial_c = the same zeros
    direction = "bidirectional" if directions == 2 else "forward"
    outs = b.op(op, inputs, n_out=2, name="rnn", hidden_size=HID, direction=direction, **attrs)
    y = b.op("Transpose", [outs[0]], perm=[0, 2, 1, 3])
    target = b.ints([0, 0, directions * HID])
    y = b.op("Reshape", [y, target])
    b.output(b.op("MatMul", [y, b.weight(directions * HID, 5)], name="head"))
    b.output(b.op("MatMul", [outs[1], b.weight(HID, 3)], name="head_h"))
    return b


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("state", ["none", "zeros"])
def test_hidden_units_pass_masked_oracle(op, state):
    extra = {"linear_before_reset": 1} if op == "GRU" else {}
    checked = prune_and_check(recurrent(op, state=state, **extra).model(), 0.3, dims=SEQS)
    (group,) = checked.analysis.prunable_groups
    kept = checked.plan.kept[group.index]
    g = GATES[op]
    assert kept < HID and f"{op}: {HID} hidden units" in group.description
    node = next(n for n in checked.pruned.graph.node if n.op_type == op)
    shapes = initializer_shapes(checked.pruned)
    assert shapes[node.input[1]] == (1, g * kept, FEATURES)
    assert shapes[node.input[2]] == (1, g * kept, kept)
    assert shapes[node.input[3]] == (1, 2 * g * kept)
    assert helper.get_attribute_value(
        next(a for a in node.attribute if a.name == "hidden_size")) == kept
    assert node_input_shape(checked.pruned, "head", 1) == (kept, 5)


def test_bidirectional_lstm_shares_units_across_directions():
    checked = prune_and_check(recurrent("LSTM", directions=2).model(), 0.3, dims=SEQS)
    kept = checked.plan.kept[checked.analysis.prunable_groups[0].index]
    assert node_input_shape(checked.pruned, "head", 1) == (2 * kept, 5)
    assert node_input_shape(checked.pruned, "rnn", 2) == (2, 4 * kept, kept)


def test_gate_blocks_are_sliced_per_gate():
    """Unit j keeps row j of every gate block of W (not the first rows of W)."""
    model = recurrent("GRU").model()
    checked = prune_and_check(model, 0.5)
    removed = checked.plan.removed_units
    units = checked.analysis.prunable_groups[0].units
    keep = ~removed[units]
    w = onnx.numpy_helper.to_array(next(t for t in model.graph.initializer
                                        if t.name == model.graph.node[0].input[1]))
    pruned_node = next(n for n in checked.pruned.graph.node if n.op_type == "GRU")
    w_pruned = onnx.numpy_helper.to_array(next(t for t in checked.pruned.graph.initializer
                                               if t.name == pruned_node.input[1]))
    expected = np.concatenate([w[:, k * HID:(k + 1) * HID][:, keep] for k in range(3)], axis=1)
    np.testing.assert_array_equal(w_pruned, expected)


def test_initial_state_from_a_graph_input_blocks_the_units():
    b = GraphBuilder(opset=18)
    x = b.input(["T", "N", FEATURES])
    h0 = b.input([1, "N", HID], name="h0")
    outs = b.op("GRU", [x, b.weight(1, 3 * HID, FEATURES), b.weight(1, 3 * HID, HID), "", "", h0],
                n_out=2, hidden_size=HID)
    b.output(b.op("MatMul", [outs[1], b.weight(HID, 3)]))
    analysis = analyze(load(b.model()))
    group = next(g for g in analysis.groups if g.sources[0].kind == "GRU hidden")
    assert not group.prunable
    assert any("initial state 'h0' is computed at run time" in r for r in group.reasons)


def test_oracle_needs_the_recurrence_cut():
    """Without masking R's input axis, the masked original still feeds removed units'
    states into kept ones and differs from the pruned model: the R mask is what makes
    the oracle's equality meaningful here."""
    import onnx_ir as ir

    from onnxprune.importance import score_units
    from onnxprune.planning import PlanOptions, make_plan
    from onnxprune.rewrite import apply_plan, channel_masks, masked_model
    from tests.oracle import feeds_for, rel_diff, session

    model = load(recurrent("LSTM").model())
    original = ir.serde.serialize_model(model)
    analysis = analyze(model)
    plan = make_plan(analysis, score_units(analysis), PlanOptions(0.3))
    masks = channel_masks(analysis, plan.removed_units)
    r_name = next(n.input[2] for n in original.graph.node if n.op_type == "LSTM")
    assert r_name in masks and masks[r_name][0] == 2
    uncut = {k: v for k, v in masks.items() if k != r_name}
    apply_plan(analysis, plan.removed_units)
    pruned = session(ir.serde.serialize_model(analysis.model))
    feeds = feeds_for(pruned, 2, 0, {"T": 7})
    got = pruned.run(None, feeds)[0]
    assert rel_diff(got, session(masked_model(original, masks)).run(None, feeds)[0]) <= 1e-4
    assert rel_diff(got, session(masked_model(original, uncut)).run(None, feeds)[0]) > 1e-3


def test_lstm_peepholes_are_sliced_per_gate():
    b = GraphBuilder(opset=18)
    x = b.input(["T", "N", FEATURES])
    inputs = [x, b.weight(1, 4 * HID, FEATURES), b.weight(1, 4 * HID, HID),
              b.weight(1, 8 * HID, scale=0.1), "", "", "", b.weight(1, 3 * HID, scale=0.1)]
    outs = b.op("LSTM", inputs, n_out=3, name="rnn", hidden_size=HID)
    y = b.op("Squeeze", [outs[0], b.ints([1])])  # [T, N, H]
    b.output(b.op("MatMul", [y, b.weight(HID, 5)], name="head"))
    checked = prune_and_check(b.model(), 0.3, dims=SEQS)
    kept = checked.plan.kept[checked.analysis.prunable_groups[0].index]
    assert kept < HID
    assert node_input_shape(checked.pruned, "rnn", 7) == (1, 3 * kept)
    assert node_input_shape(checked.pruned, "head", 1) == (kept, 5)
