"""Planning: targets, scopes, floors, rounding, ignore patterns, unreachable targets."""

from __future__ import annotations

import numpy as np
import pytest

from onnxprune.analysis import analyze
from onnxprune.errors import UnreachableTargetError, UsageError
from onnxprune.graph import load_model
from onnxprune.importance import score_units
from onnxprune.planning import CostModel, PlanOptions, make_plan
from tests.conftest import MODELS

RESNET = MODELS / "resnet_bottleneck.dynamo_keepbn.onnx"


@pytest.fixture(scope="module")
def resnet():
    analysis = analyze(load_model(RESNET).model)
    return analysis, score_units(analysis, "l1")


@pytest.fixture(scope="module")
def resnet50(tmp_path_factory):
    """Full-width ResNet-50-like graph: groups large enough for a fine uniform ratio."""
    import sys

    import onnx

    sys.path.insert(0, str(MODELS.parent.parent / "benchmarks"))
    from resnet50_like import build

    path = tmp_path_factory.mktemp("r50") / "r50.onnx"
    onnx.save(build(1), path)
    analysis = analyze(load_model(path).model)
    return analysis, score_units(analysis, "l1")


@pytest.mark.parametrize("metric", ["params", "flops"])
@pytest.mark.parametrize("target", [0.2, 0.5, 0.8])
def test_global_target_is_reached_closely(resnet, metric, target):
    analysis, scores = resnet
    plan = make_plan(analysis, scores, PlanOptions(target, metric, "global"))
    assert target <= plan.achieved <= target + 0.02
    recomputed = CostModel(analysis).reduction(plan.removed_units, metric)
    assert recomputed == pytest.approx(plan.achieved)


@pytest.mark.parametrize("metric", ["params", "flops"])
@pytest.mark.parametrize("target", [0.2, 0.5])
def test_uniform_target_is_reached_closely_on_wide_groups(resnet50, metric, target):
    analysis, scores = resnet50
    plan = make_plan(analysis, scores, PlanOptions(target, metric, "uniform"))
    assert target <= plan.achieved <= target + 0.02


def test_uniform_target_on_narrow_groups_is_the_smallest_ratio_reaching_it(resnet):
    analysis, scores = resnet
    plan = make_plan(analysis, scores, PlanOptions(0.2, "flops", "uniform"))
    assert plan.achieved >= 0.2
    ratio = max(1 - plan.kept[g.index] / g.size for g in analysis.prunable_groups)
    smaller = {g.index: g.size - int(np.floor((ratio - 1e-6) * g.size))
               for g in analysis.prunable_groups}
    removed = np.zeros(analysis.num_units, dtype=bool)
    for group in analysis.prunable_groups:
        order = np.argsort(scores[group.units])
        removed[group.units[order[: group.size - smaller[group.index]]]] = True
    assert CostModel(analysis).reduction(removed, "flops") < 0.2


def test_uniform_scope_prunes_groups_by_the_same_ratio(resnet):
    analysis, scores = resnet
    plan = make_plan(analysis, scores, PlanOptions(0.4, "params", "uniform"))
    ratios = [1 - plan.kept[g.index] / g.size for g in analysis.prunable_groups]
    assert max(ratios) - min(ratios) <= max(1 / g.size for g in analysis.prunable_groups) + 1e-9


def test_global_scope_prunes_unevenly(resnet):
    analysis, scores = resnet
    plan = make_plan(analysis, scores, PlanOptions(0.4, "params", "global"))
    ratios = {round(1 - plan.kept[g.index] / g.size, 2) for g in analysis.prunable_groups}
    assert len(ratios) > 2


def test_min_keep_floor_holds(resnet):
    analysis, scores = resnet
    plan = make_plan(analysis, scores, PlanOptions(0.7, "params", "global", min_keep=0.25))
    for group in analysis.prunable_groups:
        assert plan.kept[group.index] >= np.ceil(0.25 * group.size)


