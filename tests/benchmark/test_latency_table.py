"""Latency tables: measured on a fake runtime, cached by what they depend on, CUDA path."""

from __future__ import annotations

import json
import pathlib

import onnx
import pytest
from click.testing import CliRunner

from onnxprune.analysis import analyze
from onnxprune.benchmark.latency_slices import default_input_shapes, slice_model
from onnxprune.benchmark.latency_table import (
    CACHE_ENV,
    LatencySettings,
    cache_dir,
    cache_key,
    latency_table,
)
from onnxprune.cli import main
from onnxprune.errors import ExitCode, RuntimeMissingError, UsageError
from onnxprune.graph.io import model_from_proto
from onnxprune.planning.latency_model import grid_counts, layer_specs
from onnxprune.reporting.schema import validate_report
from tests.builders import GraphBuilder
from tests.fake_ort import FakeOrt

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


def _model(width: int = 16, seed: int = 0, batch="N", size: int = 8) -> onnx.ModelProto:
    b = GraphBuilder(seed=seed)
    x = b.input([batch, 3, size, size])
    h = b.op("Relu", [b.conv(x, 3, width, name="c1")])
    b.output(b.conv(h, width, 8, name="c2"))
    return b.model()


def _table(proto, ort, tmp_path, shapes=None, **settings):
    analysis = analyze(model_from_proto(proto))
    settings = LatencySettings(runs=3, warmup=1, cache=str(tmp_path), **settings)
    return latency_table(proto, analysis, settings, shapes=shapes, ort=ort, clock=ort.clock)


def test_fake_runtime_table_holds_the_timed_medians(tmp_path):
    ort = FakeOrt([CPU], durations={"model.onnx": 0.010})
    table, specs, info = _table(_model(), ort, tmp_path)
    assert [s.name for s in specs] == ["c1_out", "c2_out"]
    assert table.whole_ms == pytest.approx(10.0)
    c1 = table.layers["c1_out"]
    assert (c1["c_in"], c1["c_out"]) == grid_counts(specs[0]) == ([3], [8, 16])
    assert c1["ms"] == [[pytest.approx(1.0), pytest.approx(1.0)]]  # default fake run: 1 ms
    assert table.fixed_ms == pytest.approx(10.0 - 2.0) and table.input_shapes == {
        "x": [1, 3, 8, 8]}
    assert not info["cache_hit"] and info["cache"].startswith(str(tmp_path))


def test_rerun_reads_the_cache_and_any_key_change_measures_again(tmp_path):
    proto = _model()
    _table(proto, FakeOrt([CPU]), tmp_path)
    again = FakeOrt([CPU])
    _, _, info = _table(proto, again, tmp_path)
    assert info["cache_hit"] and again.sessions == []  # nothing run
    changes = {
        "threads": lambda ort: _table(proto, ort, tmp_path, threads=2),
        "shape": lambda ort: _table(proto, ort, tmp_path, shapes={"x": (2, 3, 8, 8)}),
        "model": lambda ort: _table(_model(seed=1), ort, tmp_path),
        "provider": lambda ort: _table(proto, FakeOrt([CUDA, CPU]), tmp_path,
                                       provider="cuda"),
    }
    for name, run in changes.items():
        ort = FakeOrt([CPU])
        _, _, info = run(ort)
        assert not info["cache_hit"], name
    newer = FakeOrt([CPU])
    newer.__version__ = "10.0.0"
    _, _, info = _table(proto, newer, tmp_path)
    assert not info["cache_hit"] and newer.sessions


def test_cache_key_names_every_field_it_depends_on():
    base = cache_key(b"m", CPU, 1, {"x": (1, 3)}, "1.19")
    assert base == cache_key(b"m", CPU, 1, {"x": (1, 3)}, "1.19")
    others = [cache_key(b"n", CPU, 1, {"x": (1, 3)}, "1.19"),
              cache_key(b"m", CUDA, 1, {"x": (1, 3)}, "1.19"),
              cache_key(b"m", CPU, 4, {"x": (1, 3)}, "1.19"),
              cache_key(b"m", CPU, 1, {"x": (2, 3)}, "1.19"),
              cache_key(b"m", CPU, 1, {"x": (1, 3)}, "1.20")]
    assert len({base["hash"], *(o["hash"] for o in others)}) == 6


