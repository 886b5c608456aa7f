"""finetune(): digits accuracy recovery, masks, frozen weights, isolation, errors."""

from __future__ import annotations

import importlib
import logging

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxprune.compress import compress
from onnxprune.data import DataSource, model_input_specs, open_data, synthetic_source
from onnxprune.errors import DataError, RuntimeMissingError, UnsupportedModelError, UsageError
from onnxprune.graph import load_model, runtime
from onnxprune.graph.io import model_from_proto
from onnxprune.training import finetune
from onnxprune.training.isolate import run_isolated
from tests.builders import GraphBuilder
from tests.calibration.models import DIGITS, DIGITS_TEST, DIGITS_TRAIN
from tests.training import helpers


def accuracy(model: onnx.ModelProto) -> float:
    test = np.load(DIGITS_TEST)
    logits = runtime.make_session(model).run(None, {"input": test["input"]})[0]
    return float((logits.argmax(axis=1) == test["labels"]).mean())


def weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.fixture(scope="module")
def pruned_digits(tmp_path_factory):
    """The digits CNN with 70% of its parameters removed at once (l1, no recovery)."""
    out = tmp_path_factory.mktemp("digits") / "pruned.onnx"
    compress(DIGITS, 0.7, output=out, criterion="l1", recover="none", report=False,
             round_to=1)
    model = onnx.load(out)
    return model, open_data(DIGITS_TRAIN, load_model(out).model)


def test_distillation_recovers_one_shot_pruning_in_a_child_process(pruned_digits):
    model, data = pruned_digits
    seen = []
    result = finetune(model, data, teacher=onnx.load(DIGITS), epochs=3, lr=1e-3,
                      progress=seen.append)
    before, after = accuracy(model), accuracy(result.model)
    assert before < 0.5 and after > 0.95, (before, after)
    assert [n.op_type for n in result.model.graph.node] == [n.op_type for n in model.graph.node]
    assert [o.name for o in result.model.graph.output] == ["logits"]
    assert seen and seen[-1]["step"] == seen[-1]["steps"] == result.steps
    assert len(result.history) == 3 and result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.loss["terms"][0]["kind"] == "kl"
    assert result.export_diff < 1e-5


def test_cross_entropy_on_labels(pruned_digits):
    model, data = pruned_digits
    result = finetune(model, data, loss="ce", epochs=2, lr=2e-3, isolate=False)
    assert accuracy(result.model) > 0.9
    assert result.loss["terms"][0]["kind"] == "ce"


def test_sgd_trains(pruned_digits):
    model, data = pruned_digits
    result = finetune(model, data, teacher=onnx.load(DIGITS), optimizer="sgd", lr=0.05,
                      epochs=1, isolate=False)
    assert result.history[-1]["loss"] < 10.0 and accuracy(result.model) > accuracy(model)


def test_masked_weights_stay_exactly_zero(pruned_digits):
    model, data = pruned_digits
    name = next(n for n, v in weights(model).items() if v.ndim == 4 and v.shape[0] > 4)
    rng = np.random.default_rng(0)
    mask = (rng.random(weights(model)[name].shape) > 0.5).astype(np.float32)
    result = finetune(model, data, teacher=onnx.load(DIGITS), epochs=1, masks={name: mask},
                      isolate=False)
    trained = weights(result.model)[name]
    assert np.all(trained[mask == 0] == 0.0)
    assert np.all(trained[mask == 1] != weights(model)[name][mask == 1])


def test_masks_on_frozen_weights_are_applied_too(pruned_digits, caplog):
    model, data = pruned_digits
    mask = np.zeros(10, np.float32)
    mask[:5] = 1
    with caplog.at_level(logging.WARNING):
        result = finetune(model, data, teacher=onnx.load(DIGITS), max_steps=3,
                          frozen=["head.3.bias", "no_such_weight"],
                          masks={"head.3.bias": mask}, isolate=False)
    bias = weights(result.model)["head.3.bias"]
    np.testing.assert_array_equal(bias, weights(model)["head.3.bias"] * mask)
    assert "'no_such_weight' matches no trainable weight" in caplog.text


