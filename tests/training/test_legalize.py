"""Legalization: each rewrite equals the op, and ORT's gradients through it are right."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
from onnx import helper

from onnxprune.training.legalize import legalize
from tests.builders import GraphBuilder
from tests.training.helpers import (
    BATCH,
    feeds_for,
    numeric_gradient,
    op_model,
    ort_gradient,
    outputs,
)

F = np.float32
NO_GRADIENT_OPS = [
    ("HardSwish", {}, {}),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, {}),
    ("Elu", {"alpha": 0.7}, {}),
    ("Selu", {}, {}),
    ("Celu", {"alpha": 1.5}, {"opset": 17}),
    ("Softplus", {}, {}),
    ("Mish", {}, {"opset": 18}),
    ("Softsign", {}, {}),
    ("ThresholdedRelu", {"alpha": 0.2}, {}),
    ("PRelu", {}, {"extra": [np.array([0.1, -0.2, 0.3, 0.05], F).reshape(4, 1, 1)]}),
    ("Sum", {}, {"n_inputs": 3}),
    ("Mean", {}, {"n_inputs": 3}),
    ("InstanceNormalization", {"epsilon": 1e-3},
     {"extra": [np.array([1.0, 0.5, 2.0, -1.0], F), np.array([0.1, 0.0, -0.2, 0.3], F)]}),
    ("GroupNormalization", {"num_groups": 2},
     {"opset": 18, "extra": [np.array([1.5, 0.5], F), np.array([0.1, -0.2], F)]}),
    ("LayerNormalization", {"axis": -1},
     {"extra": [np.linspace(0.5, 1.5, 6).astype(F), np.linspace(-0.1, 0.1, 6).astype(F)]}),
    ("Dropout", {}, {"opset": 13}),
    ("GlobalMaxPool", {}, {}),
    ("Resize", {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                "nearest_mode": "floor"},
     {"extra": ["", np.array([1, 1, 2, 2], F)]}),
    ("Resize", {"mode": "linear", "coordinate_transformation_mode": "half_pixel"},
     {"extra": ["", np.array([1, 1, 2, 2], F)]}),
    ("Resize", {"mode": "nearest"}, {"extra": ["", "", np.array([BATCH, 4, 9, 9], np.int64)]}),
    ("ConvTranspose", {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]},
     {"extra": [np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(F),
                np.array([0.1, 0.2, 0.3], F)]}),
    ("ConvTranspose", {"group": 2, "dilations": [2, 2], "pads": [2, 0, 1, 3]},
     {"extra": [np.random.default_rng(1).standard_normal((4, 3, 3, 2)).astype(F)]}),
    ("ConvTranspose", {"strides": [3, 2], "auto_pad": "SAME_UPPER"},
     {"extra": [np.random.default_rng(2).standard_normal((4, 2, 2, 3)).astype(F)]}),
    ("Conv", {"strides": [2, 2], "auto_pad": "SAME_UPPER"},
     {"extra": [np.random.default_rng(3).standard_normal((5, 4, 3, 3)).astype(F)]}),
    ("Conv", {"auto_pad": "SAME_LOWER", "strides": [1, 2]},
     {"extra": [np.random.default_rng(4).standard_normal((5, 4, 2, 3)).astype(F)]}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}, {}),
    ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2]}, {}),
    ("DepthToSpace", {"blocksize": 2, "mode": "DCR"}, {}),
    ("DepthToSpace", {"blocksize": 2, "mode": "CRD"}, {}),
    ("SpaceToDepth", {"blocksize": 2}, {}),
]


def _id(case) -> str:
    op, attrs, kw = case
    detail = "_".join(f"{k}{v}" for k, v in sorted(attrs.items()) if k != "kernel_shape")
    suffix = f"_opset{kw['opset']}" if "opset" in kw else ""
    return f"{op}_{detail}"[:60].replace(" ", "") + suffix


# a jump in the function: finite differences across the threshold are meaningless
CONTINUOUS = [c for c in NO_GRADIENT_OPS if c[0] != "ThresholdedRelu"]


def build(case):
    op, attrs, kw = case
    model = op_model(op, **kw, **attrs)
    return op, model, feeds_for(model)


@pytest.mark.parametrize("case", NO_GRADIENT_OPS, ids=[_id(c) for c in NO_GRADIENT_OPS])
def test_rewrite_computes_the_same_outputs(case):
    op, model, feeds = build(case)
    legal = legalize(model, BATCH, feeds)
    assert not legal.frozen_nodes, legal.frozen_nodes
    if op not in ("AveragePool",) or "auto_pad" in str(model.graph.node):
        assert legal.rewritten.get(op) == 1, legal.rewritten
    for got, expected in zip(outputs(legal.model, feeds), outputs(model, feeds)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("case", CONTINUOUS, ids=[_id(c) for c in CONTINUOUS])
def test_gradient_through_rewrite_matches_finite_differences(case):
    _, model, feeds = build(case)
    y = outputs(model, feeds)[0]
    projection = np.random.default_rng(7).standard_normal(y.shape)
    grad = ort_gradient(model, feeds, "w0", projection).reshape(-1)
    picks, numeric = numeric_gradient(model, feeds, "w0", projection)
    scale = max(np.abs(grad).max(), 1e-6)
    assert np.abs(grad[picks] - numeric).max() < 0.05 * scale, (grad[picks], numeric)


def test_initializer_names_survive_legalization():
    model = op_model("ConvTranspose", strides=[2, 2], extra=[
        np.ones((4, 3, 3, 3), F), np.zeros(3, F)])
    legal = legalize(model, BATCH, feeds_for(model))
    names = {t.name for t in model.graph.initializer}
    kept = {t.name for t in legal.model.graph.initializer}
    assert names <= kept
    readers = {i for n in legal.model.graph.node for i in n.input}
    assert names <= readers


@pytest.mark.parametrize("op,attrs", [("Pad", {"mode": "reflect"}), ("ReduceMax", {}),
                                      ("LpPool", {"kernel_shape": [3, 3], "pads": [1] * 4})])
def test_op_without_exact_rewrite_is_frozen_with_a_warning(op, attrs, caplog):
    b = GraphBuilder(opset=17, seed=0)
    x = b.input(["N", 3, 6, 6], name="input")
    h = b.conv(x, 3, 4, name="conv_a")
    extra = [b.ints([0, 0, 1, 1, 0, 0, 1, 1])] if op == "Pad" else []
    h = b.op(op, [h, *extra], name="blocker", **attrs)
    h = b.conv(h, 4, 2, name="conv_b")
    b.output(b.op("Flatten", [h]))
    model = b.model()
    feeds = feeds_for(model)
    with caplog.at_level(logging.WARNING, logger="onnxprune.training.legalize"):
        legal = legalize(model, BATCH, feeds)
    assert list(legal.frozen_nodes) == [f"{op} 'blocker'"]
    assert "blocker" in caplog.text and "frozen" in caplog.text
    conv_a = next(n for n in model.graph.node if n.name == "conv_a")
    conv_b = next(n for n in model.graph.node if n.name == "conv_b")
    assert set(conv_a.input[1:]) <= legal.frozen_params
    assert not set(conv_b.input[1:]) & legal.frozen_params


def test_static_batch_replaces_symbolic_batch():
    model = op_model("AveragePool", kernel_shape=[2, 2])
    legal = legalize(model, 5, feeds_for(model, batch=5))
    dims = legal.model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 5
    assert not legal.model.graph.value_info


def test_dropout_mask_output_stays_available():
    b = GraphBuilder(opset=13)
    x = b.input(["N", 4], name="input")
    y, mask = b.op("Dropout", [x, b.init(np.array(0.5, F))], n_out=2, name="drop")
    b.output(y)
    b.output(mask, dtype=onnx.TensorProto.BOOL)
    model = b.model()
    feeds = feeds_for(model)
    legal = legalize(model, BATCH, feeds)
    got = outputs(legal.model, feeds)
    np.testing.assert_array_equal(got[0], feeds["input"])
    assert got[1].dtype == bool and got[1].all()


def test_layer_norm_gets_its_statistics_outputs():
    model = op_model("LayerNormalization", axis=-1, extra=[np.ones(6, F), np.zeros(6, F)])
    legal = legalize(model, BATCH, feeds_for(model))
    node = next(n for n in legal.model.graph.node if n.op_type == "LayerNormalization")
    assert len(node.output) == 3 and all(node.output)


def test_local_check_freezes_a_wrong_rewrite(monkeypatch):
    from onnxprune.training import legal_spatial
    from onnxprune.training.legalize import RULES

    def wrong(b):  # explicit pads on the wrong side (SAME_UPPER pads the end)
        if not legal_spatial._auto_pad(b.node, {}):
            return None
        return [helper.make_node("Conv", list(b.node.input), list(b.node.output),
                                 pads=[1, 1, 0, 0], strides=[2, 2])]

    entry = RULES["Conv"]
    monkeypatch.setitem(RULES, "Conv", type(entry)(wrong, True, legal_spatial._auto_pad))
    model = op_model("Conv", strides=[2, 2], auto_pad="SAME_UPPER",
                     extra=[np.ones((5, 4, 3, 3), F)])
    legal = legalize(model, BATCH, feeds_for(model))
    assert "not exact" in legal.frozen_nodes["Conv 'target'"]


def test_ort_conv_same_gradient_is_wrong_without_explicit_pads():
    """Why Conv auto_pad is rewritten: ORT 1.19's ConvGrad ignores SAME_* padding."""
    import tempfile

    from onnxprune.training.ort import build_artifacts, import_training
    from tests.training.helpers import with_projection_loss

    model = op_model("Conv", strides=[2, 2], auto_pad="SAME_UPPER",
                     extra=[np.random.default_rng(3).standard_normal((5, 4, 3, 3)).astype(F)])
    feeds = feeds_for(model)
    y = outputs(model, feeds)[0]
    projection = np.random.default_rng(7).standard_normal(y.shape)
    _, api = import_training()
    with tempfile.TemporaryDirectory() as folder:
        art = build_artifacts(with_projection_loss(model, projection), ["w0"], [], folder)
        state = api.CheckpointState.load_checkpoint(art.checkpoint)
        module = api.Module(art.training_model, state, art.eval_model)
        module.train()
        module(*[feeds[n] for n in module.input_names()])
        raw = np.array(state.parameters["w0"].grad).reshape(-1)
    legalized = ort_gradient(model, feeds, "w0", projection).reshape(-1)
    picks, numeric = numeric_gradient(model, feeds, "w0", projection, count=12)
    scale = np.abs(legalized).max()
    assert np.abs(legalized[picks] - numeric).max() < 0.05 * scale
    assert np.abs(raw[picks] - numeric).max() > 0.2 * scale


