"""Data-driven criteria: activation, apoz, taylor (gate gradients from ORT training)."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from onnxprune.analysis import analyze
from onnxprune.calibration.gradients import import_training
from onnxprune.calibration.graph_edit import multiply_tensors
from onnxprune.calibration.probes import find_probes
from onnxprune.errors import RuntimeMissingError
from onnxprune.graph.runtime import to_runtime_proto
from onnxprune.importance.data_criteria import data_criterion, taylor_scores
from tests.calibration.models import ir_model, random_data, small_cnn
from tests.oracle import session


def conv1_units(analysis):
    source = next(s for s in analysis.ctx.sources if s.node == "conv1")
    return analysis.element_unit[source.start:source.start + source.size]


@pytest.mark.parametrize("criterion", ["activation", "apoz", "taylor", "variation"])
def test_dead_channels_score_lowest_and_the_model_is_unchanged(criterion):
    model = ir_model(small_cnn(dead=(1, 4)))
    analysis = analyze(model)
    before = onnx.printer.to_text(ir.serde.serialize_model(model))
    scores = data_criterion(criterion, random_data(model))(analysis, 0)
    assert onnx.printer.to_text(ir.serde.serialize_model(model)) == before
    units = conv1_units(analysis)
    assert scores.shape == (analysis.num_units,) and np.all(scores >= 0)
    assert set(np.argsort(scores[units])[:2]) == {1, 4}
    assert np.allclose(scores[units][[1, 4]], 0.0)


def test_apoz_is_the_fraction_of_nonzero_activations():
    model = ir_model(small_cnn(dead=(2,)))
    analysis = analyze(model)
    data = random_data(model)
    scores = data_criterion("apoz", data)(analysis, 0)
    # conv1's channels are probed where conv2 reads them: the first ReLU's output
    name = conv2_input(model)
    relu = session(to_runtime_proto(_with_output(ir.serde.serialize_model(model), name)))
    acts = relu.run([name], next(data.batches(64)))[0]
    expected = (acts != 0).mean(axis=(0, 2, 3))
    np.testing.assert_allclose(scores[conv1_units(analysis)], expected, rtol=1e-6)


def conv2_input(model) -> str:
    return next(n for n in model.graph if n.name == "conv2").inputs[0].name


def _with_output(proto: onnx.ModelProto, name: str) -> onnx.ModelProto:
    proto.graph.output.append(onnx.ValueInfoProto(name=name))
    return proto


def per_sample_loss(proto, probe, channel, factor, feeds, labels):
    """Cross-entropy per sample with ``probe`` channel ``channel`` scaled by ``factor``
    (at every position of the probe: all its other axes, rows included)."""
    edited = onnx.ModelProto()
    edited.CopyFrom(proto)
    shape = [1] * probe.rank
    shape[probe.axis] = len(probe.ids)
    scale = np.ones(shape, np.float32)
    np.moveaxis(scale, probe.axis, 0)[channel] = factor
    edited.graph.initializer.append(onnx.numpy_helper.from_array(scale, "fd_scale"))
    multiply_tensors(edited.graph, {probe.name: "fd_scale"}, "fd")
    logits = session(edited).run(None, feeds)[0].astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(labels)), labels]


def test_taylor_equals_mean_squared_per_sample_gate_derivative():
    """Fisher score of a unit = mean_n (dL_n/dg)^2, checked by central differences."""
    model = ir_model(small_cnn())
    analysis = analyze(model)
    data = random_data(model, n=12, labels=4)
    scores = taylor_scores(analysis, data, batch_size=5, use_labels=True)  # 5+5+2: padding
    proto = to_runtime_proto(ir.serde.serialize_model(model))
    probe = next(p for p in find_probes(analysis) if p.name == conv2_input(model))
    feeds, labels = next(data.batches(12)), data.labels
    units = conv1_units(analysis)
    eps = 1e-2
    for channel in (0, 3, 5):
        up = per_sample_loss(proto, probe, channel, 1 + eps, feeds, labels)
        down = per_sample_loss(proto, probe, channel, 1 - eps, feeds, labels)
        fisher = np.mean(((up - down) / (2 * eps)) ** 2)
        assert scores[units[channel]] == pytest.approx(fisher, rel=2e-2)


def test_taylor_without_labels_samples_from_the_model():
    model = ir_model(small_cnn(dead=(0,)))
    analysis = analyze(model)
    a = taylor_scores(analysis, random_data(model, n=16), 8, seed=0)
    b = taylor_scores(analysis, random_data(model, n=16), 8, seed=0)
    np.testing.assert_array_equal(a, b)
    assert a[conv1_units(analysis)[0]] == 0 and a.max() > 0


def test_missing_training_build_is_an_actionable_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime.training.artifacts", None)
    with pytest.raises(RuntimeMissingError, match=r"pip install 'onnxprune\[train\]'.*activation"):
        import_training()
    model = ir_model(small_cnn())
    with pytest.raises(RuntimeMissingError):
        taylor_scores(analyze(model), random_data(model, n=4), 4)


TAYLOR_ZOO = ["convnext_like.ts", "mobilenetv3_like.dynamo_keepbn", "resnet_basic.ts_keepbn",
              "efficientnet_like.ts", "vgg_bn.dynamo_keepbn", "keras_cnn.tf2onnx",
              "unet.ts_keepbn", "dcgan_generator.dynamo", "yolo_neck.ts",
              "densenet_like.ts", "densenet_like.dynamo_keepbn"]


@pytest.mark.parametrize("name", TAYLOR_ZOO)
def test_taylor_runs_on_zoo_models_with_rewritten_ops(name):
    """LayerNorm, HardSwish/HardSigmoid, BN, Dropout, SE, ConvTranspose, Resize: every
    prunable unit gets a finite score, and a unit's score is its gradient-based
    estimate (units whose channels are all zero score 0)."""
    from onnxprune.graph import load_model
    from tests.conftest import MODELS

    model = load_model(MODELS / f"{name}.onnx").model
    data = random_data(model, n=4)
    analysis = analyze(model)
    scores = taylor_scores(analysis, data, 4)
    prunable = np.concatenate([g.units[~g.blocked] for g in analysis.prunable_groups])
    assert np.all(np.isfinite(scores)) and scores[prunable].max() > 0


def _reduce_max_cnn() -> onnx.ModelProto:
    """conv -> Relu -> conv -> ReduceMax over space: ORT 1.19 has no gradient for
    ReduceMax and no rewrite exists, so conv1's channels (probed at conv2's input)
    cannot get one."""
    from tests.builders import GraphBuilder

    b = GraphBuilder()
    x = b.input(["N", 3, 8, 8], name="input")
    h = b.conv(b.op("Relu", [b.conv(x, 3, 4)]), 4, 4)
    b.output(b.op("ReduceMax", [h], axes=[2, 3], keepdims=0))
    return b.model()


def test_auto_falls_back_to_activation_when_ort_cannot_differentiate(tmp_path):
    from onnxprune.compress import compress
    from onnxprune.errors import UnsupportedModelError

    model = tmp_path / "reducemax.onnx"
    onnx.save(_reduce_max_cnn(), model)
    data = tmp_path / "d.npz"
    np.savez(data, input=np.random.default_rng(0).standard_normal((8, 3, 8, 8))
             .astype(np.float32))
    result = compress(model, 0.3, output=tmp_path / "p.onnx", data=str(data), steps=1,
                      round_to=1)
    assert result.calibration["criterion"] == "activation"
    assert any("ReduceMax" in note and "activation" in note for note in result.notes)
    with pytest.raises(UnsupportedModelError, match=r"ReduceMax.*--criterion activation"):
        compress(model, 0.3, output=tmp_path / "q.onnx", data=str(data), criterion="taylor",
                 steps=1, round_to=1)


def test_variation_scores_a_large_constant_channel_as_free_to_remove():
    """Zero weights and bias +3: activation calls the channel big, variation calls it
    constant (it costs nothing once bias recovery folds its mean)."""
    proto = small_cnn()
    weights = {t.name: t for t in proto.graph.initializer}
    conv1 = next(n for n in proto.graph.node if n.name == "conv1")
    w = onnx.numpy_helper.to_array(weights[conv1.input[1]]).copy()
    b = onnx.numpy_helper.to_array(weights[conv1.input[2]]).copy()
    w[2], b[2] = 0.0, 3.0
    weights[conv1.input[1]].CopyFrom(onnx.numpy_helper.from_array(w, conv1.input[1]))
    weights[conv1.input[2]].CopyFrom(onnx.numpy_helper.from_array(b, conv1.input[2]))
    model = ir_model(proto)
    analysis = analyze(model)
    units = conv1_units(analysis)
    data = random_data(model)
    activation = data_criterion("activation", data)(analysis, 0)[units]
    variation = data_criterion("variation", data)(analysis, 0)[units]
    assert np.argmax(activation) == 2 and np.argmin(variation) == 2
    assert variation[2] < 1e-6 < variation.min(initial=1.0, where=np.arange(6) != 2)