def test_frozen_names_and_globs_stay_bit_identical(pruned_digits):
    model, data = pruned_digits
    before = weights(model)
    result = finetune(model, data, teacher=onnx.load(DIGITS), epochs=1,
                      frozen=["head.3.bias", "onnx::Conv_4*"], isolate=False)
    after = weights(result.model)
    frozen = [n for n in before if n == "head.3.bias" or n.startswith("onnx::Conv_4")]
    assert len(frozen) >= 3 and set(frozen) <= set(result.frozen)
    for name in frozen:
        np.testing.assert_array_equal(after[name], before[name])
    assert not np.array_equal(after["head.1.weight_pruned"], before["head.1.weight_pruned"])


def _tiny_classifier(op: str | None = None) -> onnx.ModelProto:
    b = GraphBuilder(opset=17, seed=3)
    x = b.input(["N", 2, 5, 5], name="input")
    h = b.conv(x, 2, 3, name="conv_a")
    if op:
        h = b.op(op, [h], name="odd")
    h = b.op("Relu", [b.conv(h, 3, 4, name="conv_b")])
    h = b.op("Flatten", [b.op("GlobalAveragePool", [h])])
    b.output(b.op("Gemm", [h, b.weight(3, 4), b.weight(3)], name="head", transB=1))
    return b.model()


def _source(model: onnx.ModelProto, count: int = 64, labels: bool = False) -> DataSource:
    ir_model = model_from_proto(model)
    if not labels:
        return synthetic_source(ir_model, count, seed=0)
    rng = np.random.default_rng(0)
    arrays = {"input": rng.standard_normal((count, 2, 5, 5)).astype(np.float32),
              "labels": rng.integers(0, 3, count)}
    return DataSource.from_arrays(arrays, model_input_specs(ir_model))


def test_op_ort_rejects_at_build_time_is_frozen_and_training_goes_on(caplog):
    model = _tiny_classifier("Sinh")  # no gradient builder in ORT 1.19, no rule
    student = helpers_perturbed(model)
    with caplog.at_level(logging.WARNING):
        result = finetune(student, _source(model), teacher=model, epochs=3, lr=5e-3,
                          batch_size=16, isolate=False)
    assert "Sinh 'odd'" in result.frozen_nodes
    assert "odd" in caplog.text
    conv_a = weights(student)
    names_a = [n.input[1] for n in model.graph.node if n.name == "conv_a"]
    assert set(names_a) <= set(result.frozen)
    np.testing.assert_array_equal(weights(result.model)[names_a[0]], conv_a[names_a[0]])
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def helpers_perturbed(model: onnx.ModelProto) -> onnx.ModelProto:
    from tests.training.test_fixtures import perturbed

    return perturbed(model, seed=1, scale=0.5)


def test_newer_opset_is_converted_down_for_training():
    model = onnx.version_converter.convert_version(_tiny_classifier(), 23)
    model.ir_version = 11
    result = finetune(model, _source(_tiny_classifier()), epochs=1, batch_size=16,
                      isolate=False)
    assert result.model.opset_import[0].version == 23  # the given structure is kept


@pytest.mark.parametrize("masks,match", [
    ({"nope": np.ones(3)}, "no initializer"),
    ({"head.3.bias": np.ones(3)}, "shape"),
    ({"head.3.bias": np.full(10, 0.5)}, "only 0 and 1"),
])
def test_bad_masks_are_usage_errors(pruned_digits, masks, match):
    model, data = pruned_digits
    with pytest.raises(UsageError, match=match):
        finetune(model, data, masks=masks, isolate=False)


def test_unknown_option_and_bad_values_are_usage_errors(pruned_digits):
    model, data = pruned_digits
    with pytest.raises(UsageError, match="unknown fine-tuning option"):
        finetune(model, data, learning_rate=1.0)
    with pytest.raises(UsageError, match="optimizer"):
        finetune(model, data, optimizer="adam")
    with pytest.raises(UsageError, match="learning rate"):
        finetune(model, data, lr=0.0)