def test_relu_rewrite_has_relus_gradient_including_zero_inputs():
    """Relu is rewritten for speed; the gradient must stay Relu's (0 where x == 0)."""
    import tempfile

    from onnx import TensorProto, numpy_helper

    from onnxprune.training.ort import build_artifacts, import_training

    nodes = [helper.make_node("Add", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"]),
             helper.make_node("ReduceSum", ["y"], ["loss"], keepdims=0)]
    graph = helper.make_graph(
        nodes, "relu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5])],
        [helper.make_tensor_value_info("loss", TensorProto.FLOAT, [])],
        [numpy_helper.from_array(np.ones(5, F), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = np.array([-1.0, -1.0, -3.0, 0.5, 2.0], F)  # x + w = 0, 0, -2, 1.5, 3
    legal = legalize(model, 5, {"x": x})
    assert legal.rewritten == {"Relu": 1}
    _, api = import_training()
    grads = []
    for proto in (model, legal.model):
        with tempfile.TemporaryDirectory() as folder:
            art = build_artifacts(proto, ["w"], [], folder)
            state = api.CheckpointState.load_checkpoint(art.checkpoint)
            module = api.Module(art.training_model, state, art.eval_model)
            module.train()
            module(x)
            grads.append(np.array(state.parameters["w"].grad))
    np.testing.assert_array_equal(grads[0], [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(grads[1], grads[0])
