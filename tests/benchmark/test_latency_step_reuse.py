"""Progressive ``--metric latency``: the table is measured once, every step plans on it."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxprune.analysis import analyze
from onnxprune.benchmark import latency_table as latency_table_module
from onnxprune.benchmark.latency_check import plan_latency_step
from onnxprune.benchmark.latency_slices import default_input_shapes
from onnxprune.benchmark.latency_table import LatencySettings, latency_table
from onnxprune.graph.io import model_from_proto
from onnxprune.planning import PlanOptions
from onnxprune.planning.latency_model import grid_counts, layer_specs
from onnxprune.rewrite import apply_plan
from tests.builders import GraphBuilder
from tests.fake_ort import FakeOrt

CPU = "CPUExecutionProvider"


def _model():
    b = GraphBuilder()
    x = b.input([1, 3, 16, 16])
    h = b.op("Relu", [b.conv(x, 3, 64, name="c1")])
    h = b.op("Relu", [b.conv(h, 64, 64, name="c2")])
    b.output(b.conv(h, 64, 16, name="c3"))
    return b.model()


def _fake_ort(proto) -> FakeOrt:
    """Layer times that scale with c_in * c_out; 0.1 ms that pruning does not change."""
    specs = layer_specs(analyze(model_from_proto(proto)), {})
    durations = {}
    for i, spec in enumerate(specs):
        c_in, c_out = grid_counts(spec)
        durations.update({f"s{i}_{a}x{b}.onnx": a * b / 64 / 64 * 1e-3
                          for a in c_in for b in c_out})
    durations["model.onnx"] = sum(s.c_in * s.c_out for s in specs) / 64 / 64 * 1e-3 + 1e-4
    return FakeOrt([CPU], durations=durations)


def test_progressive_steps_reuse_the_table_measured_once(tmp_path, monkeypatch):
    proto = _model()
    ort = _fake_ort(proto)
    analysis = analyze(model_from_proto(proto))
    settings = LatencySettings(runs=3, warmup=1, cache=str(tmp_path))
    shapes = default_input_shapes(proto)
    table, _, info = latency_table(proto, analysis, settings, shapes=shapes, ort=ort,
                                   clock=ort.clock)
    measured = len(ort.sessions)
    assert measured > 0 and not info["cache_hit"]

    def no_measuring(*args, **kwargs):
        raise AssertionError("a step measured the latency table again")

    monkeypatch.setattr(latency_table_module, "_measure", no_measuring)
    monkeypatch.setattr(latency_table_module, "measure_points", no_measuring)
    ratios = []
    model = proto
    for cumulative in (0.25, 0.5):  # the schedule's targets, of the ORIGINAL latency
        step = analyze(model_from_proto(model))
        scores = np.random.default_rng(0).random(step.num_units)
        plan, section = plan_latency_step(table, model, step, scores,
                                          PlanOptions(cumulative, "latency", round_to=None),
                                          shapes, cache=info["cache"])
        ratios.append(section["predicted"]["ratio"])
        assert section["predicted"]["original_ms"] == pytest.approx(table.whole_ms, abs=1e-4)
        assert section["cache"] == info["cache"] and 0 < section["step"]["target"] < 1
        assert ratios[-1] <= 1 - cumulative + 1e-6
        apply_plan(step, plan.removed_units)
        model = ir.serde.serialize_model(step.model)
    assert len(ort.sessions) == measured  # nothing was timed after the first table
    assert ratios[0] > ratios[1] > 0.3


def test_a_step_already_at_its_target_removes_nothing(tmp_path):
    proto = _model()
    ort = _fake_ort(proto)
    analysis = analyze(model_from_proto(proto))
    settings = LatencySettings(runs=2, warmup=0, cache=str(tmp_path))
    table, _, _ = latency_table(proto, analysis, settings, ort=ort, clock=ort.clock)
    scores = np.ones(analysis.num_units)
    plan, _ = plan_latency_step(table, proto, analysis, scores,
                                PlanOptions(0.5, "latency", round_to=None))
    apply_plan(analysis, plan.removed_units)
    pruned = ir.serde.serialize_model(analysis.model)
    again = analyze(model_from_proto(pruned))
    plan, section = plan_latency_step(table, pruned, again, np.ones(again.num_units),
                                      PlanOptions(0.4, "latency", round_to=None))
    assert not plan.removed_units.any() and section["step"]["target"] == 0.0
