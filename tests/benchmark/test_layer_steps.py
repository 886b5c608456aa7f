"""``--round-to auto`` step tables: probes per layer, the cache and its keys, compress wiring.

The probes' times come from a fake ``measure_points`` (known staircases per layer), so
nothing here depends on this machine's timing."""

from __future__ import annotations

import math

import onnx
import pytest

from onnxprune.analysis import analyze
from onnxprune.benchmark import layer_steps
from onnxprune.benchmark.latency_table import LatencySettings
from onnxprune.benchmark.layer_steps import auto_group_round, describe
from onnxprune.errors import ExitCode, RuntimeMissingError
from onnxprune.graph.io import model_from_proto
from tests.builders import GraphBuilder
from tests.fake_ort import FakeOrt

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


def _ms(name: str, c_in: int, c_out: int) -> float:
    """c1's outputs step every 16 channels, c2's every 4; inputs are linear."""
    if name == "c1_out":
        return 0.1 * math.ceil(c_out / 16)
    if name == "c2_out":
        return 0.1 * math.ceil(c_out / 4) + 0.001 * c_in
    return 0.01 * c_in + 0.05


@pytest.fixture
def calls(monkeypatch):
    """Every probe timed: (layer, points); the times are ``_ms``."""
    made: list[tuple[str, list]] = []

    def fake(spec, points, choice, settings, ort, clock):
        made.append((spec.name, list(points)))
        return [_ms(spec.name, a, b) for a, b in points]

    monkeypatch.setattr(layer_steps, "measure_points", fake)
    return made


def _chain(width: int = 32, seed: int = 0, extra: bool = False) -> onnx.ModelProto:
    b = GraphBuilder(seed=seed)
    x = b.input([1, 3, 8, 8])
    h = b.op("Relu", [b.conv(x, 3, width, name="c1")])
    h = b.op("Relu", [b.conv(h, width, width, name="c2")])
    if extra:
        h = b.op("Relu", [b.conv(h, width, width, k=1, name="c4")])
    b.output(b.conv(h, width, 8, name="c3"))
    return b.model()


def _auto(proto, tmp_path, ort=None, shapes=None, **settings):
    ort = ort or FakeOrt([CPU])
    settings = LatencySettings(cache=str(tmp_path), **settings)
    return auto_group_round(proto, analyze(model_from_proto(proto)), settings, shapes, ort=ort)


def test_each_group_gets_the_block_its_layers_step_at(tmp_path, calls):
    pairs, info = _auto(_chain(), tmp_path)
    assert pairs == (("c1", 16), ("c2", 4))
    assert {name for name, _ in calls} == {"c1_out", "c2_out", "c3_out"}
    assert info["points_measured"] == sum(len(p) for _, p in calls) > 0
    assert info["groups_by_block"] == {"16": 1, "4": 1}
    assert info["cache"].startswith(str(tmp_path)) and "steps-cpu-t1-ort9.9.9" in info["cache"]
    note = describe(info)
    assert "1 x 16" in note and f"{info['points_measured']} points timed" in note


def test_rerun_reads_the_cache_and_times_nothing(tmp_path, calls):
    _, first = _auto(_chain(), tmp_path)
    timed = len(calls)
    pairs, again = _auto(_chain(), tmp_path)
    assert len(calls) == timed and again["points_measured"] == 0
    assert again["points_cached"] == first["points_measured"] + first["points_cached"]
    assert pairs == (("c1", 16), ("c2", 4))


