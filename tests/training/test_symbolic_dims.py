"""Fine-tuning a model whose input has a symbolic non-batch dim (issue 13 item 2).

ORT 1.19's ``MaxPoolGrad`` takes its output shape from the graph's static shapes, so a
symbolic width became 0 there and the first train step failed with "Can broadcast 0
by 0 or 1" (the Paddle CRNN, ``3x32xW``). :func:`legalize` now gives every graph
input the probe batch's full static shape (rule 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.data import DataSource, model_input_specs
from onnxprune.graph.io import model_from_proto
from onnxprune.training import finetune
from onnxprune.training.legalize import legalize
from tests.builders import GraphBuilder

WIDTH = 8


def _pooled_classifier() -> onnx.ModelProto:
    """conv -> MaxPool -> conv -> GlobalAveragePool -> Gemm on ``[N, 2, 6, W]``."""
    b = GraphBuilder(opset=17, seed=4)
    x = b.input(["N", 2, 6, "W"], name="input")
    h = b.op("Relu", [b.conv(x, 2, 4, name="conv_a")])
    h = b.op("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = b.op("Relu", [b.conv(h, 4, 4, name="conv_b")])
    h = b.op("Flatten", [b.op("GlobalAveragePool", [h])])
    b.output(b.op("Gemm", [h, b.weight(3, 4), b.weight(3)], name="head", transB=1))
    return b.model()


def _source(model: onnx.ModelProto, count: int = 32) -> DataSource:
    rng = np.random.default_rng(0)
    arrays = {"input": rng.standard_normal((count, 2, 6, WIDTH)).astype(np.float32),
              "labels": rng.integers(0, 3, count)}
    return DataSource.from_arrays(arrays, model_input_specs(model_from_proto(model)))


def _dims(value: onnx.ValueInfoProto) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_legalized_inputs_take_every_dim_of_the_probe_batch():
    model = _pooled_classifier()
    feeds = {"input": np.zeros((4, 2, 6, WIDTH), np.float32)}
    legal = legalize(model, 4, feeds)
    assert _dims(legal.model.graph.input[0]) == [4, 2, 6, WIDTH]
    assert _dims(model.graph.input[0]) == ["N", 2, 6, "W"]  # the given model is untouched


def test_maxpool_model_with_a_symbolic_width_trains_and_keeps_it():
    model = _pooled_classifier()
    before = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    result = finetune(model, _source(model), loss="ce", max_steps=3, lr=1e-2,
                      batch_size=8, isolate=False)
    assert result.steps == 3 and np.isfinite(result.history[-1]["loss"])
    after = {t.name: numpy_helper.to_array(t) for t in result.model.graph.initializer}
    conv_a = next(n.input[1] for n in model.graph.node if n.name == "conv_a")
    assert not np.allclose(after[conv_a], before[conv_a])  # the layer before MaxPool trained
    assert _dims(result.model.graph.input[0]) == ["N", 2, 6, "W"]  # exported model is dynamic


def test_paddle_crnn_with_dynamic_width_fine_tunes():
    """The reported model: conv backbone on ``3x32xW`` -> 2-layer BiLSTM (unrolled)."""
    from onnxprune.data import open_data

    thirdparty = Path(__file__).parents[2] / "fixtures" / "models" / "thirdparty"
    path = thirdparty / "crnn_like.paddle.onnx"
    model = onnx.load(str(path))
    assert _dims(model.graph.input[0])[3] == "p2o.DynamicDimension.1"
    data = open_data(thirdparty / "data" / "crnn_like.npz", model_from_proto(model))
    result = finetune(model, data, max_steps=2, batch_size=16, isolate=False)
    assert result.steps == 2 and np.isfinite(result.history[-1]["loss"])
    assert result.trainable_share["fraction"] > 0.5
