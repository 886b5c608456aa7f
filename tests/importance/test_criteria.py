"""Importance criteria: definitions on known weights, determinism, no mutation."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from onnxprune.analysis import analyze
from onnxprune.errors import UsageError
from onnxprune.graph import load_model
from onnxprune.importance import CRITERIA, score_units
from onnxprune.importance.criteria import _fpgm_stat
from tests.builders import GraphBuilder
from tests.conftest import MODELS
from tests.oracle import load


def two_conv_model():
    b = GraphBuilder()
    x = b.input(["N", 2, 4, 4])
    w1 = np.zeros((3, 2, 1, 1), np.float32)
    w1[0] = 1.0
    w1[1] = -3.0
    w1[2] = 0.5
    h = b.op("Conv", [x, b.init(w1)], name="c1")
    h = b.op("BatchNormalization", [h, b.init(np.array([0.1, -2.0, 1.0], np.float32)),
                                    b.weight(3), b.weight(3), b.positive(3)])
    w2 = np.ones((1, 3, 1, 1), np.float32)
    b.output(b.op("Conv", [h, b.init(w2)], name="c2"))
    return b.model()


def first_group_scores(criterion):
    analysis = analyze(load(two_conv_model()))
    scores = score_units(analysis, criterion)
    return scores[analysis.groups[0].units]


def test_l1_sums_filter_and_consumer_slices():
    assert first_group_scores("l1") == pytest.approx([2 + 1, 6 + 1, 1 + 1])


def test_l2_is_root_of_summed_squares():
    assert first_group_scores("l2") == pytest.approx(np.sqrt([2 + 1, 18 + 1, 0.5 + 1]))


def test_bn_scale_is_abs_gamma():
    assert first_group_scores("bn_scale") == pytest.approx([0.1, 2.0, 1.0])


def test_fpgm_scores_distance_to_other_filters():
    filters = np.array([[0.0], [1.0], [10.0]])
    assert _fpgm_stat(filters, (1,)) == pytest.approx([11.0, 10.0, 19.0])


def test_random_is_seeded():
    analysis = analyze(load(two_conv_model()))
    assert np.array_equal(score_units(analysis, "random", 3), score_units(analysis, "random", 3))
    assert not np.array_equal(score_units(analysis, "random", 3),
                              score_units(analysis, "random", 4))


@pytest.mark.parametrize("criterion", sorted(CRITERIA))
def test_criteria_never_mutate_the_model(criterion):
    from onnx_ir import serde

    model = load_model(MODELS / "mobilenetv2.ts_keepbn.onnx").model
    analysis = analyze(model)
    before = hashlib.sha256(serde.serialize_model(model).SerializeToString()).hexdigest()
    scores = score_units(analysis, criterion)
    after = hashlib.sha256(serde.serialize_model(model).SerializeToString()).hexdigest()
    assert before == after
    assert scores.shape == (analysis.num_units,) and np.all(np.isfinite(scores))
    assert np.all(scores >= 0)


def test_unknown_criterion_is_usage_error():
    analysis = analyze(load(two_conv_model()))
    with pytest.raises(UsageError, match="unknown criterion"):
        score_units(analysis, "magic")
