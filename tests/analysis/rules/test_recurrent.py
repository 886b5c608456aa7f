"""Unit tests of ``analysis/rules/recurrent.py`` (LSTM, GRU, RNN) on hand-built graphs.

The oracle runs of every variant are in ``tests/analysis/test_recurrent*.py``; these
tests pin what the rule writes for each numbered case: 1 the couplings and output
layouts of the hidden units, 2 input features, 3 initial states (Expand zeros,
non-zero fills), 4 R's own layout, 5 non-constant weights; and the MACs.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from tests.builders import GraphBuilder
from tests.oracle import node_input_shape, prune_and_check
from tests.rule_checks import (
    analyzed,
    coupled,
    group_of,
    layout_ids,
    macs,
    reasons,
    removing,
    source_ids,
)

F, HID, T = 5, 6, 4
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
SEQS = ({"T": T},)


def _cell(b: GraphBuilder, op: str, x: str, *, state: str = "", peephole: str = "",
          r: str | None = None, n_out: int = 2) -> list[str]:
    g = GATES[op]
    inputs = [x, b.weight(1, g * HID, F), r or b.weight(1, g * HID, HID),
              b.weight(1, 2 * g * HID, scale=0.1), "", state]
    if op == "LSTM" and (state or peephole):
        inputs += [state, peephole]
    while inputs and inputs[-1] == "":
        inputs.pop()
    return b.op(op, inputs, n_out=n_out, name="rnn", hidden_size=HID)


def _input_name(analysis, node_name: str, index: int) -> str:
    return next(n for n in analysis.model.graph if n.name == node_name).inputs[index].name


def _head(b: GraphBuilder, y: str) -> None:
    b.output(b.op("MatMul", [b.op("Squeeze", [y, b.ints([1])]), b.weight(HID, 3)],
                  name="head"))


# -- cases 1 and 4 -----------------------------------------------------------------------
@pytest.mark.parametrize("op", sorted(GATES))
def test_hidden_units_couple_every_gate_block_and_reach_every_output(op):
    b = GraphBuilder(opset=18)
    n_out = 3 if op == "LSTM" else 2
    outs = _cell(b, op, b.input(["T", "N", F]), n_out=n_out)
    _head(b, outs[0])
    for extra in outs[1:]:
        b.output(b.op("MatMul", [extra, b.weight(HID, 2)]))
    analysis = analyzed(b.model())
    ids = source_ids(analysis, "rnn")
    g = GATES[op]
    tiled = [int(i) for i in np.tile(ids, g)]
    assert coupled(analysis, "rnn") == {
        (1, 1): ("out", tiled), (2, 1): ("out", tiled), (2, 2): ("in", ids),
        (3, 1): ("bias", [int(i) for i in np.tile(ids, 2 * g)])}
    assert layout_ids(analysis, outs[0]) == (3, ids)
    for extra in outs[1:]:
        assert layout_ids(analysis, extra) == (2, ids)
    r_name = _input_name(analysis, "rnn", 2)
    assert layout_ids(analysis, r_name) == (2, ids)  # case 4
    assert group_of(analysis, "rnn").description.endswith(f"{op}: {HID} hidden units")


# -- case 2 ------------------------------------------------------------------------------
def test_input_features_are_coupled_to_w():
    b = GraphBuilder(opset=18)
    x = b.input(["T", "N", 4])
    feats = b.op("Relu", [b.op("MatMul", [x, b.weight(4, F)], name="proj")])
    outs = _cell(b, "GRU", feats)
    _head(b, outs[0])
    analysis = analyzed(b.model())
    assert coupled(analysis, "rnn")[(1, 2)] == ("in", source_ids(analysis, "proj"))
    checked = prune_and_check(b.model(), 0.4, dims=SEQS)
    kept = node_input_shape(checked.pruned, "proj", 1)[1]
    assert node_input_shape(checked.pruned, "rnn", 1)[2] == kept
    assert checked.plan.removed_units.any()


def test_channels_on_the_batch_axis_of_x_are_blocked():
    """A Conv1d output ``[N, C, L]`` transposed to ``[L, C, N]``: the channels sit on the
    batch axis of the recurrent op."""
    b = GraphBuilder(opset=18)
    x = b.input([F, 3, T])
    h = b.op("Conv", [x, b.weight(7, 3, 1)], name="c1")  # [F, 7, T]
    outs = _cell(b, "RNN", b.op("Transpose", [h], perm=[2, 1, 0]))  # [T, 7, F]
    _head(b, outs[0])
    analysis = analyzed(b.model())
    assert "RNN 'rnn': channels are not on the input feature axis" in reasons(analysis, "c1")
    assert group_of(analysis, "rnn").prunable


# -- case 3: initial states ----------------------------------------------------------------
def _expand_zeros(b: GraphBuilder, x: str, fill: float) -> str:
    n = b.op("Unsqueeze", [b.op("Gather", [b.op("Shape", [x]), b.init(np.int64(1))], axis=0),
                           b.ints([0])])
    dims = b.op("Concat", [b.ints([1]), n, b.ints([HID])], axis=0)
    return b.op("Expand", [b.init(np.float32(fill)), dims], name="zeros")


def test_zeros_built_by_expand_are_patched():
    b = GraphBuilder(opset=18)
    x = b.input(["T", "N", F])
    outs = _cell(b, "GRU", x, state=_expand_zeros(b, x, 0.0))
    _head(b, outs[0])
    analysis = analyzed(b.model())
    assert group_of(analysis, "rnn").prunable
    assert next(n for n in analysis.model.graph if n.name == "rnn").meta[
        "onnxprune.state_inputs"] == [5]
    checked = prune_and_check(b.model(), 0.4, dims=SEQS)
    assert node_input_shape(checked.pruned, "head", 1)[0] < HID


@pytest.mark.parametrize("builder", ["expand", "constant_of_shape"])
def test_a_state_filled_with_non_zeros_blocks(builder):
    b = GraphBuilder(opset=18)
    x = b.input(["T", "N", F])
    if builder == "expand":
        state = _expand_zeros(b, x, 0.5)
    else:
        state = b.op("ConstantOfShape", [b.ints([1, 2, HID])],
                     value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]))
    outs = _cell(b, "GRU", x, state=state)
    _head(b, outs[0])
    analysis = analyzed(b.model())
    assert "GRU 'rnn': initial state" in reasons(analysis, "rnn")
    assert "is computed at run time" in reasons(analysis, "rnn")


def test_a_constant_initial_state_is_sliced_on_the_hidden_axis():
    b = GraphBuilder(opset=18)
    x = b.input(["T", 2, F])
    h0 = b.weight(1, 2, HID)
    outs = _cell(b, "LSTM", x, state=h0)
    _head(b, outs[0])
    analysis = analyzed(b.model())
    ids = source_ids(analysis, "rnn")
    assert coupled(analysis, "rnn")[(5, 2)] == ("const", ids)
    assert coupled(analysis, "rnn")[(6, 2)] == ("const", ids)


# -- case 5 and peepholes ----------------------------------------------------------------
def test_a_runtime_recurrence_weight_blocks_and_creates_no_units():
    b = GraphBuilder(opset=18)
    x = b.input(["T", "N", 4])
    feats = b.op("MatMul", [x, b.weight(4, F)], name="proj")
    r = b.input([1, HID, HID], name="r_dynamic")
    outs = _cell(b, "RNN", feats, r=r)
    b.output(outs[0])
    analysis = analyzed(b.model())
    assert "RNN 'rnn': W, R and B must be constant initializers" in reasons(analysis, "proj")
    assert [s.node for s in analysis.ctx.sources] == ["proj"]


def test_runtime_peepholes_block_the_units():
    b = GraphBuilder(opset=18)
    x = b.input(["T", "N", F])
    outs = _cell(b, "LSTM", x, peephole=b.op("Abs", [b.input([1, 3 * HID], name="p")]))
    _head(b, outs[0])
    analysis = analyzed(b.model())
    assert "LSTM 'rnn': peepholes P are not constant" in reasons(analysis, "rnn")


# -- MACs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("op", sorted(GATES))
def test_macs_count_gates_hidden_units_and_inputs(op):
    b = GraphBuilder(opset=18)
    outs = _cell(b, op, b.input([T, 1, F]))
    _head(b, outs[0])
    analysis = analyzed(b.model())
    g = GATES[op]
    assert macs(analysis, "rnn") == T * g * HID * (F + HID)
    kept = HID - 2
    assert macs(analysis, "rnn", removing(analysis, "rnn", 2)) == T * g * kept * (F + kept)
