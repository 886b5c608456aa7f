"""Provider selection: what the build lacks is listed, never timed under a wrong name."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from onnxprune.benchmark import benchmark, select_providers
from onnxprune.benchmark.providers import parse_providers
from onnxprune.benchmark.session import BoundRunner, make_runner, parse_profile
from onnxprune.cli import main
from onnxprune.errors import ExitCode, RuntimeMissingError, UsageError
from tests.conftest import MODELS
from tests.fake_ort import FakeOrt, fake_models

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


def test_aliases_and_full_names_map_to_ort_names():
    assert parse_providers("cpu,CUDA, tensorrt,XnnpackExecutionProvider,cpu") == [
        CPU, CUDA, "TensorrtExecutionProvider", "XnnpackExecutionProvider"]
    with pytest.raises(UsageError, match="unknown execution provider 'gpu'"):
        parse_providers("gpu")


def test_provider_listed_by_get_all_providers_but_not_available_is_unavailable():
    ort = FakeOrt([CPU])  # get_all_providers() lists CUDA, XNNPACK, NNAPI, ...
    choices = select_providers(["cpu", "xnnpack", "nnapi"], ort)
    assert [(c.alias, c.available) for c in choices] == [
        ("cpu", True), ("xnnpack", False), ("nnapi", False)]
    assert choices[1].reason.startswith("not available in this build")


def test_all_requested_providers_missing_is_runtime_missing():
    with pytest.raises(RuntimeMissingError, match="none of the requested") as info:
        select_providers(["cuda", "tensorrt"], FakeOrt([CPU]))
    assert info.value.exit_code == ExitCode.RUNTIME_MISSING


def test_session_that_silently_dropped_the_provider_is_not_timed(tmp_path):
    a, b = fake_models(tmp_path)
    ort = FakeOrt([CPU, "OpenVINOExecutionProvider"], drop=("OpenVINOExecutionProvider",))
    report = benchmark([a, b], providers="openvino,cpu", runs=3, warmup=0, memory=False,
                       ort=ort, clock=ort.clock)
    openvino, cpu = report["results"]
    assert openvino["status"] == "fallback" and "models" not in openvino
    assert "fell back to CPUExecutionProvider" in openvino["reason"]
    assert cpu["status"] == "ok" and cpu["provider"] == "cpu"


def test_only_fallbacks_is_runtime_missing(tmp_path):
    a, _ = fake_models(tmp_path)
    ort = FakeOrt([CPU, "QNNExecutionProvider"], drop=("QNNExecutionProvider",))
    with pytest.raises(RuntimeMissingError, match="no requested provider could run"):
        benchmark([a], providers="qnn", runs=1, memory=False, ort=ort, clock=ort.clock)


def test_provider_that_took_no_node_is_not_timed(tmp_path):
    a, _ = fake_models(tmp_path)
    ort = FakeOrt([CPU, "XnnpackExecutionProvider"], placement=CPU)
    report = benchmark([a], providers="xnnpack,cpu", runs=2, memory=False, ort=ort,
                       clock=ort.clock)
    xnnpack = report["results"][0]
    assert xnnpack["status"] == "fallback" and "took no node" in xnnpack["reason"]
    assert xnnpack["node_placement"] == {CPU: 3}


def test_cuda_is_timed_through_io_binding_with_cpu_fallback_for_other_nodes(tmp_path):
    a, b = fake_models(tmp_path)
    ort = FakeOrt([CUDA, CPU], durations={"a.onnx": 0.004, "b.onnx": 0.002})
    report = benchmark([a, b], providers="cuda", runs=5, warmup=1, memory=False, ort=ort,
                       clock=ort.clock)
    result = report["results"][0]
    assert result["status"] == "ok" and result["node_placement"] == {CUDA: 3}
    timed = ort.sessions[:2]
    assert all(s.requested == [CUDA, CPU] for s in timed)
    assert [s.bound_runs for s in timed] == [1 + 1 + 5] * 2
    assert [s.host_runs for s in timed] == [0, 0]  # no host-side run was timed
    assert all(s.binding.outputs == [("y", "cuda")] for s in timed)
    assert ort.device_copies == [("cuda", "(1, 4)")] * 2  # inputs copied once per model
    assert result["speedup"][1]["measured"] == pytest.approx(2.0)


def test_runner_kind_follows_the_provider_device():
    ort = FakeOrt([CPU, "TensorrtExecutionProvider"])
    feeds = {"x": np.zeros((1, 4), np.float32)}
    trt, cpu = select_providers(["tensorrt", "cpu"], ort)
    assert (trt.device, cpu.device) == ("cuda", None)
    session = ort.InferenceSession("m.onnx", ort.SessionOptions(), trt.session_providers())
    runner = make_runner(ort, session, trt, feeds)
    assert isinstance(runner, BoundRunner)
    runner()
    assert (session.bound_runs, session.host_runs) == (1, 0)
    session = ort.InferenceSession("m.onnx", ort.SessionOptions(), cpu.session_providers())
    runner = make_runner(ort, session, cpu, feeds)
    runner()
    assert (session.bound_runs, session.host_runs) == (0, 1)
    assert session.feeds is feeds


def test_profile_parser_counts_distinct_nodes_per_provider(tmp_path):
    events = [{"cat": "Node", "name": "a_kernel_time", "args": {"provider": CUDA}},
              {"cat": "Node", "name": "a_fence_before", "args": {}},
              {"cat": "Node", "name": "b_kernel_time", "args": {"provider": CPU}},
              {"cat": "Node", "name": "a_kernel_time", "args": {"provider": CUDA}},
              {"cat": "Session", "name": "model_run", "args": {}}]
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(events))
    assert parse_profile(path) == {CPU: 1, CUDA: 1}


def test_cli_lists_unavailable_providers_and_times_cpu():
    model = str(MODELS / "mlp.dynamo.onnx")
    result = CliRunner().invoke(main, ["bench", model, "--providers", "cpu,cuda,coreml",
                                       "--runs", "3", "--warmup", "1", "--no-memory"])
    assert result.exit_code == 0, result.output
    assert "cuda: not available in this build" in result.output
    assert "coreml: not available in this build" in result.output
    assert "p50 ms" in result.output


def test_cli_exits_runtime_missing_when_no_requested_provider_exists():
    model = str(MODELS / "mlp.dynamo.onnx")
    result = CliRunner().invoke(main, ["bench", model, "--providers", "cuda,tensorrt"])
    assert result.exit_code == ExitCode.RUNTIME_MISSING
    assert "none of the requested execution providers" in result.output


def test_cli_json_is_one_document_matching_the_schema():
    from onnxprune.reporting.schema import validate_benchmark

    models = [str(MODELS / "mlp.dynamo.onnx"), str(MODELS / "mlp.ts.onnx")]
    result = CliRunner().invoke(main, ["bench", *models, "--providers", "cpu,xnnpack",
                                       "--batch", "1,3", "--runs", "2", "--warmup", "0",
                                       "--no-memory", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    validate_benchmark(document)
    assert [(r["provider"], r["batch"]) for r in document["results"]] == [("cpu", 1), ("cpu", 3)]
    assert document["results"][1]["models"][0]["input_shapes"] == {"input": [3, 64]}
    assert document["settings"]["memory_method"] == "not measured"
    assert document["results"][0]["speedup"][1]["ideal"] == pytest.approx(1.0)
