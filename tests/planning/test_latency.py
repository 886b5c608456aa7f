"""Latency planning on hand-made latency tables: which channels go, floors, rounding."""

from __future__ import annotations

import numpy as np
import pytest

from onnxprune.analysis import analyze
from onnxprune.errors import UnreachableTargetError, UsageError
from onnxprune.graph.io import model_from_proto
from onnxprune.planning import PlanOptions, latency
from onnxprune.planning.latency import make_latency_plan
from onnxprune.planning.latency_model import LatencyTable, grid_counts, layer_specs
from tests.builders import GraphBuilder
from tests.oracle import prune_and_check


@pytest.fixture(autouse=True, params=["exact", "greedy"])
def search(request, monkeypatch):
    """Every test runs with the exhaustive search and with greedy + trim + swaps."""
    if request.param == "greedy":
        monkeypatch.setattr(latency, "EXACT_SEARCH_LIMIT", 0)
    return request.param


def _chain() -> object:
    """x -> c1 (3->16) -> Relu -> c2 (16->16) -> Relu -> c3 (16->8): two groups of 16."""
    b = GraphBuilder()
    x = b.input([1, 3, 8, 8])
    h = b.op("Relu", [b.conv(x, 3, 16, name="c1")])
    h = b.op("Relu", [b.conv(h, 16, 16, name="c2")])
    b.output(b.conv(h, 16, 8, name="c3"))
    return b.model()


def _setup(ms, fixed: float = 0.0):
    """Analysis, specs and a table with ``ms(layer, c_in, c_out)`` on every grid point."""
    analysis = analyze(model_from_proto(_chain()))
    specs = layer_specs(analysis, {})
    layers = {}
    for spec in specs:
        c_in, c_out = grid_counts(spec)
        layers[spec.name] = {"c_in": c_in, "c_out": c_out,
                             "ms": [[ms(spec.name, a, b) for b in c_out] for a in c_in]}
    total = sum(ms(s.name, s.c_in, s.c_out) for s in specs)
    return analysis, specs, LatencyTable(layers, total + fixed)


def _group(analysis, source: str) -> int:
    return next(g.index for g in analysis.prunable_groups
                if any(s.node == source for s in g.sources))


def _scores(analysis, low_in: str | None = None) -> np.ndarray:
    """Score 1 everywhere; in ``low_in``'s group the first half scores 0.1, the rest 1.9."""
    scores = np.ones(analysis.num_units)
    if low_in is not None:
        group = analysis.groups[_group(analysis, low_in)]
        half = group.size // 2
        scores[group.units[:half]] = 0.1
        scores[group.units[half:]] = 1.9
    return scores


def test_latency_plan_prunes_the_group_whose_channels_cost_time():
    # only c2's input channels (c1's group) cost time: c2's output channels are free
    analysis, specs, table = _setup(lambda name, a, b: a / 16 if name == "c2_out" else 0.0)
    plan = make_latency_plan(analysis, _scores(analysis), PlanOptions(0.5, "latency",
                                                                      round_to=None),
                             table, specs)
    assert plan.kept == {_group(analysis, "c1"): 8, _group(analysis, "c2"): 16}
    assert plan.predicted_ms == pytest.approx(0.5) and plan.achieved == pytest.approx(0.5)


def test_latency_plan_spends_importance_where_it_is_cheapest():
    # equal time per channel in both groups; c2's group has eight unimportant channels
    def ms(name, a, b):
        return {"c2_out": a / 32, "c3_out": a / 32}.get(name, 0.0)

    analysis, specs, table = _setup(ms)
    scores = _scores(analysis, low_in="c2")
    plan = make_latency_plan(analysis, scores, PlanOptions(0.25, "latency", round_to=None),
                             table, specs)
    g2 = analysis.groups[_group(analysis, "c2")]
    assert plan.kept == {_group(analysis, "c1"): 16, g2.index: 8}
    assert set(np.flatnonzero(plan.removed_units)) == set(g2.units[:8].tolist())


def test_fixed_time_counts_in_the_target():
    # 1 ms modelled in c1's group, 1 ms fixed: removing 25% needs half of the modelled part
    analysis, specs, table = _setup(lambda name, a, b: a / 16 if name == "c2_out" else 0.0,
                                    fixed=1.0)
    plan = make_latency_plan(analysis, _scores(analysis), PlanOptions(0.25, "latency",
                                                                      round_to=None),
                             table, specs)
    assert plan.original_ms == pytest.approx(2.0) and plan.predicted_ms == pytest.approx(1.5)
    with pytest.raises(UnreachableTargetError, match="unreachable") as info:
        make_latency_plan(analysis, _scores(analysis), PlanOptions(0.6, "latency"), table,
                          specs)
    assert info.value.maximum < 0.5


@pytest.mark.parametrize("round_to", [1, 4, 8])
def test_round_to_and_min_keep_hold_under_latency(round_to):
    analysis, specs, table = _setup(lambda name, a, b: a * b / 256 if name != "c1_out" else 0.)
    plan = make_latency_plan(analysis, _scores(analysis),
                             PlanOptions(0.6, "latency", round_to=round_to, min_keep=0.25),
                             table, specs)
    for group, kept in plan.kept.items():
        size = analysis.groups[group].size
        assert kept == size or kept % round_to == 0
        assert kept >= 4


def test_ignored_group_stays_whole():
    analysis, specs, table = _setup(lambda name, a, b: a * b / 256 if name != "c1_out" else 0.)
    analysis.ignore(["c2"])
    plan = make_latency_plan(analysis, _scores(analysis), PlanOptions(0.3, "latency",
                                                                      round_to=None),
                             table, specs)
    assert _group(analysis, "c1") in plan.kept
    assert all(not any(s.node == "c2" for s in analysis.groups[g].sources) for g in plan.kept)


def test_uniform_scope_is_refused():
    analysis, specs, table = _setup(lambda name, a, b: 1.0)
    with pytest.raises(UsageError, match="globally"):
        make_latency_plan(analysis, _scores(analysis),
                          PlanOptions(0.3, "latency", scope="uniform"), table, specs)


def test_latency_plan_passes_the_masked_equivalence_oracle():
    def planner(analysis, scores, options):
        specs = layer_specs(analysis, {})
        layers = {}
        for spec in specs:
            c_in, c_out = grid_counts(spec)
            layers[spec.name] = {"c_in": c_in, "c_out": c_out,
                                 "ms": [[a * b / 256 for b in c_out] for a in c_in]}
        table = LatencyTable(layers, sum(s.c_in * s.c_out / 256 for s in specs))
        return make_latency_plan(analysis, scores, options, table, specs)

    checked = prune_and_check(_chain(), 0.5, metric="latency", round_to=None,
                              planner=planner, batches=(1,))
    assert checked.plan.metric == "latency" and checked.plan.removed_units.any()
