"""Latency statistics and interleaving, on a fake clock (no model runs)."""

from __future__ import annotations

import pytest

from onnxprune.benchmark import benchmark, compare
from onnxprune.benchmark.stats import (
    LatencyStats,
    measure,
    measure_interleaved,
    paired_ratios,
    speedup,
)
from tests.fake_ort import FakeClock, FakeOrt, fake_models


def test_percentiles_mean_and_throughput_are_exact_on_known_samples():
    # 1..10 ms: p50 = 5.5, p90 = 9.1, p99 = 9.91 (linear interpolation), mean 5.5
    stats = LatencyStats.from_samples([i / 1000 for i in range(1, 11)], batch=4)
    assert stats.runs == 10
    assert stats.p50_ms == pytest.approx(5.5)
    assert stats.p90_ms == pytest.approx(9.1)
    assert stats.p99_ms == pytest.approx(9.91)
    assert stats.mean_ms == pytest.approx(5.5)
    assert stats.min_ms == pytest.approx(1.0) and stats.max_ms == pytest.approx(10.0)
    assert stats.throughput == pytest.approx(4 / 0.0055)
    assert stats.cv == pytest.approx(stats.std_ms / 5.5)


def test_measure_reads_the_injected_clock_around_each_call_only():
    clock = FakeClock()
    durations = iter([0.003, 0.001, 0.002, 0.004])

    def step():
        clock.now += next(durations)

    clock.now = 100.0
    samples = measure(step, runs=3, warmup=1, clock=clock)
    assert samples == pytest.approx([0.001, 0.002, 0.004])  # the warm-up call is not recorded


def test_interleaving_rotates_which_model_runs_first():
    calls = []
    funcs = [lambda i=i: calls.append(i) for i in range(3)]
    measure_interleaved(funcs, runs=3, warmup=1, clock=FakeClock())
    assert calls == [0, 1, 2, 0, 1, 2, 1, 2, 0, 2, 0, 1]


def test_interleaved_samples_belong_to_their_model():
    clock = FakeClock()
    slow = lambda: setattr(clock, "now", clock.now + 0.010)  # noqa: E731
    fast = lambda: setattr(clock, "now", clock.now + 0.004)  # noqa: E731
    a, b = measure_interleaved([slow, fast], runs=5, clock=clock)
    assert a == pytest.approx([0.010] * 5) and b == pytest.approx([0.004] * 5)
    ratio = speedup(LatencyStats.from_samples(a), LatencyStats.from_samples(b))
    assert ratio == pytest.approx(2.5)
    assert paired_ratios(a, b) == pytest.approx({"median": 2.5, "q25": 2.5, "q75": 2.5})


def test_benchmark_on_fake_runtime_reports_measured_and_ideal_speedup(tmp_path):
    a, b = fake_models(tmp_path)
    ort = FakeOrt(["CPUExecutionProvider"], durations={"a.onnx": 0.012, "b.onnx": 0.005})
    report = benchmark([a, b], providers="cpu", threads=[1, 4], runs=7, warmup=2,
                       memory=False, ort=ort, clock=ort.clock)
    assert [(r["threads"], r["status"]) for r in report["results"]] == [(1, "ok"), (4, "ok")]
    first = report["results"][0]
    assert first["models"][0]["latency"]["p50_ms"] == pytest.approx(12.0)
    assert first["models"][1]["latency"]["p99_ms"] == pytest.approx(5.0)
    assert first["models"][0]["latency"]["runs"] == 7
    assert first["models"][1]["first_run_ms"] == pytest.approx(5.0)
    assert first["speedup"][0] is None
    assert first["speedup"][1]["measured"] == pytest.approx(2.4)
    assert first["speedup"][1]["ideal"] == pytest.approx(2.0)  # MatMul 4x8 vs 4x4
    # warm-up + timed + first run per session, all interleaved on the host
    assert [s.host_runs for s in ort.sessions[:2]] == [1 + 2 + 7] * 2
    # threads reach the session options
    assert [s.options.intra_op_num_threads for s in ort.sessions] == [1, 1, 4, 4]


def test_compare_gives_both_models_per_provider_with_speedups(tmp_path):
    a, b = fake_models(tmp_path)
    ort = FakeOrt(["CPUExecutionProvider"], durations={"a.onnx": 0.010, "b.onnx": 0.008})
    result = compare(a, b, providers="cpu,cuda", runs=4, warmup=0, batch=[1, 8],
                     memory=False, ort=ort, clock=ort.clock)
    assert result["ideal_speedup"] == pytest.approx(2.0)
    assert "cuda" in result["unavailable"]
    runs = result["providers"]["cpu"]
    assert [r["batch"] for r in runs] == [1, 8]
    assert runs[1]["original"]["input_shapes"] == {"x": [8, 4]}
    assert runs[1]["pruned"]["latency"]["throughput"] == pytest.approx(8 / 0.008)
    assert runs[0]["speedup"] == pytest.approx(1.25)


def test_batch_that_cannot_apply_to_a_fixed_first_dimension_is_noted(tmp_path, monkeypatch):
    import types

    from tests import fake_ort

    a, _ = fake_models(tmp_path)
    ort = FakeOrt(["CPUExecutionProvider"])
    fixed = [types.SimpleNamespace(name="x", shape=[2, 4], type="tensor(float)")]
    monkeypatch.setattr(fake_ort.FakeSession, "get_inputs", lambda self: fixed)
    report = benchmark([a], batch=[8], runs=1, warmup=0, memory=False, ort=ort,
                       clock=ort.clock)
    result = report["results"][0]
    assert result["batch"] == 2 and "batch 8 not applied" in result["note"]
