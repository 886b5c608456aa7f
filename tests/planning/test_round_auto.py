"""``--round-to auto`` per group: step edges of synthetic step tables, and plans on them."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest

from onnxprune.analysis import analyze
from onnxprune.graph.io import model_from_proto
from onnxprune.planning import PlanOptions, make_plan
from onnxprune.planning.latency import make_latency_plan
from onnxprune.planning.latency_model import LatencyTable, grid_counts, layer_specs
from onnxprune.planning.round_auto import (
    PROBE_COUNTS,
    axis_block,
    group_blocks,
    group_round,
    layer_blocks,
    step_edges,
)
from tests.builders import GraphBuilder
from tests.oracle import prune_and_check


def _stairs(block: int, width: int = 64) -> dict[int, float]:
    """0.1 ms per started block of ``block`` channels, at the probed counts."""
    return {c: 0.1 * math.ceil(c / block) for c in PROBE_COUNTS if c <= width}


def _linear(width: int = 64) -> dict[int, float]:
    return {c: 0.01 * c + 0.05 for c in PROBE_COUNTS if c <= width}


def test_step_edges_are_the_right_ends_of_the_plateaus():
    assert step_edges(_stairs(16)) == [16, 32, 48]
    assert axis_block(_stairs(16)) == 16 and axis_block(_stairs(8)) == 8
    # fast only at multiples of 4, and those padded to 16 (ORT's NCHWc depthwise convs):
    # 4, 8 and 12 cost what 16 costs, so only multiples of 16 are edges
    fast4 = {c: 0.1 * math.ceil(c / 16) if c % 4 == 0 else 0.05 * c for c in PROBE_COUNTS}
    assert axis_block(fast4) == 16


def test_linear_tiny_and_narrow_axes_have_no_block():
    assert axis_block(_linear()) is None                         # every count is an edge
    assert axis_block({c: 0.001 * math.ceil(c / 16) for c in PROBE_COUNTS}) is None  # µs
    assert axis_block(_stairs(16), width=16) is None             # no edge below the width
    assert axis_block(_stairs(16, width=33), width=33) == 16


def _chain(width: int = 32) -> object:
    """x -> c1 (3->W) -> Relu -> c2 (W->W) -> Relu -> c3 (W->8): groups G1, G2 of W."""
    b = GraphBuilder()
    x = b.input([1, 3, 8, 8])
    h = b.op("Relu", [b.conv(x, 3, width, name="c1")])
    h = b.op("Relu", [b.conv(h, width, width, name="c2")])
    b.output(b.conv(h, width, 8, name="c3"))
    return b.model()


# c1's output steps every 16 channels, c2's output every 4; c2's and c3's inputs are linear
STEPS = {"c1_out": {"out": _stairs(16)},
         "c2_out": {"in": _linear(), "out": _stairs(4)},
         "c3_out": {"in": _linear(), "out": _linear(8)}}


def _group(analysis, source: str) -> int:
    return next(g.index for g in analysis.prunable_groups
                if any(s.node == source for s in g.sources))


def _setup(steps=STEPS, width: int = 32):
    analysis = analyze(model_from_proto(_chain(width)))
    specs = layer_specs(analysis, {})
    blocks = group_blocks(analysis, specs, layer_blocks(steps, specs))
    return analysis, specs, blocks


def test_each_group_takes_the_largest_block_of_its_layers():
    analysis, _, blocks = _setup()
    assert blocks == {_group(analysis, "c1"): 16, _group(analysis, "c2"): 4}
    assert group_round(analysis, blocks) == (("c1", 16), ("c2", 4))


@pytest.mark.parametrize("target", [0.3, 0.5, 0.7])
def test_flops_plan_keeps_every_group_on_its_step_edges(target):
    analysis, _, blocks = _setup()
    options = PlanOptions(target, "flops", round_to=None, min_keep=0.1,
                          group_round=group_round(analysis, blocks))
    plan = make_plan(analysis, np.random.default_rng(0).random(analysis.num_units), options)
    g1, g2 = _group(analysis, "c1"), _group(analysis, "c2")
    assert plan.kept[g1] in (16, 32) and plan.kept[g2] % 4 == 0 and plan.kept[g2] >= 4
    assert plan.achieved >= target - 1e-9
    # without the measurement both groups would be on multiples of 8
    default = make_plan(analysis, np.random.default_rng(0).random(analysis.num_units),
                        PlanOptions(target, "flops", round_to=None))
    assert all(k % 8 == 0 for k in default.kept.values())


def test_latency_plan_on_a_stepped_table_lands_on_the_edges():
    """The table's times step every 16 channels of G1; with auto the plan keeps 16."""
    analysis, specs, blocks = _setup()
    layers = {}
    for spec in specs:
        c_in, c_out = grid_counts(spec)
        layers[spec.name] = {"c_in": c_in, "c_out": c_out,
                             "ms": [[math.ceil(b / 16) if spec.name == "c1_out" else 0.0
                                     for b in c_out] for a in c_in]}
    table = LatencyTable(layers, 2.0)
    options = PlanOptions(0.5, "latency", round_to=None,
                          group_round=group_round(analysis, blocks))
    plan = make_latency_plan(analysis, np.ones(analysis.num_units), options, table, specs)
    assert plan.kept[_group(analysis, "c1")] == 16 and plan.predicted_ms == pytest.approx(1.0)