def test_corrupt_cache_file_is_measured_again(tmp_path):
    proto = _model()
    _, _, info = _table(proto, FakeOrt([CPU]), tmp_path)
    with open(info["cache"], "w") as f:
        f.write("{not json")
    ort = FakeOrt([CPU])
    _, _, again = _table(proto, ort, tmp_path)
    assert not again["cache_hit"] and ort.sessions
    assert json.loads(pathlib.Path(info["cache"]).read_text())["whole_ms"] > 0


def test_cache_folder_comes_from_the_option_then_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "opt") == tmp_path / "opt"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "onnxprune" / "latency"


def test_cuda_table_is_timed_through_io_binding(tmp_path):
    ort = FakeOrt([CUDA, CPU], durations={"model.onnx": 0.004})
    table, _, _ = _table(_model(), ort, tmp_path, provider="cuda")
    assert table.provider == "cuda" and table.whole_ms == pytest.approx(4.0)
    assert all(s.requested == [CUDA, CPU] for s in ort.sessions)
    timed = [s for s in ort.sessions if not s.options.enable_profiling]
    assert timed and all(s.bound_runs == 1 + 3 and s.host_runs == 0 for s in timed[:-1])


def test_missing_provider_is_runtime_missing(tmp_path):
    with pytest.raises(RuntimeMissingError) as info:
        _table(_model(), FakeOrt([CPU]), tmp_path, provider="cuda")
    assert info.value.exit_code == ExitCode.RUNTIME_MISSING


def test_default_shapes_batch_one_and_224_images_else_ask():
    b = GraphBuilder()
    b.input(["N", 3, "H", "W"], name="img")
    b.input(["N", "T"], name="ids")
    b.output(b.op("Relu", ["img"]))
    with pytest.raises(UsageError, match="'ids' has a symbolic dimension at axis 1"):
        default_input_shapes(b.model())
    assert default_input_shapes(_model()) == {"x": (1, 3, 8, 8)}
    b = GraphBuilder()
    b.input(["N", 3, "H", "W"], name="img")
    b.output(b.op("Relu", ["img"]))
    assert default_input_shapes(b.model()) == {"img": (1, 3, 224, 224)}


def test_slice_model_runs_at_every_grid_point():
    import numpy as np
    import onnxruntime as ort

    b = GraphBuilder()
    x = b.input([1, 16, 8, 8])
    h = b.op("Clip", [b.conv(x, 16, 16, group=16, name="dw"), b.init(np.float32(0.0)),
                      b.init(np.float32(6.0))])
    b.output(h)
    spec = layer_specs(analyze(model_from_proto(b.model())), {})[0]
    assert spec.depthwise and spec.activation[0] == "Clip"
    for c in grid_counts(spec)[0]:
        session = ort.InferenceSession(slice_model(spec, c, c).SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        out = session.run(None, {"x": np.ones((1, c, 8, 8), np.float32)})[0]
        assert out.shape == (1, c, 8, 8) and out.min() >= 0 and out.max() <= 6


def test_cli_absent_provider_exits_7(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_model(), path)
    result = CliRunner().invoke(main, ["compress", str(path), "-t", "0.3", "--metric", "latency",
                                       "--provider", "coreml", "--latency-cache",
                                       str(tmp_path / "cache")])
    assert result.exit_code == ExitCode.RUNTIME_MISSING, result.output
    assert "coreml" in result.output


def _seed_cache(path, cache) -> None:
    """The table the CLI run would measure, measured on the fake runtime (times that scale
    with c_in * c_out) under the real runtime's version, so the plan does not depend on
    this machine's load."""
    import onnx_ir as ir
    import onnxruntime

    from onnxprune.graph import load_model
    from onnxprune.graph.runtime import to_runtime_proto

    loaded = load_model(path)
    proto = to_runtime_proto(ir.serde.serialize_model(loaded.model))
    specs = layer_specs(analyze(loaded.model), default_input_shapes(proto))
    durations = {"model.onnx": 0.0002}
    for i, spec in enumerate(specs):
        c_in, c_out = grid_counts(spec)
        durations.update({f"s{i}_{a}x{b}.onnx": a * b / 64 / 64 * 1e-3
                          for a in c_in for b in c_out})
    ort = FakeOrt([CPU], durations=durations)
    ort.__version__ = onnxruntime.__version__
    _table(proto, ort, cache)


def test_cli_latency_metric_reports_predicted_and_measured(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_model(width=64, batch=1, size=32), path)
    _seed_cache(path, tmp_path / "cache")
    args = ["compress", str(path), "-t", "0.3", "--metric", "latency", "--latency-runs", "2",
            "--bench-runs", "3", "--latency-cache", str(tmp_path / "cache"), "--json",
            "--round-to", "8"]  # the default with --metric latency is auto (probes)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    section = json.loads(result.output)["latency"]
    assert section["cache_hit"] and section["provider"] == "cpu" and section["threads"] == 1
    assert section["table"]["whole_ms"] == pytest.approx(0.2)
    assert 0.55 <= section["predicted"]["ratio"] <= 0.7 + 1e-9  # steps of 8 channels
    assert section["measured"]["ratio"] > 0 and section["predicted_over_measured"] > 0
    assert set(section["table"]["layers"]) == {"c1_out", "c2_out"}
    report = json.loads((tmp_path / "m.pruned.onnx.report.json").read_text())
    assert report["latency"]["cache"] == section["cache"]
    assert report["options"]["metric"] == "latency"
    validate_report(report)


def test_context_fraction_is_the_share_of_each_run_in_modelled_kernels(tmp_path):
    from onnxprune.benchmark.latency_table import _context_fraction
    from onnxprune.planning.latency_model import LatencyTable

    def kernel(ts, dur, op):
        return {"cat": "Node", "name": f"n{ts}_kernel_time", "ts": ts, "dur": dur,
                "args": {"op_name": op}}

    events = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 100},
              kernel(10, 60, "FusedConv"), kernel(80, 20, "Add"),
              {"cat": "Session", "name": "model_run", "ts": 200, "dur": 100},
              kernel(210, 80, "Conv"), kernel(295, 5, "GlobalAveragePool")]
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps(events))
    assert _context_fraction(str(profile)) == pytest.approx(0.7)  # median of 0.6 and 0.8
    layers = {"a": {"c_in": [8, 16], "c_out": [8], "ms": [[1.0], [3.0]]}}
    table = LatencyTable(layers, whole_ms=10.0, context_fraction=0.6)
    assert table.fixed_ms == pytest.approx(4.0) and table.scale == pytest.approx(2.0)
    assert table.predict(table.layer_ms("a", 8, 8)) == pytest.approx(4.0 + 2.0)
    assert LatencyTable.from_dict(table.to_dict()).context_fraction == 0.6


