"""Every layer trains: Clip in every opset form, the trainable share and its 90% guard."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from onnxprune.cli import main
from onnxprune.data import DataSource, model_input_specs
from onnxprune.errors import ExitCode, FrozenError
from onnxprune.graph.io import model_from_proto
from onnxprune.training import finetune
from onnxprune.training import legalize as legalize_module
from onnxprune.training.finetune import trainability
from onnxprune.training.legalize import legalize
from tests.builders import GraphBuilder
from tests.training.helpers import (
    feeds_for,
    hardswish_se_model,
    op_model,
    ort_gradient,
    outputs,
)
from tests.training.test_fixtures import perturbed


def source(model: onnx.ModelProto, samples: int = 64, seed: int = 0, **arrays) -> DataSource:
    specs = model_input_specs(model_from_proto(model))
    rng = np.random.default_rng(seed)
    data = {s.name: rng.standard_normal((samples, *s.shape[1:])).astype(np.float32)
            for s in specs}
    return DataSource.from_arrays({**data, **arrays}, specs)


@pytest.mark.parametrize("opset,form", [(11, "constant"), (11, "initializer"),
                                        (11, "computed"), (10, "attributes"),
                                        (13, "constant")])
def test_hardswish_clip_model_trains_every_layer_and_its_loss_falls(opset, form):
    teacher = hardswish_se_model(opset=opset, form=form)
    student = perturbed(teacher, scale=0.5)
    result = finetune(student, source(teacher), teacher=teacher, epochs=4, lr=5e-3,
                      batch_size=16, isolate=False)
    share = result.trainable_share
    assert share["fraction"] >= 0.99 and not result.frozen_nodes, result.frozen_nodes
    assert result.notes[0].startswith(f"trainable: {share['trainable']} of {share['total']}")
    (term,) = result.loss["terms"]
    assert term["kind"] == "kl" and term["reads"] != term["output"]  # the Softmax's input
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.7 * losses[0], losses
    assert result.export_diff < 1e-5
    # the exported model keeps the original opset and op structure
    assert result.model.opset_import[0].version == opset
    assert [n.op_type for n in result.model.graph.node] == \
        [n.op_type for n in teacher.graph.node]


@pytest.mark.parametrize("extra,attrs", [([0.0, 6.0], {}), ([-0.5], {}), (["", 0.5], {})],
                         ids=["both", "min_only", "max_only"])
def test_clip_rule_below_opset_12_is_max_min_with_exact_gradient(monkeypatch, extra, attrs):
    monkeypatch.setattr(legalize_module, "TRAINING_OPSET", 0)  # no conversion: the rule alone
    extra = [e if isinstance(e, str) else np.array(e, np.float32) for e in extra]
    model = op_model("Clip", opset=11, extra=extra, **attrs)
    feeds = feeds_for(model)
    legal = legalize(model, 3, feeds)
    ops = {n.op_type for n in legal.model.graph.node}
    assert "Clip" not in ops and ops & {"Max", "Min"} and legal.rewritten == {"Clip": 1}
    np.testing.assert_allclose(outputs(legal.model, feeds)[0], outputs(model, feeds)[0],
                               rtol=1e-6)
    projection = np.random.default_rng(0).standard_normal(outputs(model, feeds)[0].shape)
    grad = ort_gradient(model, feeds, "w0", projection)
    # the reference: ORT's own Clip gradient, which works from opset 12 on (finite
    # differences are too noisy across the many kinks of a clipped conv output)
    reference = ort_gradient(op_model("Clip", opset=13, extra=extra, **attrs), feeds, "w0",
                             projection)
    assert np.abs(grad).max() > 0.1
    np.testing.assert_allclose(grad, reference, rtol=1e-4, atol=1e-4)


def test_attribute_clip_of_opset_10_is_rewritten_with_its_bounds(monkeypatch):
    monkeypatch.setattr(legalize_module, "TRAINING_OPSET", 0)
    model = op_model("Clip", opset=10, min=-0.25, max=0.75)
    feeds = feeds_for(model)
    legal = legalize(model, 3, feeds)
    assert legal.rewritten == {"Clip": 1}
    np.testing.assert_allclose(outputs(legal.model, feeds)[0], outputs(model, feeds)[0])


def frozen_model() -> onnx.ModelProto:
    """Two convs (most of the weights) before GlobalLpPool, which ONNX Runtime 1.19 cannot
    differentiate and no rule rewrites, then a small Gemm."""
    b = GraphBuilder(opset=17, seed=0)
    x = b.input(["N", 3, 8, 8], name="x")
    h = b.op("Relu", [b.conv(x, 3, 16, name="conv1")])
    h = b.op("GlobalLpPool", [b.conv(h, 16, 16, name="conv2")], name="lp")
    y = b.op("Gemm", [b.op("Flatten", [h]), b.weight(4, 16), b.weight(4)], transB=1)
    b.output(y)
    return b.model()


def test_mostly_frozen_fine_tuning_stops_unless_allowed(caplog):
    model = frozen_model()
    data = source(model, 32)
    with pytest.raises(FrozenError, match="--allow-frozen") as raised:
        finetune(perturbed(model), data, teacher=model, epochs=1, isolate=False)
    assert raised.value.exit_code == ExitCode.FROZEN == 10
    assert "GlobalLpPool 'lp'" in str(raised.value)
    with caplog.at_level(logging.WARNING):
        result = finetune(perturbed(model), data, teacher=model, epochs=1, isolate=False,
                          allow_frozen=True)
    assert result.trainable_share["fraction"] < 0.1
    assert "GlobalLpPool 'lp'" in result.frozen_nodes
    assert any("--allow-frozen: fine-tuning trains only" in r.message for r in caplog.records)


def test_cli_exits_10_when_fine_tuning_would_freeze_most_weights(tmp_path):
    model = frozen_model()
    onnx.save(model, tmp_path / "m.onnx")
    x = np.random.default_rng(0).standard_normal((400, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)  # 40 held-out samples; the drop budget is not tested here
    args = ["compress", str(tmp_path / "m.onnx"), "-t", "0.2", "-o", str(tmp_path / "o.onnx"),
            "--steps", "1", "--finetune-epochs", "1", "--data", str(tmp_path / "d.npz"),
            "--criterion", "l1", "--max-drop", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == ExitCode.FROZEN, result.output
    assert "--allow-frozen" in result.output and not (tmp_path / "o.onnx").exists()
    result = CliRunner().invoke(main, [*args, "--allow-frozen"])
    assert result.exit_code == 0, result.output
    assert "trainable: " in result.output and "GlobalLpPool" in result.output


def test_trainability_reports_without_training():
    model = hardswish_se_model()
    report = trainability(model, source(model, 8), batch_size=4, isolate=False)
    assert report["trainable_share"]["fraction"] == 1.0 and not report["frozen_nodes"]
    assert report["loss"]["terms"][0]["reads"] != report["loss"]["terms"][0]["output"]


def test_early_stopping_keeps_the_best_held_out_epoch():
    teacher = hardswish_se_model()
    student = perturbed(teacher, scale=0.5)
    train, held = source(teacher, 64, seed=0), source(teacher, 32, seed=1)
    result = finetune(student, train, teacher=teacher, epochs=6, lr=5e-3, batch_size=16,
                      isolate=False, eval_data=held, patience=1, lr_schedule="constant")
    stopping = result.early_stopping
    assert stopping["early_stopping"] and 1 <= stopping["best_epoch"] <= stopping["epochs_run"]
    held_losses = [h["heldout_loss"] for h in result.history]
    assert len(held_losses) == stopping["epochs_run"]
    assert stopping["best_heldout_loss"] == pytest.approx(min(held_losses))
    assert held_losses[-1] < held_losses[0]
    # early stopping off without held-out data
    plain = finetune(student, train, teacher=teacher, epochs=1, batch_size=16, isolate=False)
    assert plain.early_stopping == {"early_stopping": False}


class _Param:
    def __init__(self, value: float) -> None:
        self.data = np.array([value], np.float32)


class _FakeModule:
    """Eval loss = the parameter's value; records train/eval switches."""

    def __init__(self, state) -> None:
        self.state, self.modes = state, []

    def input_names(self):
        return ["x"]

    def eval(self):
        self.modes.append("eval")

    def train(self):
        self.modes.append("train")

    def __call__(self, x):
        return float(self.state.parameters["w"].data[0])