def test_cross_entropy_needs_labels_and_a_classifier():
    model = _tiny_classifier()
    with pytest.raises(DataError, match="labels"):
        finetune(model, _source(model), loss="ce", epochs=1, isolate=False)
    with pytest.raises(DataError, match="labels"):  # raised in the child, same type here
        finetune(model, _source(model), loss="ce", epochs=1)
    b = GraphBuilder(opset=17)
    x = b.input(["N", 2, 4, 4], name="input")
    b.output(b.conv(x, 2, 3))
    dense = b.model()
    with pytest.raises(UsageError, match="classes"):
        finetune(dense, _source(dense), loss="ce", epochs=1, isolate=False)


def test_labels_train_with_mse_targets():
    b = GraphBuilder(opset=17, seed=0)
    x = b.input(["N", 4], name="input")
    b.output(b.op("Gemm", [x, b.weight(1, 4), b.weight(1)], transB=1))
    model = b.model()
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((96, 4)).astype(np.float32)
    target = inputs @ np.array([[1.0], [-2.0], [0.5], [0.0]], np.float32) + 0.3
    data = DataSource.from_arrays({"input": inputs, "labels": target},
                                  model_input_specs(model_from_proto(model)))
    result = finetune(model, data, loss="mse", epochs=20, lr=0.05, batch_size=16,
                      isolate=False)
    assert result.history[-1]["loss"] < 0.01 * result.history[0]["loss"]


def test_missing_training_build_is_runtime_missing(monkeypatch, pruned_digits):
    module = importlib.import_module("onnxprune.training.finetune")

    def missing():
        raise RuntimeMissingError("fine-tuning needs the ONNX Runtime training build")

    monkeypatch.setattr(module, "import_training", missing)
    model, data = pruned_digits
    with pytest.raises(RuntimeMissingError) as info:
        finetune(model, data)
    assert info.value.exit_code == 7


def test_native_crash_in_the_child_becomes_an_error():
    with pytest.raises(UnsupportedModelError, match="SIGFPE"):
        run_isolated(helpers.crash_with_sigfpe)


def test_child_errors_keep_their_type_and_reports_reach_the_parent(caplog):
    with pytest.raises(DataError, match="bad labels"):
        run_isolated(helpers.raise_data_error, "bad labels")
    with pytest.raises(UnsupportedModelError, match="ValueError: plain failure"):
        run_isolated(helpers.raise_value_error)
    seen = []
    with caplog.at_level(logging.WARNING):
        total = run_isolated(helpers.report_and_return, [1, 2, 3],
                             on_report=lambda kind, payload: seen.append(payload["value"]))
    assert total == 6 and seen == [1, 2, 3]
    assert "working on 3 values" in caplog.text


def test_weights_shared_through_identity_are_untied_and_trained():
    # what the TorchScript exporter writes for equal tensors: Identity(initializer)
    b = GraphBuilder(opset=17, seed=2)
    x = b.input(["N", 2, 5, 5], name="input")
    gamma = b.init(np.ones(3, np.float32), name="gamma")
    beta = b.init(np.zeros(3, np.float32), name="beta")
    h = b.conv(x, 2, 3, name="conv_a")
    scale_a = b.op("Identity", [gamma], name="id_a")
    h = b.op("BatchNormalization", [h, scale_a, beta, b.weight(3), b.positive(3)])
    h = b.conv(b.op("Relu", [h]), 3, 3, name="conv_b")
    scale_b = b.op("Identity", [gamma], name="id_b")
    h = b.op("BatchNormalization", [h, scale_b, beta, b.weight(3), b.positive(3)])
    h = b.op("Flatten", [b.op("GlobalAveragePool", [b.op("Relu", [h])])])
    b.output(b.op("Gemm", [h, b.weight(3, 3), b.weight(3)], name="head", transB=1))
    model = b.model()
    result = finetune(model, _source(model, labels=True), loss="ce", epochs=2, lr=1e-2,
                      batch_size=16, isolate=False)
    assert result.notes[0].startswith("2 Constant/Identity weight node(s)")
    trained = weights(result.model)
    assert {"id_a_out", "id_b_out"} <= set(result.trainable)
    assert not np.array_equal(trained["id_a_out"], trained["id_b_out"])
    assert "Identity" not in {n.op_type for n in result.model.graph.node}