def _staircase(block: int) -> dict[int, float]:
    """Latency that rises by 20% after every ``block`` channels."""
    return {c: 1.2 ** -(-c // block) for c in range(1, 65)}


def test_round_auto_block_is_the_spacing_of_the_step_edges():
    from onnxprune.benchmark.round_probe import block_from_times, step_edges

    assert step_edges(_staircase(16)) == {16, 32, 48}
    assert block_from_times([_staircase(16), _staircase(16)]) == 16
    # a probe that steps every 4 channels and one every 16: both step at multiples of 16
    assert block_from_times([_staircase(4), _staircase(16)]) == 16
    smooth = {c: 1.0 + c / 1000 for c in range(1, 65)}
    assert block_from_times([smooth]) is None


def test_round_auto_probe_on_fake_runtime_is_cached(tmp_path):
    from onnxprune.benchmark.round_probe import auto_block

    durations = {}
    for c in range(1, 65):
        durations[f"s0_64x{c}.onnx"] = 1e-3 * 1.2 ** -(-c // 8)   # 1x1 probe: steps every 8
        durations[f"s0_{c}x{c}.onnx"] = 1e-3 * 1.2 ** -(-c // 16)  # 3x3 probe: every 16
    ort = FakeOrt([CPU], durations=durations)
    settings = LatencySettings(runs=2, warmup=0, cache=str(tmp_path))
    first = auto_block(settings, ort=ort, clock=ort.clock)
    assert first["block"] == 16 and not first["cache_hit"]
    again = FakeOrt([CPU])
    second = auto_block(settings, ort=again, clock=again.clock)
    assert second["block"] == 16 and second["cache_hit"] and again.sessions == []


def test_cli_round_to_takes_an_integer_or_auto(tmp_path):
    from onnxprune.options import build_options

    assert build_options({"target": 0.5, "round_to": "auto"}).plan_options().round_to is None
    path = tmp_path / "m.onnx"
    onnx.save(_model(), path)
    result = CliRunner().invoke(main, ["compress", str(path), "-t", "0.3", "--round-to", "x"])
    assert result.exit_code == ExitCode.USAGE and "neither an integer nor 'auto'" in result.output