def test_held_out_keeps_and_restores_the_best_weights_and_stops_after_patience():
    from onnxprune.training.early_stop import HeldOut

    class State:
        parameters = {"w": _Param(0.0)}

    state = State()
    module = _FakeModule(state)
    model = hardswish_se_model()
    held = HeldOut(source(model, 8), 4, patience=2, loss_feeds=lambda feeds, labels: {
        "x": next(iter(feeds.values()))})
    for epoch, value in enumerate([3.0, 1.0, 2.0, 2.5], start=1):
        state.parameters["w"].data = np.array([value], np.float32)
        held.after_epoch(epoch, module, state, ["w"])
        if held.stopped:
            break
    assert held.stopped and held.epochs == 4 and held.best_epoch == 2
    assert held.restore(state) and float(state.parameters["w"].data[0]) == 1.0
    assert module.modes[-1] == "train"
    assert held.summary()["best_heldout_loss"] == 1.0


def recurrent_model(op: str, direction: str = "forward", peephole=False, initial=False,
                    **attrs) -> onnx.ModelProto:
    """x[N, 3, 4] -> Transpose -> LSTM/GRU (hidden 3, sequence 3) -> every output, flattened
    and joined (ONNX Runtime runs only layout 0, so layout 1 cannot be compared here)."""
    layout = 0
    gates = {"LSTM": 4, "GRU": 3}[op]
    dirs = 2 if direction == "bidirectional" else 1
    b = GraphBuilder(opset=17, seed=5)
    x = b.op("Transpose", [b.input(["N", 3, 4], name="x")], perm=[1, 0, 2])
    def weight(name: str, *shape: int) -> str:
        return b.init(b.rng.standard_normal(shape).astype(np.float32) * 0.5, name=name)

    inputs = [x, weight("W", dirs, gates * 3, 4), weight("R", dirs, gates * 3, 3),
              weight("B", dirs, 2 * gates * 3), ""]
    if initial:
        inputs.append(b.op("Tanh", [b.op("Constant", [], value=onnx.numpy_helper.from_array(
            np.full((dirs, 2, 3), 0.3, np.float32)))]))
        if op == "LSTM":
            inputs.append(inputs[-1])
    if peephole:
        inputs += [""] * (7 - len(inputs)) + [weight("P", dirs, 9)]
    n_out = 3 if op == "LSTM" else 2
    outs = b.op(op, inputs, n_out=n_out, name="rnn", hidden_size=3, direction=direction,
                layout=layout, **attrs)
    flat = [b.op("Flatten", [o], axis=0) for o in outs]
    b.output(b.op("Concat", flat, axis=1))
    return b.model()


