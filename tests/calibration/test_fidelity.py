"""One fidelity module: per head, on logits, standardised per channel, per part."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxprune.calibration.fidelity import compare, fidelity, fidelity_heads, outputs_on
from onnxprune.data import DataSource, model_input_specs
from onnxprune.graph.io import model_from_proto
from tests.builders import GraphBuilder

CLASSES = 3
ANCHORS = 16


def detector(collapse_scores: bool = False, seed: int = 0) -> onnx.ModelProto:
    """x[N,3,4,4] -> conv+relu -> boxes (1x1 conv, x100: pixels) and class scores (1x1 conv
    -> Sigmoid in [0, 1]) -> Concat -> one output [N, 4 + classes, 16] (YOLO-style).

    ``collapse_scores``: the score conv's weights are zero and its bias -6, so every score
    reads 0.0025 while the boxes are unchanged (what data-free pruning did to a detector)."""
    b = GraphBuilder(seed=seed)
    x = b.input(["N", 3, 4, 4], name="images")
    h = b.op("Relu", [b.conv(x, 3, 8, name="stem")])
    boxes = b.op("Mul", [b.conv(h, 8, 4, k=1, name="box"), b.init(np.float32(100.0))])
    w = b.rng.standard_normal((CLASSES, 8, 1, 1)).astype(np.float32)
    bias = np.zeros(CLASSES, np.float32)
    if collapse_scores:
        w[:] = 0.0
        bias[:] = -6.0
    scores = b.op("Sigmoid", [b.op("Conv", [h, b.init(w), b.init(bias)], name="cls")])
    flat = [b.op("Reshape", [t, b.ints([0, c, -1])]) for t, c in ((boxes, 4), (scores, CLASSES))]
    b.output(b.op("Concat", flat, axis=1, name="detections"))
    return b.model()


def classifier(opset: int = 13, seed: int = 0) -> onnx.ModelProto:
    """x[N,6] -> Gemm(6->4) -> Softmax: the metrics must read the Gemm output."""
    b = GraphBuilder(seed=seed, opset=opset)
    x = b.input(["N", 6], name="x")
    logits = b.op("Gemm", [x, b.weight(4, 6, scale=2.0), b.weight(4)], name="fc", transB=1)
    b.output(b.op("Softmax", [logits], axis=-1, name="probs"))
    return b.model()


def data_for(model: onnx.ModelProto, samples: int = 64, labels=None, seed: int = 1):
    specs = model_input_specs(model_from_proto(model))
    rng = np.random.default_rng(seed)
    arrays = {s.name: rng.standard_normal((samples, *s.shape[1:])).astype(np.float32)
              for s in specs}
    if labels is not None:
        arrays["labels"] = labels
    return DataSource.from_arrays(arrays, specs, origin="test")


def test_detector_whose_scores_collapse_reports_the_collapse():
    original, collapsed = detector(), detector(collapse_scores=True)
    data = data_for(original)
    result = fidelity(collapsed, original, data)
    (row,) = result["outputs"]
    assert [p["channels"] for p in row["parts"]] == [[0, 4], [4, 4 + CLASSES]]
    boxes, scores = row["parts"]
    assert boxes["cosine"] < 1e-6 and boxes["rel_mse"] < 1e-9 and scores["range"] == "[0, 1]"
    assert scores["rel_mse"] > 0.9 and scores["cosine"] > 0.2 and scores["agreement"] < 0.9
    assert result["cosine"] == max(row["cosine"], scores["cosine"])
    # the unstandardised cosine of the whole output barely moves: what the tool saw before
    heads = fidelity_heads(original)
    ref, _ = outputs_on(original, heads, data, 64)
    got, _ = outputs_on(collapsed, heads, data, 64)
    a, b = (v["detections_out"].reshape(64, -1) for v in (ref, got))
    raw = 1 - (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert raw.mean() < 0.01 and result["cosine"] > 20 * raw.mean()


def test_unchanged_detector_has_perfect_fidelity_in_every_part():
    original = detector()
    result = fidelity(detector(), original, data_for(original))
    assert result["cosine"] < 1e-9 and result["rel_mse"] < 1e-9
    assert all(p["cosine"] < 1e-9 for p in result["outputs"][0]["parts"])


def test_softmax_head_is_compared_on_its_logits_with_accuracy():
    original, other = classifier(), classifier(seed=5)
    labels = np.random.default_rng(0).integers(0, 4, 64).astype(np.int64)
    result = fidelity(other, original, data_for(original, labels=labels))
    (row,) = result["outputs"]
    assert row["kind"] == "softmax" and row["reads"] == "fc_out"
    assert {"kl", "agreement", "accuracy", "reference_accuracy"} <= set(result)
    itself = fidelity(original, original, data_for(original, labels=labels))
    assert itself["kl"] < 1e-9 and itself["agreement"] == 1.0
    assert itself["accuracy"] == itself["reference_accuracy"] == result["reference_accuracy"]


def test_sigmoid_head_gets_gate_agreement_on_logits():
    heads = [h for h in fidelity_heads(detector())]
    assert heads[0].kind == "plain"  # Concat: the detector's sigmoid sits inside a part
    b = GraphBuilder()
    x = b.input(["N", 5], name="x")
    b.output(b.op("Sigmoid", [b.op("Gemm", [x, b.weight(3, 5), b.weight(3)], name="fc",
                                   transB=1)], name="gate"))
    model = b.model()
    (head,) = fidelity_heads(model)
    flipped = {"fc_out": np.array([[1.0, -1.0, 2.0]] * 4)}
    reference = {"fc_out": np.array([[1.0, 1.0, 2.0]] * 4)}
    row = compare(flipped, reference, [head], None)
    assert row["outputs"][0]["kind"] == "sigmoid"
    assert abs(row["agreement"] - 2 / 3) < 1e-6 and row["kl"] > 0


def test_softmax_logits_shifted_per_row_are_the_same_distribution():
    (head,) = fidelity_heads(classifier())
    logits = np.random.default_rng(0).standard_normal((16, 4))
    shifted = logits + np.random.default_rng(1).standard_normal((16, 1)) * 5
    row = compare({"fc_out": shifted}, {"fc_out": logits}, [head], None)
    assert row["kl"] < 1e-9 and row["cosine"] < 1e-9 and row["rel_mse"] < 1e-9


def test_one_sample_of_class_scores_falls_back_to_plain_cosine():
    b = GraphBuilder()
    b.output(b.op("Identity", [b.input(["N", 4], name="x")]))
    (head,) = fidelity_heads(b.model())
    same = {head.logits: np.array([[1.0, 2.0, 3.0, 4.0]])}
    assert compare(same, same, [head], None)["cosine"] < 1e-12


def test_sensitivity_damage_reads_the_logits_behind_a_softmax():
    """The same network with and without a final Softmax: equal damage (KL on logits)."""
    from onnx import helper

    from onnxprune.analysis import analyze
    from onnxprune.calibration.sensitivity import measure_sensitivity
    from onnxprune.importance import score_units
    from tests.calibration.models import ir_model, mlp, random_data

    plain = mlp()
    wrapped = onnx.ModelProto()
    wrapped.CopyFrom(plain)
    logits = wrapped.graph.output[0].name
    wrapped.graph.node.append(helper.make_node("Softmax", [logits], ["probs"], axis=-1))
    wrapped.graph.output[0].name = "probs"
    damages = []
    for proto in (plain, wrapped):
        model = ir_model(proto)
        analysis = analyze(model)
        result = measure_sensitivity(proto, analysis, score_units(analysis, "l1"),
                                     random_data(model), [0.5])
        assert result.damage_metric == "kl"
        damages.append([p["kl"] for g in result.groups for p in g.points])
    assert damages[0] == pytest.approx(damages[1], rel=1e-5) and max(damages[0]) > 0.01
