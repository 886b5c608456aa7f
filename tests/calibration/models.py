"""Small models and data shared by the calibration tests."""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.data import DataSource, model_input_specs
from onnxprune.graph.io import model_from_proto, normalize
from tests.builders import GraphBuilder

ROOT = pathlib.Path(__file__).resolve().parents[2]
DIGITS = ROOT / "fixtures" / "models" / "digits_cnn.ts.onnx"
DIGITS_TRAIN = ROOT / "fixtures" / "data" / "digits_train.npz"
DIGITS_TEST = ROOT / "fixtures" / "data" / "digits_test.npz"


def small_cnn(dead: tuple[int, ...] = (), pads: int = 1, seed: int = 0) -> onnx.ModelProto:
    """x[N,3,8,8] -> conv1(3->6) -> relu -> conv2(6->5) -> relu -> GAP -> flatten -> gemm(5->4).

    Channels ``dead`` of conv1 have zero weights and bias -1: always 0 after the ReLU.
    """
    b = GraphBuilder(seed=seed)
    x = b.input(["N", 3, 8, 8], name="input")
    w1 = b.rng.standard_normal((6, 3, 3, 3)).astype(np.float32) * 0.5
    b1 = b.rng.standard_normal(6).astype(np.float32) * 0.1
    for c in dead:
        w1[c] = 0.0
        b1[c] = -1.0
    h = b.op("Relu", [b.op("Conv", [x, b.init(w1), b.init(b1)], name="conv1", pads=[1] * 4)])
    k = 2 * pads + 1
    h = b.op("Relu", [b.op("Conv", [h, b.weight(5, 6, k, k), b.weight(5)], name="conv2",
                           pads=[pads] * 4)])
    h = b.op("Flatten", [b.op("GlobalAveragePool", [h])])
    b.output(b.op("Gemm", [h, b.weight(4, 5), b.weight(4)], name="head", transB=1))
    return b.model()


def mlp(dead: tuple[int, ...] = (), matmul: bool = False, seed: int = 0) -> onnx.ModelProto:
    """x[N,8] -> fc1(8->6) -> relu -> fc2(6->3) (Gemm, or MatMul without bias)."""
    b = GraphBuilder(seed=seed)
    x = b.input(["N", 8], name="input")
    w1 = b.rng.standard_normal((8, 6)).astype(np.float32)
    b1 = b.rng.standard_normal(6).astype(np.float32) * 0.1
    for c in dead:
        w1[:, c] = 0.0
        b1[c] = -1.0
    h = b.op("Relu", [b.op("Gemm", [x, b.init(w1), b.init(b1)], name="fc1")])
    w2 = b.weight(6, 3)
    out = b.op("MatMul", [h, w2], name="fc2") if matmul else \
        b.op("Gemm", [h, w2, b.weight(3)], name="fc2", alpha=0.5, beta=2.0)
    b.output(b.op("Relu", [out]) if matmul else out)
    return b.model()


def ir_model(proto: onnx.ModelProto):
    model = model_from_proto(proto)
    normalize(model)
    return model


def random_data(model, n: int = 64, seed: int = 1, labels: int | None = None) -> DataSource:
    rng = np.random.default_rng(seed)
    specs = model_input_specs(model)
    arrays = {s.name: rng.standard_normal((n, *s.shape[1:])).astype(np.float32) for s in specs}
    if labels:
        arrays["labels"] = rng.integers(0, labels, n)
    return DataSource.from_arrays(arrays, specs)


def initializer(proto: onnx.ModelProto, name: str) -> np.ndarray:
    return next(numpy_helper.to_array(t) for t in proto.graph.initializer if t.name == name)
