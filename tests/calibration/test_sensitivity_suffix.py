"""Suffix caching, chunks, --samples and the executor of sensitivity cells
(onnxprune.calibration.sensitivity rules 5-7, suffix, sensitivity_run, sensitivity_samples)."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import parser

from onnxprune.analysis import analyze
from onnxprune.calibration import sensitivity_cells
from onnxprune.calibration.sensitivity import measure_sensitivity
from onnxprune.calibration.sensitivity_samples import boundary_groups, standard_error
from onnxprune.calibration.suffix import suffix_model, suffix_spec
from onnxprune.data import open_data
from onnxprune.graph import load_model
from onnxprune.graph.runtime import to_runtime_proto
from onnxprune.importance import score_units
from onnxprune.pipeline.sensitivity import sensitivity_file
from tests.calibration.models import DIGITS, DIGITS_TRAIN
from tests.conftest import MODELS
from tests.oracle import session

THIRDPARTY = MODELS / "thirdparty"

# residual Adds, Concat, attention heads, a recurrent layer
FIXTURES = [MODELS / "resnet_basic.ts.onnx", MODELS / "densenet_like.ts.onnx",
            MODELS / "vit_tiny.ts.onnx", THIRDPARTY / "gru_text.ts.onnx"]


def _values(result) -> list[tuple[int, float, str, float]]:
    return [(g.index, p["ratio"], key, value) for g in result.groups for p in g.points
            for key, value in p.items() if key not in ("ratio", "removed")]


def _assert_same_points(a, b, rtol=1e-5):
    assert [(g.index, [p["removed"] for p in g.points]) for g in a.groups] == \
        [(g.index, [p["removed"] for p in g.points]) for g in b.groups]
    for (ga, ra, ka, va), (gb, rb, kb, vb) in zip(_values(a), _values(b), strict=True):
        assert (ga, ra, ka) == (gb, rb, kb)
        assert va == pytest.approx(vb, rel=rtol, abs=1e-9), (ga, ra, ka)


@pytest.mark.parametrize("path", FIXTURES, ids=[p.name.split(".")[0] for p in FIXTURES])
def test_suffix_damage_equals_full_evaluation(path):
    common = {"ratios": (0.3, 0.7), "max_samples": 12, "batch_size": 4}
    full = sensitivity_file(path, suffix=False, **common)
    cached = sensitivity_file(path, **common)
    assert full.evaluation["suffix"] is False and cached.evaluation["suffix"] is True
    assert cached.num_samples == full.num_samples == 12 and cached.evaluation["cells"] > 0
    assert max(p["damage"] for g in cached.groups for p in g.points) > 1e-4  # not vacuous
    _assert_same_points(full, cached)


def test_a_late_change_runs_a_strictly_smaller_suffix():
    loaded = load_model(MODELS / "resnet_basic.ts.onnx")
    graph = to_runtime_proto(ir.serde.serialize_model(loaded.model)).graph
    last_conv = [n for n in graph.node if n.op_type == "Conv"][-1]
    spec = suffix_spec(graph, [last_conv.output[0]], masks=[])
    assert 0 < len(spec.nodes) < len(graph.node) // 4
    assert spec.outputs == tuple(o.name for o in graph.output)
    producers = {o for n in graph.node for o in n.output}
    assert last_conv.output[0] in spec.cached and set(spec.cached) <= producers
    assert suffix_spec(graph, [last_conv.output[0]], masks=[], full=True).nodes == tuple(
        range(len(graph.node)))


IF_MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
agraph (float[2, 3] x, float[1, 3] x__mask, bool c) => (float[2, 3] y) {
    a = Relu(x)
    m = Mul(a, x__mask)
    b = Abs(m)
    pre = Neg(x)
    y = If(c) <
        then_branch = g1 () => (float[2, 3] t) { t = Add(b, pre) },
        else_branch = g2 () => (float[2, 3] e) { e = Sub(pre, b) }
    >
}
"""


def test_suffix_keeps_outer_scope_reads_of_if_bodies():
    model = parser.parse_model(IF_MODEL)
    spec = suffix_spec(model.graph, ["x__mask"], masks=["x__mask"])
    kept = [model.graph.node[i].op_type for i in spec.nodes]
    assert kept == ["Mul", "Abs", "If"]  # If reads b only inside its branches
    assert set(spec.cached) == {"a", "pre", "c"} and spec.masks == ("x__mask",)
    x = np.array([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]], np.float32)
    sub = suffix_model(model, spec, {"a": x, "pre": x})
    onnx.checker.check_model(sub, full_check=True)
    mask = np.array([[1.0, 0.0, 1.0]], np.float32)
    for flag in (True, False):
        c = np.array(flag)
        whole = session(model).run(None, {"x": x, "x__mask": mask, "c": c})[0]
        part = session(sub).run(None, {"a": np.maximum(x, 0), "pre": -x, "x__mask": mask,
                                       "c": c})[0]
        np.testing.assert_array_equal(whole, part)


