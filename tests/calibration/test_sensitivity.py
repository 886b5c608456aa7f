"""Sensitivity analysis over the fixture zoo, its oracle, and allocation by sensitivity."""

from __future__ import annotations

import json

import numpy as np
import onnx_ir as ir
import pytest

from onnxprune.analysis import analyze
from onnxprune.calibration.sensitivity import measure_sensitivity
from onnxprune.data import open_data
from onnxprune.graph import load_model
from onnxprune.graph.runtime import to_runtime_proto
from onnxprune.importance import score_units
from onnxprune.pipeline.sensitivity import sensitivity_file
from onnxprune.planning import PlanOptions, make_plan
from onnxprune.planning.allocation import make_sensitivity_plan
from onnxprune.planning.planner import group_options
from onnxprune.rewrite import apply_plan
from tests.calibration.models import DIGITS, DIGITS_TRAIN
from tests.conftest import MODELS
from tests.oracle import session

MANIFEST = json.loads((MODELS / "manifest.json").read_text())
IMAGE_MODELS = [e["file"] for e in MANIFEST if len(next(iter(e["inputs"].values()))) == 4]


def test_every_cnn_of_the_zoo_is_covered():
    names = {f.split(".")[0] for f in IMAGE_MODELS}
    assert {"resnet_basic", "mobilenetv2", "unet", "yolo_neck", "keras_cnn", "digits_cnn",
            "densenet_like", "convnext_like"} <= names


@pytest.mark.parametrize("file", IMAGE_MODELS, ids=[f.removesuffix(".onnx") for f in IMAGE_MODELS])
def test_sensitivity_json_lists_every_prunable_group(file):
    result = sensitivity_file(MODELS / file, ratios=(0.3, 0.7), max_samples=2, batch_size=2)
    document = json.loads(json.dumps(result.to_dict()))
    analysis = analyze(load_model(MODELS / file).model)
    assert [g["index"] for g in document["groups"]] == [g.index for g in analysis.prunable_groups]
    for group in document["groups"]:
        assert [p["ratio"] for p in group["points"]] == [0.3, 0.7]
        for point in group["points"]:
            assert np.isfinite(point["damage"]) and point["damage"] >= -1e-9
            assert 0 <= point["removed"] <= group["prunable_channels"]
    assert document["num_samples"] == 2 and document["damage_metric"] in ("kl", "cosine")


def test_masked_evaluation_equals_physical_pruning():
    loaded = load_model(DIGITS)
    original = to_runtime_proto(ir.serde.serialize_model(loaded.model))
    analysis = analyze(loaded.model)
    data = open_data(DIGITS_TRAIN, loaded.model).take(64)
    scores = score_units(analysis, "l1")
    result = measure_sensitivity(original, analysis, scores, data, [0.5], batch_size=16)
    assert result.baseline_accuracy == 1.0
    options = group_options(analysis, scores, PlanOptions(0.5))
    group = options[1]
    count = result.groups[1].points[0]["removed"]
    removed = np.zeros(analysis.num_units, dtype=bool)
    removed[group.group.units[group.removed(count)]] = True
    apply_plan(analysis, removed)
    feeds = next(data.batches(64))
    base = session(original).run(None, feeds)[0].astype(np.float64)
    pruned = session(to_runtime_proto(ir.serde.serialize_model(analysis.model))).run(
        None, feeds)[0].astype(np.float64)

    def log_softmax(x):
        x = x - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    kl = float((np.exp(log_softmax(base)) * (log_softmax(base) - log_softmax(pruned)))
               .sum(axis=1).mean())
    point = result.groups[1].points[0]
    assert point["kl"] == pytest.approx(kl, rel=1e-4, abs=1e-7)
    assert point["accuracy"] == pytest.approx(
        float((pruned.argmax(axis=1) == data.labels).mean()))


def test_sensitivity_allocation_reaches_the_target_with_less_damage():
    loaded = load_model(DIGITS)
    original = to_runtime_proto(ir.serde.serialize_model(loaded.model))
    analysis = analyze(loaded.model)
    data = open_data(DIGITS_TRAIN, loaded.model).take(128)
    scores = score_units(analysis, "l1")
    options = PlanOptions(0.5)
    measured = measure_sensitivity(original, analysis, scores, data, [0.1, 0.3, 0.5, 0.7, 0.9],
                                   plan_options=options)
    plan = make_sensitivity_plan(analysis, scores, options, measured)
    baseline = make_plan(analysis, scores, options)
    assert plan.achieved >= 0.5 - 1e-9

    def damage(p):
        total = 0.0
        for group in measured.groups:
            removed = group.channels - p.kept[group.index]
            xs, ys = zip(*measured.curve(group.index))
            total += float(np.interp(removed, xs, np.maximum.accumulate(ys)))
        return total

    assert damage(plan) < damage(baseline)


def test_sensitivity_refuses_bad_ratios():
    from onnxprune.errors import UsageError

    with pytest.raises(UsageError):
        sensitivity_file(DIGITS, ratios=(0.0, 1.2), max_samples=2)
