"""Fine-tuning the zoo models whose ops ONNX Runtime 1.19 cannot differentiate as exported."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxprune.data import synthetic_source
from onnxprune.graph import load_model, runtime
from onnxprune.training import finetune
from onnxprune.training.legalize import legalize
from onnxprune.training.params import trainable_candidates, with_weights
from tests.conftest import MODELS

CASES = {
    "mobilenetv3_like.ts.onnx": {"HardSwish", "HardSigmoid"},
    "mobilenetv3_like.dynamo.onnx": {"HardSwish", "HardSigmoid"},
    "unet.ts.onnx": {"ConvTranspose"},
    "unet.dynamo_keepbn.onnx": {"ConvTranspose"},
    "yolo_neck.ts.onnx": {"Resize"},
    "yolo_neck.dynamo.onnx": {"Resize"},
    "convnext_like.ts.onnx": {"LayerNormalization"},
    "convnext_like.dynamo.onnx": {"LayerNormalization"},
}


def perturbed(model: onnx.ModelProto, seed: int = 0, scale: float = 0.3) -> onnx.ModelProto:
    """The model with every trainable weight multiplied by (1 + scale * noise)."""
    rng = np.random.default_rng(seed)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    arrays = {n: (inits[n] * (1 + scale * rng.standard_normal(inits[n].shape)))
              .astype(inits[n].dtype) for n in trainable_candidates(model)}
    return with_weights(model, arrays)


@pytest.mark.parametrize("name", sorted(CASES))
def test_finetune_zoo_model_reduces_loss_and_exports_exactly(name):
    path = MODELS / name
    teacher = onnx.load(path)
    student = perturbed(teacher)
    data = synthetic_source(load_model(path).model, 48, seed=0)
    # keepbn: BN in inference form (batch statistics of random inputs are not the
    # teacher's running statistics; test_batchnorm covers bn="batch")
    bn = "frozen" if "keepbn" in name else "batch"
    result = finetune(student, data, teacher=teacher, epochs=3, lr=2e-3, batch_size=16,
                      isolate=False, bn=bn)
    expected = CASES[name] | ({"BatchNormalization"} if bn == "frozen" else set())
    assert expected <= set(result.rewritten), result.rewritten
    assert not result.frozen_nodes
    floats = [o for o in teacher.graph.output if o.type.tensor_type.elem_type == 1]
    assert len(result.loss["terms"]) == len(floats)  # every float output (yolo_neck: 3)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.8 * losses[0], losses
    # the exported model (original op structure) equals the trained training form
    assert result.export_diff < 1e-5
    assert result.exported_loss == pytest.approx(result.eval_loss, rel=1e-4, abs=1e-6)
    # and, independently, equals the legalized form of itself on another batch
    feeds = next(synthetic_source(load_model(path).model, 16, seed=1).batches(16))
    legal = legalize(result.model, 16, feeds).model
    got = runtime.make_session(result.model).run(None, feeds)
    expected = runtime.make_session(legal).run(None, feeds)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max())
    # same op structure as the input
    assert [n.op_type for n in result.model.graph.node] == \
        [n.op_type for n in student.graph.node]


SEQUENCE_CASES = ["bert_tiny.ts", "gpt2_tiny.dynamo", "vit_tiny.ts", "llama_gqa_tiny.dynamo",
                  "lstm_classifier.ts", "gru_seq.ts"]


def _sequence_data(path, count: int, seed: int):
    import onnxruntime as ort

    from onnxprune.data import DataSource, model_input_specs
    from tests.oracle import feeds_for

    session = ort.InferenceSession(str(path))
    high = {a.name: 50 if a.name == "input_ids" else 2 for a in session.get_inputs()}
    feeds = feeds_for(session, count, seed=seed, dims={"seq": 6}, int_high=high)
    return DataSource.from_arrays(feeds, model_input_specs(load_model(path).model))


@pytest.mark.parametrize("name", SEQUENCE_CASES)
def test_finetune_sequence_models(name):
    """Transformers and recurrent models train end to end (LSTM/GRU unrolled over the
    training sequence length, training/legal_recurrent.py); the export is exact."""
    path = MODELS / f"{name}.onnx"
    teacher = onnx.load(path)
    student = perturbed(teacher)
    result = finetune(student, _sequence_data(path, 48, 0), teacher=teacher, epochs=3,
                      lr=2e-3, batch_size=16, isolate=True)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.8 * losses[0], losses
    assert result.export_diff < 1e-5
    assert not result.frozen_nodes and result.trainable_share["fraction"] >= 0.99
    recurrent = [n for n in teacher.graph.node if n.op_type in ("LSTM", "GRU")]
    if recurrent:
        assert set(result.rewritten) >= {n.op_type for n in recurrent}
        weights = {t.name: onnx.numpy_helper.to_array(t) for t in result.model.graph.initializer}
        before = {t.name: onnx.numpy_helper.to_array(t) for t in student.graph.initializer}
        for node in recurrent:
            for name_ in node.input[1:4]:
                if name_ in before:
                    assert not np.array_equal(weights[name_], before[name_])
