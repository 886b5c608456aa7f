"""export-mobile: an ORT-format file that loads and reproduces the ONNX outputs."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from onnxprune.cli import main
from onnxprune.errors import ExitCode, UsageError
from onnxprune.mobile import export_mobile
from tests.conftest import MODELS

SOURCE = MODELS / "mobilenetv2.dynamo.onnx"


def _run(path, feeds, model_format):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.load_model_format", model_format)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session, session.run(None, feeds)


def test_ort_file_loads_and_gives_the_onnx_outputs(tmp_path):
    out = tmp_path / "m.ort"
    report = export_mobile(SOURCE, out, fix_shapes=["input:2x3x32x32"], usability=False,
                           bench=False)
    assert report["output"] == str(out) and out.read_bytes()[4:8] == b"ORTM"
    assert report["verification"]["max_rel_diff"] < 1e-4
    feeds = {"input": np.random.default_rng(1).standard_normal((2, 3, 32, 32), np.float32)}
    session, got = _run(out, feeds, "ORT")
    _, want = _run(SOURCE, feeds, "ONNX")
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-5)
    assert session.get_inputs()[0].shape == [2, 3, 32, 32]  # the shape was fixed


def test_cli_reports_usability_share_and_single_thread_timing(tmp_path):
    out = tmp_path / "m.ort"
    result = CliRunner().invoke(main, ["export-mobile", str(SOURCE), "-o", str(out),
                                       "--fix-shape", "input:1x3x32x32", "--runs", "3",
                                       "--warmup", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    nnapi = report["usability"]["nnapi"]
    assert nnapi["nodes"] > 0 and nnapi["supported_nodes"] == nnapi["nodes"]
    assert nnapi["share"] == 1.0 and nnapi["verdict"] == "YES"
    coreml = report["usability"]["coreml_mlprogram"]
    assert coreml["share"] < 1.0 and "ai.onnx:ReduceMean" in coreml["unsupported_ops"]
    assert any("ReduceMean" in reason for reason in coreml["why_not"])
    cpu = report["benchmark"]["results"][0]
    assert (cpu["provider"], cpu["threads"], cpu["status"]) == ("cpu", 1, "ok")
    assert cpu["models"][0]["latency"]["runs"] == 3
    assert cpu["models"][0]["peak_memory_mb"] > 0  # fresh-process probe
    xnnpack = next(p for p in report["benchmark"]["providers"] if p["alias"] == "xnnpack")
    assert xnnpack["available"] or "not available in this build" in xnnpack["reason"]


def test_dynamic_inputs_are_reported_with_the_share_they_cost(tmp_path):
    report = export_mobile(SOURCE, tmp_path / "d.ort", bench=False)
    assert report["usability"]["dynamic_inputs"] == ["input"]
    nnapi = report["usability"]["nnapi"]
    assert nnapi["share"] < nnapi["share_if_static"] == 1.0
    assert any("dynamic shapes" in reason for reason in nnapi["why_not"])
    assert any("--fix-shape input:" in note for note in report["notes"])


def test_fix_shape_for_an_unknown_input_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not found in graph inputs"):
        export_mobile(SOURCE, tmp_path / "x.ort", fix_shapes=["image:1x3x32x32"], bench=False)
    result = CliRunner().invoke(main, ["export-mobile", str(SOURCE), "-o",
                                       str(tmp_path / "x.ort"), "--fix-shape", "input:1x3x32"])
    assert result.exit_code == ExitCode.USAGE and "Rank mismatch" in result.output
    assert not (tmp_path / "x.ort").exists()


def test_ir_version_newer_than_the_runtime_is_lowered(tmp_path):
    model = onnx.load(SOURCE)
    model.ir_version = 14
    source = tmp_path / "ir14.onnx"
    onnx.save(model, source)
    report = export_mobile(source, usability=False, bench=False)
    assert report["output"] == str(tmp_path / "ir14.ort")
    assert (tmp_path / "ir14.ort").is_file()
