"""BatchNormalization statistics after fine-tuning with batch statistics (bn="batch")."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxprune.data import synthetic_source
from onnxprune.graph import load_model
from onnxprune.graph.outputs import output_heads
from onnxprune.training import finetune
from onnxprune.training.batchnorm import (
    batch_statistics_model,
    batchnorm_stats,
    recalibrate,
    statistics_mismatch,
)
from onnxprune.training.losses import plan_loss
from onnxprune.training.params import with_weights
from onnxprune.training.probe import probe_values
from onnxprune.training.trainer import tensor_values
from tests.conftest import MODELS
from tests.training.test_fixtures import perturbed

MODEL = MODELS / "resnet_basic.ts_keepbn.onnx"


def train_mode_model(model: onnx.ModelProto, feeds) -> onnx.ModelProto:
    """``model`` with every BN normalising by the statistics of the batch (train mode)."""
    bn_inputs = [n.input[0] for n in model.graph.node if n.op_type == "BatchNormalization"]
    ranks = {k: v.ndim for k, v in probe_values(model, feeds, bn_inputs).items()}
    stats, _ = batch_statistics_model(model, ranks)
    del stats.graph.output[len(model.graph.output):]
    return stats


@pytest.fixture(scope="module")
def tuned():
    teacher = onnx.load(MODEL)
    data = synthetic_source(load_model(MODEL).model, 256, seed=0)
    result = finetune(perturbed(teacher, scale=0.5), data, teacher=teacher, epochs=3, lr=3e-3,
                      batch_size=32, isolate=False, bn="batch")
    return teacher, data, result


def test_exported_loss_equals_eval_model_loss(tuned):
    _, _, result = tuned
    # the eval model of ORT training reads the recomputed statistics from the checkpoint
    assert result.exported_loss == pytest.approx(result.eval_loss, rel=1e-4)
    assert result.history[-1]["loss"] < 0.5 * result.history[0]["loss"]


def test_running_statistics_match_the_fine_tuned_weights(tuned):
    teacher, data, result = tuned
    feeds = next(data.batches(256))
    heads = output_heads(teacher)
    expected = tensor_values(teacher, heads, feeds)
    plan = plan_loss("distill", heads, expected, expected)
    targets = plan.feeds(expected, None)

    def loss(model: onnx.ModelProto) -> float:
        return plan.value(tensor_values(model, heads, feeds), targets)

    exported = loss(result.model)
    train_mode = loss(train_mode_model(result.model, feeds))
    names = batchnorm_stats(result.model)
    stale = loss(with_weights(result.model, {
        t.name: onnx.numpy_helper.to_array(t) for t in teacher.graph.initializer
        if t.name in names}))
    # inference with the stored statistics behaves like training-time batch statistics
    assert exported == pytest.approx(train_mode, rel=0.05)
    # and the original statistics would not (they describe the weights before training)
    assert stale > 10 * exported
    changed = [n for n in names if not np.allclose(
        onnx.numpy_helper.to_array(next(t for t in result.model.graph.initializer
                                        if t.name == n)),
        onnx.numpy_helper.to_array(next(t for t in teacher.graph.initializer if t.name == n)))]
    assert len(changed) == len(names)


def test_momentum_statistics_are_exported_without_recalibration():
    teacher = onnx.load(MODEL)
    data = synthetic_source(load_model(MODEL).model, 64, seed=0)
    result = finetune(perturbed(teacher, scale=0.5), data, teacher=teacher, epochs=2, lr=3e-3,
                      batch_size=32, isolate=False, recalibrate_bn=False, bn="batch")
    assert result.exported_loss == pytest.approx(result.eval_loss, rel=1e-4)


def test_auto_mode_uses_batch_statistics_only_when_they_fit_the_data():
    teacher = onnx.load(MODEL)  # never trained: its statistics are PyTorch's defaults
    data = synthetic_source(load_model(MODEL).model, 64, seed=0)
    feeds = next(data.batches(32))
    assert statistics_mismatch(teacher, feeds) > 0.2
    fitted = with_weights(teacher, recalibrate(teacher, data.batches(32)))
    assert statistics_mismatch(fitted, feeds) < 0.2
    stale = finetune(teacher, data, max_steps=2, batch_size=32, isolate=False)
    assert stale.bn == "frozen" and "kept its statistics" in stale.notes[-1]
    assert "BatchNormalization" in stale.rewritten
    fit = finetune(fitted, data, max_steps=2, batch_size=32, isolate=False)
    assert fit.bn == "batch" and "BatchNormalization" not in fit.rewritten