def test_provider_threads_version_and_layer_shapes_key_the_cache(tmp_path, calls):
    _auto(_chain(), tmp_path)
    newer = FakeOrt([CPU])
    newer.__version__ = "10.0.0"
    changes = {
        "threads": lambda: _auto(_chain(), tmp_path, threads=2),
        "provider": lambda: _auto(_chain(), tmp_path, ort=FakeOrt([CUDA, CPU]),
                                  provider="cuda"),
        "onnxruntime": lambda: _auto(_chain(), tmp_path, ort=newer),
        "input shape": lambda: _auto(_chain(), tmp_path, shapes={"x": (1, 3, 16, 16)}),
    }
    for name, run in changes.items():
        _, info = run()
        assert info["points_measured"] > 0 and info["points_cached"] == 0, name
    # wider layers: c1's output probe (3 input channels) only needs its new counts
    before = len(calls)
    _, info = _auto(_chain(width=48), tmp_path)
    new = dict(calls[before:])
    assert all(c > 32 for _, c in new["c1_out"]) and info["points_cached"] > 0
    assert {"c2_out", "c3_out"} <= set(new)


def test_same_layers_in_another_model_are_not_timed_again(tmp_path, calls):
    """Probes depend on the layers' shapes, not the weights: a pruned step model or a
    retrained one reuses them; only a layer with new shapes is timed."""
    _auto(_chain(seed=0), tmp_path)
    _, info = _auto(_chain(seed=1), tmp_path)
    assert info["points_measured"] == 0
    timed = len(calls)
    _, info = _auto(_chain(extra=True), tmp_path)
    assert [name for name, _ in calls[timed:]] == ["c4_out", "c4_out"]  # its in and out


def test_corrupt_cache_is_timed_again(tmp_path, calls):
    _, info = _auto(_chain(), tmp_path)
    with open(info["cache"], "w") as f:
        f.write("{not json")
    _, again = _auto(_chain(), tmp_path)
    assert again["points_measured"] == info["points_measured"]


def test_absent_provider_is_exit_7(tmp_path, calls):
    with pytest.raises(RuntimeMissingError) as info:
        _auto(_chain(), tmp_path, provider="cuda")
    assert info.value.exit_code == ExitCode.RUNTIME_MISSING and not calls


def test_compress_round_to_auto_plans_per_group(tmp_path, calls):
    from onnxprune.compress import compress

    path = tmp_path / "m.onnx"
    onnx.save(_chain(), path)
    result = compress(path, 0.5, metric="flops", round_to="auto", output=tmp_path / "o.onnx",
                      latency_cache=str(tmp_path / "cache"), report=False)
    after = {layer["layer"]: layer["after"] for layer in result.layers}
    assert calls and result.options["round_to"] == "auto"
    note = next(n for n in result.notes if n.startswith("--round-to auto"))
    assert "points timed" in note and str(tmp_path / "cache") in note
    assert after["c1"] % 16 == 0 and after["c2"] % 4 == 0 and after["c2"] < 32
    assert result.achieved >= 0.5


def test_auto_is_the_default_for_latency_only(tmp_path, calls, monkeypatch):
    """``--metric latency`` without ``--round-to`` probes; ``flops`` and ``params`` keep
    multiples of 8 channels and time nothing."""
    from onnxprune.benchmark import latency_check
    from onnxprune.compress import compress

    path = tmp_path / "m.onnx"
    onnx.save(_chain(), path)
    for metric in ("flops", "params"):
        result = compress(path, 0.5, metric=metric, output=tmp_path / f"{metric}.onnx",
                          report=False)
        assert not calls and not any("--round-to auto" in n for n in result.notes)
        assert all(r["after"] % 8 == 0 for r in result.layers if r["layer"] != "c3")
    seen = {}

    def plan_latency(original, analysis, scores, plan_options, settings, shapes=None,
                     **kwargs):  # the table itself is tested elsewhere: only the options
        seen["group_round"] = plan_options.group_round
        raise RuntimeMissingError("stop here")

    monkeypatch.setattr(latency_check, "plan_latency", plan_latency)
    with pytest.raises(RuntimeMissingError, match="stop here"):
        compress(path, 0.5, metric="latency", output=tmp_path / "l.onnx",
                 latency_cache=str(tmp_path / "cache"), report=False)
    assert calls and seen["group_round"] == (("c1", 16), ("c2", 4))