RECURRENT = [
    ("LSTM", {}), ("LSTM", {"direction": "bidirectional", "peephole": True}),
    ("LSTM", {"direction": "reverse", "initial": True}),
    ("GRU", {"linear_before_reset": 1}), ("GRU", {"direction": "bidirectional"}),
    ("GRU", {"direction": "reverse", "initial": True, "linear_before_reset": 0}),
]


@pytest.mark.parametrize("op,kw", RECURRENT, ids=lambda v: v if isinstance(v, str) else
                         "_".join(f"{k}{w}" for k, w in v.items()) or "default")
def test_recurrent_layers_are_unrolled_exactly_with_right_gradients(op, kw):
    from tests.training.helpers import numeric_gradient

    model = recurrent_model(op, **kw)
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)}
    legal = legalize(model, 2, feeds)
    assert legal.rewritten == {op: 1} and not legal.frozen_nodes
    np.testing.assert_allclose(outputs(legal.model, feeds)[0], outputs(model, feeds)[0],
                               rtol=1e-5, atol=1e-6)
    projection = np.random.default_rng(1).standard_normal(outputs(model, feeds)[0].shape)
    for param in ("W", "R", "B"):
        grad = _recurrent_gradient(legal.model, feeds, param, projection)
        picks, numeric = numeric_gradient(model, feeds, param, projection, eps=1e-3)
        np.testing.assert_allclose(grad.reshape(-1)[picks], numeric, rtol=2e-2, atol=2e-3)


def _recurrent_gradient(legal_model, feeds, param, projection):
    import tempfile

    from onnxprune.training.ort import build_artifacts, import_training
    from tests.training.helpers import with_projection_loss

    _, api = import_training()
    with tempfile.TemporaryDirectory() as folder:
        art = build_artifacts(with_projection_loss(legal_model, projection), [param], [], folder)
        state = api.CheckpointState.load_checkpoint(art.checkpoint)
        module = api.Module(art.training_model, state, art.eval_model)
        module.train()
        module.lazy_reset_grad()
        module(*[feeds[n] for n in module.input_names()])
        return np.array(state.parameters[param].grad)


def test_feature_distillation_matches_the_kept_channels_of_the_last_feature_map():
    from onnxprune.training.features import match_channels

    teacher = hardswish_se_model()
    student = perturbed(teacher, scale=0.3)
    result = finetune(student, source(teacher), teacher=teacher, epochs=2, lr=5e-3,
                      batch_size=16, isolate=False, distill_features="on")
    kinds = [t["kind"] for t in result.loss["terms"]]
    assert kinds == ["kl", "feature"]
    feature = result.loss["terms"][1]
    assert "last feature map" in feature["reason"] and feature["reads"].startswith("mul")
    assert result.exported_loss == pytest.approx(result.eval_loss, rel=1e-4, abs=1e-6)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]
    # channel matching finds a permuted subset
    rng = np.random.default_rng(0)
    full = rng.standard_normal((16, 6, 3, 3))
    kept = np.array([4, 0, 5])
    assert match_channels(full[:, kept] * 2.0 + 0.1, full).tolist() == kept.tolist()


def test_weights_behind_layout_ops_are_trainable_candidates():
    """Paddle2ONNX: conv bias as Add(conv, Reshape(Constant)); LSTM weights as Concat."""
    from onnxprune.training.params import trainable_candidates, untie_weights

    b = GraphBuilder(opset=11, seed=0)
    x = b.input(["N", 3, 4, 4], name="x")
    h = b.conv(x, 3, 4, bias=False, name="conv")
    bias = b.op("Constant", [], value=onnx.numpy_helper.from_array(
        np.arange(4, dtype=np.float32)))
    h = b.op("Add", [h, b.op("Reshape", [bias, b.ints([1, 4, 1, 1])])])
    shape_only = b.op("Constant", [], value=onnx.numpy_helper.from_array(
        np.ones(4, np.float32)))
    b.output(b.op("Mul", [h, b.op("Reshape", [shape_only, b.ints([1, 4, 1, 1])])]))
    b.output(shape_only)  # also a graph output: not a weight
    model, untied = untie_weights(b.model())
    candidates = trainable_candidates(model)
    assert bias in candidates and shape_only not in candidates and untied == 1