def test_min_keep_and_ignore_hold_with_auto():
    analysis, _, blocks = _setup()
    options = PlanOptions(0.6, "flops", round_to=None, min_keep=0.5,
                          group_round=group_round(analysis, blocks))
    plan = make_plan(analysis, np.ones(analysis.num_units), options)
    assert plan.kept[_group(analysis, "c2")] >= 16 and plan.kept[_group(analysis, "c1")] >= 16
    analysis, _, blocks = _setup()
    analysis.ignore(["c2"])
    pairs = group_round(analysis, blocks)
    assert pairs == (("c1", 16),)  # an ignored group is not prunable and gets no block
    plan = make_plan(analysis, np.ones(analysis.num_units),
                     PlanOptions(0.3, "flops", round_to=None, group_round=pairs))
    assert set(plan.kept) == {_group(analysis, "c1")}


def _residual() -> object:
    """c1 and c2 outputs are added: one coupled group with two sources."""
    b = GraphBuilder()
    x = b.input([1, 3, 8, 8])
    a = b.conv(x, 3, 32, name="c1")
    s = b.op("Add", [a, b.conv(b.op("Relu", [a]), 32, 32, name="c2")])
    b.output(b.conv(s, 32, 8, name="c3"))
    return b.model()


def test_coupled_group_takes_the_block_of_all_its_sources():
    analysis = analyze(model_from_proto(_residual()))
    specs = layer_specs(analysis, {})
    steps = {"c1_out": {"out": _stairs(4)}, "c2_out": {"in": _linear(), "out": _stairs(16)},
             "c3_out": {"in": _stairs(8)}}
    blocks = group_blocks(analysis, specs, layer_blocks(steps, specs))
    coupled = _group(analysis, "c2")
    assert coupled == _group(analysis, "c1") and blocks[coupled] == 16
    assert ("c1", 16) in group_round(analysis, blocks)


def test_head_groups_convert_the_channel_block_to_heads():
    options = PlanOptions(0.5, group_round=(("q", 16),), round_to=None)

    def group(unit_size: int, node: str = "q"):
        return types.SimpleNamespace(sources=[types.SimpleNamespace(node=node)],
                                     unit_size=unit_size)

    assert options.unit_multiple(group(64)) == 1    # any head count of 64 channels
    assert options.unit_multiple(group(4)) == 4     # 4 heads of 4 = 16 channels
    assert options.unit_multiple(group(1, "other")) == 8  # unlisted: the default
    assert PlanOptions(0.5, group_round=(("q", 16),), round_to=2).unit_multiple(group(1)) == 2


def test_auto_plan_passes_the_masked_equivalence_oracle():
    def planner(analysis, scores, options):
        specs = layer_specs(analysis, {})
        pairs = group_round(analysis, group_blocks(analysis, specs, layer_blocks(STEPS, specs)))
        return make_plan(analysis, scores, PlanOptions(options.target, "flops", round_to=None,
                                                       group_round=pairs))

    checked = prune_and_check(_chain(), 0.5, metric="flops", planner=planner, batches=(1,))
    assert checked.plan.removed_units.any()
    assert checked.plan.kept[_group(checked.analysis, "c1")] % 16 == 0
