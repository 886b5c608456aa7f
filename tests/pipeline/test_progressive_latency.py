"""Progressive pruning with ``--metric latency`` (pipeline.steps rule 9): one latency
table of the original for every step, cumulative targets, one final measurement."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime
import pytest
from click.testing import CliRunner

from onnxprune.analysis import analyze
from onnxprune.benchmark.latency_slices import default_input_shapes, value_shapes
from onnxprune.benchmark.latency_table import LatencySettings, latency_table
from onnxprune.cli import main
from onnxprune.graph import load_model
from onnxprune.graph.runtime import to_runtime_proto
from onnxprune.planning.latency_model import grid_counts, layer_specs
from onnxprune.training.ort import training_available
from tests.builders import GraphBuilder
from tests.fake_ort import FakeOrt

pytestmark = pytest.mark.skipif(not training_available(),
                                reason="needs the ONNX Runtime training build")


def _model() -> onnx.ModelProto:
    b = GraphBuilder(seed=0)
    x = b.input(["N", 3, 16, 16])
    h = b.op("Relu", [b.conv(x, 3, 64, name="c1")])
    h = b.op("Relu", [b.conv(h, 64, 64, name="c2")])
    b.output(b.conv(h, 64, 8, name="c3"))
    return b.model()


def _seed_cache(path, cache) -> None:
    """The original's table on a fake runtime (times scale with c_in * c_out) under the
    real runtime's version: the plans do not depend on this machine's load."""
    loaded = load_model(path)
    proto = to_runtime_proto(ir.serde.serialize_model(loaded.model))
    specs = layer_specs(analyze(loaded.model), value_shapes(proto, default_input_shapes(proto)))
    assert len(specs) == 3
    durations = {"model.onnx": 0.00015}  # the modelled layers take 0.117 ms of it
    for i, spec in enumerate(specs):
        c_in, c_out = grid_counts(spec)
        durations.update({f"s{i}_{a}x{b}.onnx": a * b / 64 / 64 * 1e-4
                          for a in c_in for b in c_out})
    ort = FakeOrt(["CPUExecutionProvider"], durations=durations)
    ort.__version__ = onnxruntime.__version__
    settings = LatencySettings(runs=3, warmup=1, cache=str(cache))
    latency_table(proto, analyze(loaded.model), settings, ort=ort, clock=ort.clock)


def test_progressive_latency_plans_every_step_on_the_original_table(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_model(), path)
    name = onnx.load(path).graph.input[0].name
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", **{name: rng.standard_normal((64, 3, 16, 16), np.float32)})
    np.savez(tmp_path / "e.npz", **{name: rng.standard_normal((32, 3, 16, 16), np.float32)})
    cache = tmp_path / "cache"
    _seed_cache(path, cache)
    tables = sorted(cache.glob("*.json"))
    args = ["compress", str(path), "-t", "0.5", "--metric", "latency", "--steps", "2",
            "--train-steps", "1", "--round-to", "8", "--data", str(tmp_path / "d.npz"),
            "--eval-data", str(tmp_path / "e.npz"), "--latency-cache", str(cache),
            "--bench-runs", "3", "--accept-drop", "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.output[result.output.index("{"):])
    assert sorted(cache.glob("*.json")) == tables  # no step model was timed
    section = document["latency"]
    assert section["cache_hit"] and section["cache"] == str(tables[0])
    steps = document["steps"]
    assert [r["target"] for r in steps] == [pytest.approx(0.4375), pytest.approx(0.5)]
    # achieved is the fall of the PREDICTED latency, cumulative over the original's
    assert 0.4375 - 0.05 <= steps[0]["achieved"] < steps[1]["achieved"] <= 0.5 + 0.05
    if document["flow"]["chosen"] == "progressive":
        assert section["target"] == pytest.approx(0.5)  # the schedule's, of the original
    else:  # the one-shot candidate pruned the original to what the steps achieved
        assert section["target"] == pytest.approx(steps[-1]["achieved"])
    assert section["predicted"]["ratio"] <= 0.5 + 0.05  # steps of 8 channels
    assert section["measured"]["ratio"] > 0  # the final model timed against the original
    assert any("one latency table of the original" in n for n in document["notes"])


def test_progressive_round_auto_probes_the_original_once(tmp_path, monkeypatch):
    from onnxprune.benchmark import layer_steps

    calls = []
    real = layer_steps.auto_group_round

    def counted(model, analysis, *args, **kwargs):
        calls.append(sorted(g.size for g in analysis.prunable_groups))
        return real(model, analysis, *args, **kwargs)

    monkeypatch.setattr(layer_steps, "auto_group_round", counted)
    path = tmp_path / "m.onnx"
    onnx.save(_model(), path)
    name = onnx.load(path).graph.input[0].name
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", **{name: rng.standard_normal((64, 3, 16, 16), np.float32)})
    np.savez(tmp_path / "e.npz", **{name: rng.standard_normal((32, 3, 16, 16), np.float32)})
    cache = tmp_path / "cache"
    _seed_cache(path, cache)
    args = ["compress", str(path), "-t", "0.5", "--metric", "latency", "--steps", "2",
            "--train-steps", "1", "--data", str(tmp_path / "d.npz"), "--eval-data",
            str(tmp_path / "e.npz"), "--latency-cache", str(cache), "--latency-runs", "3",
            "--bench-runs", "3", "--accept-drop", "--json"]  # --round-to auto: the default
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.output[result.output.index("{"):])
    assert calls[0] == [64, 64]  # the original's widths, probed first
    # every step reused the original's blocks; only the one-shot comparison (a fresh
    # compress of the original) probes on its own
    assert len(calls) <= 2 and all(c == [64, 64] for c in calls)
    assert any("probed once, on the original" in n for n in document["notes"])


def test_progressive_latency_refuses_uniform_scope_like_one_shot(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_model(), path)
    name = onnx.load(path).graph.input[0].name
    np.savez(tmp_path / "d.npz", **{name: np.zeros((400, 3, 16, 16), np.float32)})
    _seed_cache(path, tmp_path / "cache")
    result = CliRunner().invoke(main, [
        "compress", str(path), "-t", "0.5", "--metric", "latency", "--steps", "2",
        "--train-steps", "1", "--round-to", "8", "--scope", "uniform", "--data",
        str(tmp_path / "d.npz"), "--latency-cache", str(tmp_path / "cache")])
    assert result.exit_code == 2, result.output
    assert "--metric latency plans globally" in result.output
    assert not (tmp_path / "m.pruned.onnx").exists()
