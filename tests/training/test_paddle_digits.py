"""The Paddle-pretrained digits classifier (opset 11, hardswish as Clip, BN, SE, Softmax)
keeps its accuracy through progressive pruning with fine-tuning on logits.

A short version of ``benchmarks/finetune_paddle_digits.py`` (fewer steps and epochs, a
looser bound). Skips only while the fixture (added by the Paddle fixture branch) is absent.
"""

from __future__ import annotations

import json

import numpy as np
import onnx_ir as ir
import pytest

from onnxprune.compress import compress
from onnxprune.graph import load_model, runtime
from onnxprune.graph.outputs import output_heads
from tests.calibration.models import DIGITS_TEST, DIGITS_TRAIN
from tests.conftest import MODELS

PADDLE = MODELS / "thirdparty" / "digits_lcnet.paddle.onnx"
pytestmark = pytest.mark.skipif(
    not PADDLE.exists(), reason=f"{PADDLE.relative_to(MODELS.parent.parent)} is not in this "
    "checkout yet (it comes with the Paddle fixture branch)")


def accuracy(path) -> float:
    test = np.load(DIGITS_TEST)
    probabilities = runtime.make_session(str(path)).run(None, {"input": test["input"]})[0]
    return float((probabilities.argmax(axis=1) == test["labels"]).mean())


@pytest.mark.parametrize("loss", ["distill", "ce"])
def test_paddle_digits_keeps_accuracy_with_fine_tuning_on_logits(tmp_path, loss):
    out = tmp_path / f"{loss}.onnx"
    result = compress(str(PADDLE), 0.5, output=out, steps=2, train_steps=80, loss=loss,
                      data=str(DIGITS_TRAIN), lr=2e-3, criterion="l1", report=False,
                      max_drop=0.1)  # the short run: test accuracy is bounded below
    original = accuracy(PADDLE)
    assert accuracy(out) >= original - 0.03, (accuracy(out), original)
    (head,) = output_heads(ir.serde.serialize_model(load_model(PADDLE).model))
    assert head.kind == "softmax"
    for step in result.steps:
        assert step["trainable_fraction"] >= 0.99  # every Clip trains
        assert f"<- {head.logits} " in step["loss_reads"]  # the Softmax's input
    json.dumps(result.to_dict())
