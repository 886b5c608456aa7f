"""GRU and LSTM rewrites as the exporters write them: every variant runs in ONNX Runtime
after pruning and equals the masked original.

Variants: GRU ``linear_before_reset`` 0/1, forward/bidirectional, no initial state, a
constant one, or zeros built at run time; LSTM with peepholes ``P``, initial
``initial_h``/``initial_c`` and ``layout=1`` (batch first); and the multi-layer form of
the torch exporters, where one ``ConstantOfShape([L*D, N, H])`` of zeros is sliced per
layer (the hidden entry must be patched once per layer, with that layer's kept count).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.analysis import analyze
from tests.builders import GraphBuilder
from tests.oracle import load, prune_and_check

FEATURES, HID, VOCAB = 6, 12, 40
GATES = {"LSTM": 4, "GRU": 3}
SEQS = ({"T": 7},)


def _zeros(b: GraphBuilder, x: str, leading: int, batch_axis: int, layout: int) -> str:
    """ConstantOfShape of [leading, N, HID] (layout 0) or [N, leading, HID] (layout 1)."""
    shape = b.op("Shape", [x])
    n = b.op("Unsqueeze", [b.op("Gather", [shape, b.init(np.int64(batch_axis))], axis=0),
                           b.ints([0])])
    pieces = [b.ints([leading]), n] if layout == 0 else [n, b.ints([leading])]
    dims = b.op("Concat", [*pieces, b.ints([HID])], axis=0)
    return b.op("ConstantOfShape", [dims],
                value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]))


def recurrent(op: str, directions: int = 1, state: str = "none", layout: int = 0,
              peepholes: bool = False, **attrs) -> GraphBuilder:
    """X -> op -> Y -> MatMul head, and Y_h -> MatMul head (both reach outputs)."""
    b = GraphBuilder(opset=18)
    x = b.input(["T", "N", FEATURES] if layout == 0 else ["N", "T", FEATURES])
    g = GATES[op]
    inputs = [x, b.weight(directions, g * HID, FEATURES), b.weight(directions, g * HID, HID),
              b.weight(directions, 2 * g * HID, scale=0.1), ""]
    state_shape = [directions, 1, HID] if layout == 0 else [1, directions, HID]
    if state == "zeros":
        inputs.append(_zeros(b, x, directions, 1 - layout, layout))
    elif state == "const":
        inputs.append(b.weight(*state_shape, scale=0.3))
    if op == "LSTM" and state != "none":
        inputs.append(b.weight(*state_shape, scale=0.3) if state == "const" else inputs[-1])
    if peepholes:
        inputs += [""] * (7 - len(inputs)) + [b.weight(directions, 3 * HID, scale=0.1)]
    direction = "bidirectional" if directions == 2 else "forward"
    outs = b.op(op, inputs, n_out=2, name="rnn", hidden_size=HID, direction=direction,
                layout=layout, **attrs)
    perm = [0, 2, 1, 3] if layout == 0 else [0, 1, 2, 3]
    y = b.op("Reshape", [b.op("Transpose", [outs[0]], perm=perm),
                         b.ints([0, 0, directions * HID])])
    b.output(b.op("MatMul", [y, b.weight(directions * HID, 5)], name="head"))
    b.output(b.op("MatMul", [outs[1], b.weight(HID, 3)], name="head_h"))
    return b


GRU_CASES = [
    pytest.param(lbr, d, state, id=f"lbr{lbr}_{'bi' if d == 2 else 'fwd'}_{state}")
    for lbr in (0, 1) for d in (1, 2) for state in ("none", "const", "zeros")
]


@pytest.mark.parametrize(("lbr", "directions", "state"), GRU_CASES)
def test_gru_rewrite_runs_and_matches_masked_original(lbr, directions, state):
    model = recurrent("GRU", directions, state, linear_before_reset=lbr).model()
    checked = prune_and_check(model, 0.3, dims=SEQS, batches=_batches(state))
    (group,) = checked.analysis.prunable_groups
    assert checked.plan.kept[group.index] < HID


def _batches(state: str) -> tuple[int, ...]:
    """A constant initial state fixes the batch size at 1."""
    return (1,) if state == "const" else (1, 3)


LSTM_CASES = [
    pytest.param(d, state, layout, peep,
                 id=f"{'bi' if d == 2 else 'fwd'}_{state}_layout{layout}"
                    f"{'_peepholes' if peep else ''}")
    for d in (1, 2) for state in ("none", "const", "zeros") for layout in (0, 1)
    for peep in (False, True)
]


@pytest.mark.parametrize(("directions", "state", "layout", "peepholes"), LSTM_CASES)
def test_lstm_rewrite_runs_and_matches_masked_original(directions, state, layout, peepholes):
    model = recurrent("LSTM", directions, state, layout, peepholes).model()
    if layout == 1:  # ONNX Runtime's CPU LSTM refuses layout=1: check with onnx.reference
        kept = _reference_check(model, 0.3, batch=1 if state == "const" else 2)
    else:
        checked = prune_and_check(model, 0.3, dims=SEQS, batches=_batches(state))
        kept = checked.plan.kept[checked.analysis.prunable_groups[0].index]
    assert kept < HID


def _reference_check(model, target: float, batch: int) -> int:
    """The masked oracle with ``onnx.reference`` instead of ONNX Runtime."""
    import onnx
    import onnx_ir as ir
    from onnx.reference import ReferenceEvaluator

    from onnxprune.importance import score_units
    from onnxprune.planning import PlanOptions, make_plan
    from onnxprune.rewrite import apply_plan, channel_masks, masked_model
    from tests.oracle import rel_diff

    loaded = load(model)
    original = ir.serde.serialize_model(loaded)
    analysis = analyze(loaded)
    plan = make_plan(analysis, score_units(analysis), PlanOptions(target))
    masks = channel_masks(analysis, plan.removed_units)
    apply_plan(analysis, plan.removed_units)
    pruned = ir.serde.serialize_model(analysis.model)
    onnx.checker.check_model(pruned)
    x = np.random.default_rng(0).standard_normal((batch, 7, FEATURES)).astype(np.float32)
    got = ReferenceEvaluator(pruned).run(None, {"x": x})
    want = ReferenceEvaluator(masked_model(original, masks)).run(None, {"x": x})
    for g, w in zip(got, want):
        assert g.shape == w.shape and rel_diff(g, w) <= 1e-4
    return plan.kept[analysis.prunable_groups[0].index]


def stacked(op: str, layers: int = 2, hidden: int = 24) -> GraphBuilder:
    """Embedding -> ``layers`` stacked RNN nodes -> last Y_h -> Gemm, with one zero
    initial state ``ConstantOfShape(Concat([layers], batch, [hidden]))`` sliced per layer
    (what torch.onnx writes for ``nn.GRU(num_layers=2)`` called without ``h0``)."""
    b = GraphBuilder(opset=17)
    ids = b.input(["N", "T"], name="ids", dtype=TensorProto.INT64)
    x = b.op("Transpose", [b.op("Gather", [b.weight(VOCAB, FEATURES), ids])], perm=[1, 0, 2])
    shape = b.op("Shape", [x])
    n = b.op("Unsqueeze", [b.op("Gather", [shape, b.init(np.int64(1))], axis=0), b.ints([0])])
    dims = b.op("Concat", [b.ints([layers]), n, b.ints([hidden])], axis=0)
    h0 = b.op("ConstantOfShape", [dims],
              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]))
    features, g = FEATURES, GATES[op]
    for i in range(layers):
        state = b.op("Slice", [h0, b.ints([i]), b.ints([i + 1]), b.ints([0])])
        inputs = [x, b.weight(1, g * hidden, features), b.weight(1, g * hidden, hidden),
                  b.weight(1, 2 * g * hidden, scale=0.1), "", state]
        inputs += [state] if op == "LSTM" else []
        extra = {"linear_before_reset": 1} if op == "GRU" else {}
        outs = b.op(op, inputs, n_out=2, name=f"{op.lower()}{i}", hidden_size=hidden, **extra)
        x, features = b.op("Squeeze", [outs[0], b.ints([1])]), hidden
    last = b.op("Squeeze", [outs[1], b.ints([0])])
    b.output(b.op("Gemm", [last, b.weight(5, hidden)], transB=1, name="head"))
    return b


@pytest.mark.parametrize("op", ["GRU", "LSTM"])
def test_shared_zero_state_is_patched_per_layer(op):
    """Both layers are pruned to different widths; each gets its own hidden entry."""
    model = stacked(op).model()
    checked = prune_and_check(model, 0.4, dims=SEQS, int_high={"ids": VOCAB})
    kept = {g.sources[0].node: checked.plan.kept[g.index]
            for g in checked.analysis.prunable_groups if g.sources[0].kind.endswith("hidden")}
    assert set(kept) == {f"{op.lower()}0", f"{op.lower()}1"}
    assert all(k < 24 for k in kept.values())
    hidden_entries = sorted(
        _hidden_entry(checked.pruned, n) for n in checked.pruned.graph.node
        if n.op_type == "ConstantOfShape")
    assert set(hidden_entries) == set(kept.values())  # LSTM: one copy each for h and c


def _hidden_entry(model, node) -> int:
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    concat = next(n for n in model.graph.node if node.input[0] in n.output)
    return int(np.ravel(inits[concat.input[2]])[0])


def test_state_literal_that_is_not_the_hidden_size_blocks_the_units():
    """A zeros state whose last entry is not ``hidden_size`` cannot be patched: blocked."""
    b = stacked("GRU", layers=1)
    concat = next(n for n in b.nodes if n.op_type == "Concat")
    wrong = b.ints([7])
    concat.input[2] = wrong
    analysis = analyze(load(b.model()))
    group = next(g for g in analysis.groups if g.sources[0].kind == "GRU hidden")
    assert not group.prunable
    assert any("initial state" in r for r in group.reasons)


@pytest.mark.parametrize("steps", [[], ["--steps", "1", "--data"]], ids=["plain", "calibrated"])
def test_compress_stacked_gru_runs(tmp_path, tmp_model, steps):
    """The field case: exit 8 (plain) / exit 1 (``--steps 1 --data``) before the fix."""
    from click.testing import CliRunner

    from onnxprune.cli import main

    path = tmp_model(stacked("GRU").model())
    data = tmp_path / "ids.npz"
    np.savez(data, ids=np.random.default_rng(0).integers(0, VOCAB, (16, 7)).astype(np.int64))
    args = ["compress", str(path), "--target", "0.3", "-o", str(tmp_path / "p.onnx"),
            *steps, *([str(data)] if steps else [])]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.onnx").is_file()
