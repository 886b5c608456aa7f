"""Capacity: prunable share and reachable maximum agree with the planner."""

from __future__ import annotations

import pytest

from onnxprune.analysis import analyze
from onnxprune.errors import UnreachableTargetError
from onnxprune.graph import load_model
from onnxprune.importance import score_units
from onnxprune.planning import PlanOptions, make_plan
from onnxprune.planning.capacity import capacity
from tests.conftest import MODELS


@pytest.fixture(scope="module")
def resnet():
    analysis = analyze(load_model(MODELS / "resnet_basic.ts.onnx").model)
    return analysis, score_units(analysis, "l1")


@pytest.mark.parametrize("metric", ["params", "flops"])
def test_maximum_is_the_planners_limit(resnet, metric):
    analysis, scores = resnet
    options = PlanOptions(0.5, metric, round_to=None)
    limit = capacity(analysis, options, scores).maximum[metric]
    assert 0.5 < limit < 1.0
    plan = make_plan(analysis, scores, PlanOptions(limit - 0.01, metric, round_to=None))
    assert plan.achieved <= limit + 1e-6
    with pytest.raises(UnreachableTargetError) as info:
        make_plan(analysis, scores, PlanOptions(min(limit + 0.01, 0.999), metric,
                                                round_to=None))
    assert info.value.maximum == pytest.approx(limit, abs=1e-6)


def test_prunable_share_bounds_the_maximum(resnet):
    analysis, scores = resnet
    result = capacity(analysis, scores=scores)
    for metric in ("params", "flops"):
        assert result.maximum[metric] <= result.prunable_share[metric] <= 1.0