def _digits(samples: int):
    loaded = load_model(DIGITS)
    original = to_runtime_proto(ir.serde.serialize_model(loaded.model))
    analysis = analyze(loaded.model)
    data = open_data(DIGITS_TRAIN, loaded.model).take(samples)
    return original, analysis, score_units(analysis, "l1"), data


def test_suffix_sessions_are_built_once_per_group(monkeypatch):
    original, analysis, scores, data = _digits(48)
    built = []
    real = sensitivity_cells.suffix_model
    monkeypatch.setattr(sensitivity_cells, "suffix_model",
                        lambda proto, spec, arrays: built.append(spec) or real(proto, spec,
                                                                               arrays))
    sensitivity_cells.release()
    result = measure_sensitivity(original, analysis, scores, data, [0.2, 0.5, 0.8],
                                 batch_size=8)
    measured = [g for g in result.groups if any(p["removed"] for p in g.points)]
    assert result.evaluation["chunks"] == 1 and result.evaluation["cells"] > len(measured)
    assert len(built) == len(measured)  # 6 batches x 3 ratios, one session per group


def test_small_cache_splits_into_chunks_with_equal_results():
    original, analysis, scores, data = _digits(48)
    one = measure_sensitivity(original, analysis, scores, data, [0.5], batch_size=8)
    seen = []
    many = measure_sensitivity(original, analysis, scores, data, [0.5], batch_size=8,
                               cache_bytes=1, progress=lambda d, t: seen.append((d, t)))
    assert many.evaluation["chunks"] == 6  # one batch per chunk
    _assert_same_points(one, many, rtol=1e-9)
    assert seen[-1][0] == seen[-1][1] == 6 * many.evaluation["cells"]
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_samples_remeasures_the_boundary_groups_on_every_sample():
    original, analysis, scores, data = _digits(96)
    ratios = [0.3, 0.7]
    full = measure_sensitivity(original, analysis, scores, data, ratios, batch_size=16)
    sub = measure_sensitivity(original, analysis, scores, data.take(32, seed=5), ratios,
                              batch_size=16)
    mixed = measure_sensitivity(original, analysis, scores, data, ratios, batch_size=16,
                                samples=32, seed=5)
    info = mixed.subsample
    assert info["samples"] == 32 and info["remeasured_samples"] == 96 and info["seed"] == 5
    assert info["remeasured"] and len(info["remeasured"]) < len(mixed.groups)
    assert mixed.num_samples == 96 and mixed.baseline_accuracy == full.baseline_accuracy
    for group, f, s in zip(mixed.groups, full.groups, sub.groups, strict=True):
        again = group.index in info["remeasured"]
        assert group.samples == (96 if again else 32)
        assert group.points == (f.points if again else s.points)


def test_boundary_rule_picks_groups_near_the_median():
    tight = [(16, 16 * 0.01), (16, 16 * 0.0101)]  # small spread: small standard error
    assert standard_error([(16, 1.0)]) == float("inf")
    se = standard_error(tight)
    assert 0 < se < 1e-3
    points = {0: {0.5: (0.10, se)}, 1: {0.5: (0.50, se)}, 2: {0.5: (0.52, se)},
              3: {0.5: (2.00, se)}, 4: {0.5: (0.90, 0.5)}}
    # median 0.52: group 2 sits on it, 1 is within 10% of it, 4 is uncertain enough
    assert boundary_groups(points) == [1, 2, 4]


def test_prepared_reference_gives_exactly_the_same_comparison():
    from onnxprune.calibration.fidelity import compare, prepare
    from onnxprune.graph.outputs import OutputHead

    rng = np.random.default_rng(0)
    boxes = rng.standard_normal((6, 4, 5)) * 30.0  # unbounded rows next to [0, 1] scores
    scores = rng.uniform(0.0, 1.0, (6, 3, 5))
    reference = {"det": np.concatenate([boxes, scores], axis=1).astype(np.float32),
                 "logits": rng.standard_normal((6, 10)).astype(np.float32)}
    got = {k: v + rng.normal(0, 0.05, v.shape).astype(np.float32) for k, v in
           reference.items()}
    heads = [OutputHead("det", 0, "plain", "det"),
             OutputHead("prob", 1, "softmax", "logits", axis=1)]
    labels = rng.integers(0, 10, 6)
    plain = compare(got, reference, heads, labels)
    assert plain["outputs"][0].get("parts")  # the parts path is exercised
    assert compare(got, reference, heads, labels, prepare(reference, heads)) == plain