def test_round_to_keeps_multiples(resnet):
    analysis, scores = resnet
    plan = make_plan(analysis, scores, PlanOptions(0.5, "flops", "global", round_to=8))
    for group in analysis.prunable_groups:
        kept = plan.kept[group.index]
        assert kept == group.size or kept % 8 == 0


def test_compress_default_keeps_multiples_of_8_channels(resnet):
    """Unset round_to (what compress passes by default) rounds kept channels to 8."""
    from onnxprune.options import CompressOptions

    analysis, scores = resnet
    options = CompressOptions(target=0.5, metric="flops").plan_options()
    assert options.round_to is None
    plan = make_plan(analysis, scores, options)
    assert any(plan.kept[g.index] < g.size for g in analysis.prunable_groups)
    for group in analysis.prunable_groups:
        kept = plan.kept[group.index]
        assert kept == group.size or kept % 8 == 0


@pytest.mark.parametrize(("head_width", "multiple"), [(1, 8), (4, 2), (8, 1), (64, 1), (12, 2)],
                         ids=["channels", "heads_of_4", "heads_of_8", "heads_of_64",
                              "heads_of_12"])
def test_default_rounding_counts_channels_not_heads(head_width, multiple):
    from onnxprune.analysis.groups import Group

    group = Group.__new__(Group)
    group.unit_size = head_width
    assert PlanOptions(0.5, round_to=None).unit_multiple(group) == multiple
    assert PlanOptions(0.5, round_to=3).unit_multiple(group) == 3  # explicit: units


def test_unreachable_target_names_the_default_rounding(resnet):
    analysis, scores = resnet
    with pytest.raises(UnreachableTargetError, match="round_to=8 channels"):
        make_plan(analysis, scores, PlanOptions(0.97, "params", round_to=None, min_keep=0.5))


def test_unreachable_target_states_the_maximum(resnet):
    analysis, scores = resnet
    with pytest.raises(UnreachableTargetError) as info:
        make_plan(analysis, scores, PlanOptions(0.95, "params", "global", min_keep=0.5))
    assert 0 < info.value.maximum < 0.95
    assert f"{info.value.maximum:.3f}" in str(info.value)


@pytest.mark.parametrize("bad", [dict(target=0.0), dict(target=1.0), dict(metric="latency"),
                                 dict(scope="layer"), dict(round_to=0), dict(min_keep=-1)])
def test_bad_options_are_usage_errors(resnet, bad):
    analysis, scores = resnet
    values = dict(target=0.5) | bad
    with pytest.raises(UsageError):
        make_plan(analysis, scores, PlanOptions(**values))


def test_ignore_pattern_keeps_matching_groups_whole():
    analysis = analyze(load_model(RESNET).model)
    first = analysis.prunable_groups[0]
    pattern = first.sources[0].node
    analysis.ignore([pattern])
    assert not first.prunable
    assert any("--ignore" in r for r in first.reasons)
    plan = make_plan(analysis, score_units(analysis), PlanOptions(0.3))
    assert plan.kept.get(first.index, first.size) == first.size


def test_lower_scores_are_removed_first(resnet):
    analysis, scores = resnet
    plan = make_plan(analysis, scores, PlanOptions(0.3, "params", "uniform"))
    for group in analysis.prunable_groups:
        removed = plan.removed_units[group.units]
        if removed.any() and (~removed).any():
            assert scores[group.units][removed].max() <= scores[group.units][~removed].min()


@pytest.mark.parametrize("name", ["resnext.ts", "yolo_neck.ts", "bert_tiny.dynamo",
                                  "densenet_like.dynamo_keepbn"])
def test_incremental_cost_equals_fresh_evaluation(name):
    analysis = analyze(load_model(MODELS / f"{name}.onnx").model)
    incremental = CostModel(analysis)
    rng = np.random.default_rng(0)
    for _ in range(12):
        removed = rng.random(analysis.num_units) < rng.uniform(0, 0.6)
        got = incremental.evaluate(removed)
        fresh = CostModel(analysis).evaluate(removed)
        assert got == fresh
