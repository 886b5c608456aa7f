"""Progressive ``--metric latency``: step models plan on the table measured once."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir
import pytest

from onnxprune.analysis import analyze
from onnxprune.errors import UsageError
from onnxprune.graph.io import model_from_proto
from onnxprune.planning import PlanOptions, make_plan
from onnxprune.planning.latency import make_latency_plan
from onnxprune.planning.latency_model import LatencyTable, grid_counts, layer_specs
from onnxprune.planning.latency_steps import step_table, step_target
from onnxprune.rewrite import apply_plan
from tests.builders import GraphBuilder

FIXED, FRACTION = 1.0, 0.8


def _chain(width: int = 64) -> object:
    b = GraphBuilder()
    x = b.input([1, 3, 8, 8])
    h = b.op("Relu", [b.conv(x, 3, width, name="c1")])
    h = b.op("Relu", [b.conv(h, width, width, name="c2")])
    h = b.op("Relu", [b.conv(h, width, width, group=width, name="dw")])
    b.output(b.conv(h, width, 8, name="c3"))
    return b.model()


def _table(analysis, ms) -> tuple[LatencyTable, list]:
    """What measuring ``analysis.model`` would give: ``ms`` on every grid point, the
    whole model ``FIXED`` plus the layers at a context fraction of ``FRACTION``."""
    specs = layer_specs(analysis, {})
    layers = {}
    for spec in specs:
        c_in, c_out = grid_counts(spec)
        if spec.depthwise:
            layers[spec.name] = {"c_in": c_in, "c_out": c_out,
                                 "ms": [[ms(spec.name, c, c) for c in c_in]]}
        else:
            layers[spec.name] = {"c_in": c_in, "c_out": c_out,
                                 "ms": [[ms(spec.name, a, b) for b in c_out] for a in c_in]}
    table = LatencyTable(layers, 0.0, depthwise=tuple(s.name for s in specs if s.depthwise))
    modelled = table.modelled_ms
    table.whole_ms = modelled / FRACTION
    table.context_fraction = FRACTION
    return table, specs


def _pruned(target: float):
    analysis = analyze(model_from_proto(_chain()))
    plan = make_plan(analysis, np.random.default_rng(1).random(analysis.num_units),
                     PlanOptions(target, "flops", round_to=None))
    apply_plan(analysis, plan.removed_units)
    step = analyze(model_from_proto(ir.serde.serialize_model(analysis.model)))
    return step, plan


BILINEAR = {"name": "bilinear", "ms": lambda n, a, b: a * b / 256 + 0.02 * a,
            "tolerance": 1e-9}
CURVED = {"name": "curved", "ms": lambda n, a, b: (a * b) ** 1.2 / 400 + 0.05,
          "tolerance": 0.03}


@pytest.mark.parametrize("case", [BILINEAR, CURVED], ids=lambda c: c["name"])
def test_step_table_predicts_what_a_fresh_table_on_the_pruned_model_would(case):
    original, _ = _table(analyze(model_from_proto(_chain())), case["ms"])
    step_analysis, plan = _pruned(0.4)
    assert any(kept < 64 for kept in plan.kept.values())
    specs = layer_specs(step_analysis, {})
    reused = step_table(original, specs)
    fresh, _ = _table(step_analysis, case["ms"])
    # a fresh measurement keeps the original's fixed part and scale (same runtime)
    fresh.whole_ms = original.fixed_ms + original.scale * fresh.modelled_ms
    fresh.context_fraction = original.scale * fresh.modelled_ms / fresh.whole_ms
    assert reused.fixed_ms == pytest.approx(original.fixed_ms)
    assert reused.scale == pytest.approx(original.scale)
    assert reused.whole_ms == pytest.approx(fresh.whole_ms, rel=case["tolerance"])
    assert set(reused.layers) == set(fresh.layers) and reused.meta["unmatched"] == []
    scores = np.random.default_rng(2).random(step_analysis.num_units)
    options = PlanOptions(0.3, "latency", round_to=None)
    on_reused = make_latency_plan(step_analysis, scores, options, reused, specs)
    on_fresh = make_latency_plan(step_analysis, scores, options, fresh, specs)
    assert on_reused.predicted_ms == pytest.approx(on_fresh.predicted_ms,
                                                   rel=case["tolerance"] + 1e-9)
    if case["tolerance"] < 1e-6:
        assert on_reused.kept == on_fresh.kept


def test_step_table_of_the_unpruned_model_is_the_original():
    analysis = analyze(model_from_proto(_chain()))
    original, specs = _table(analysis, CURVED["ms"])
    same = step_table(original, specs)
    assert same.whole_ms == pytest.approx(original.whole_ms)
    for name, entry in original.layers.items():
        assert same.layers[name]["c_in"] == entry["c_in"]
        assert np.allclose(same.layers[name]["ms"], entry["ms"])


def test_layers_missing_from_the_original_table_stay_unmodelled():
    analysis = analyze(model_from_proto(_chain()))
    original, specs = _table(analysis, BILINEAR["ms"])
    del original.layers["c2_out"]
    step = step_table(original, specs)
    assert step.meta["unmatched"] == ["c2_out"] and "c2_out" not in step.layers
    renamed = [dataclasses.replace(s, name="other") if s.name == "c1_out" else s for s in specs]
    assert "c1_out" not in step_table(original, renamed).layers


def test_step_target_is_relative_to_the_original_prediction():
    assert step_target(10.0, 10.0, 0.3) == pytest.approx(0.3)
    assert step_target(10.0, 8.0, 0.5) == pytest.approx(1 - 5 / 8)  # 8 ms -> 5 ms
    assert step_target(10.0, 4.0, 0.5) == 0.0                        # already below 5 ms
    with pytest.raises(UsageError):
        step_target(10.0, 8.0, 1.0)
