"""INT8 quantization after pruning: static QDQ with data, dynamic without, the report."""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from onnxprune.cli import main
from onnxprune.compress import compress
from onnxprune.errors import RuntimeMissingError
from onnxprune.reporting.schema import validate_report

ROOT = pathlib.Path(__file__).resolve().parents[2]
DIGITS = ROOT / "fixtures" / "models" / "digits_cnn.ts.onnx"
TRAIN = str(ROOT / "fixtures" / "data" / "digits_train.npz")
TEST = str(ROOT / "fixtures" / "data" / "digits_test.npz")


def _rows(result) -> dict[str, dict]:
    return {row["model"]: row for row in result.evaluation["models"]}


def test_2_4_sparse_plus_int8_keeps_digits_accuracy_and_the_zeros(tmp_path):
    out = tmp_path / "nm.int8.onnx"
    result = compress(DIGITS, output=out, mode="n:m", quantize="int8", data=TRAIN,
                      max_samples=2000, eval_data=TEST)
    rows = _rows(result)
    assert rows["original"]["accuracy"] > 0.98
    assert rows["pruned+int8"]["accuracy"] >= rows["original"]["accuracy"] - 0.02
    assert result.quantization["method"] == "static"
    assert result.quantization["calibration_samples"] == 1257
    assert result.size_after < 0.4 * result.size_before
    assert rows["pruned+int8"]["gzip_bytes"] < 0.25 * rows["original"]["gzip_bytes"]
    model = onnx.load(str(out))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"} <= ops
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    weights = 0
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or inits.get(node.input[0]) is None:
            continue
        q = inits[node.input[0]]
        if q.dtype != np.int8 or q.ndim < 2:
            continue  # biases are int32
        weights += 1
        assert inits[node.input[1]].shape == (q.shape[0],)  # per-channel scales
        if q.shape[1] % 4 == 0:  # the 2:4 pattern survives: zero quantizes to zero
            groups = np.moveaxis(q, 1, -1).reshape(-1, 4)
            assert ((groups == 0).sum(axis=1) >= 2).all()
    assert weights == 5
    report = json.loads((tmp_path / "nm.int8.onnx.report.json").read_text())
    assert report["quantization"]["format"] == "QDQ"
    assert [m["model"] for m in report["evaluation"]["models"]] == [
        "original", "pruned", "pruned+int8"]


def test_structured_pruning_then_int8(tmp_path):
    result = compress(DIGITS, 0.3, output=tmp_path / "s.onnx", quantize="int8", data=TRAIN,
                      max_samples=256, eval_data=TEST, report=False)
    rows = _rows(result)
    assert result.groups and result.params_after < result.params_before  # structural
    assert abs(rows["pruned+int8"]["accuracy"] - rows["pruned"]["accuracy"]) <= 0.02
    assert rows["pruned+int8"]["file_bytes"] < 0.4 * rows["pruned"]["file_bytes"]


def test_progressive_pruning_with_finetuning_then_int8(tmp_path):
    """--steps with fine-tuning, then static INT8 of the final model: one report with
    the per-step rows and the three-model evaluation."""
    out = tmp_path / "p.int8.onnx"
    result = compress(DIGITS, 0.5, output=out, steps=2, finetune_epochs=1, quantize="int8",
                      data=TRAIN, eval_data=TEST, criterion="l1")
    rows = _rows(result)
    assert [s["step"] for s in result.steps] == [1, 2]
    assert result.achieved >= 0.5 and result.params_after < 0.5 * result.params_before
    assert result.quantization["method"] == "static"
    assert rows["pruned"]["accuracy"] >= rows["original"]["accuracy"] - 0.03
    assert abs(rows["pruned+int8"]["accuracy"] - rows["pruned"]["accuracy"]) <= 0.02
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type
                                                      for n in onnx.load(str(out)).graph.node}
    report = json.loads((tmp_path / "p.int8.onnx.report.json").read_text())
    validate_report(report)
    assert len(report["steps"]) == 2 and report["quantization"]["format"] == "QDQ"
    assert [m["model"] for m in report["evaluation"]["models"]] == [
        "original", "pruned", "pruned+int8"]


def test_dynamic_quantization_without_data(tmp_path):
    result = compress(DIGITS, 0.5, output=tmp_path / "d.onnx", mode="unstructured",
                      quantize="int8", eval_data=TEST, report=False)
    assert result.quantization["method"] == "dynamic"
    assert result.quantization["weight_type"] == "uint8"  # ORT's ConvInteger takes uint8
    rows = _rows(result)
    assert rows["pruned+int8"]["accuracy"] >= rows["original"]["accuracy"] - 0.02
    assert "DynamicQuantizeLinear" in {n.op_type for n in onnx.load(tmp_path / "d.onnx")
                                       .graph.node}


def test_bench_times_all_three_models_single_threaded(tmp_path):
    result = compress(DIGITS, output=tmp_path / "b.onnx", mode="n:m", quantize="int8",
                      data=TRAIN, max_samples=64, bench=True, bench_runs=3, report=False)
    assert result.evaluation["latency"]["threads"] == 1
    assert all(row["latency_p50_ms"] > 0 for row in result.evaluation["models"])
    assert any("calibration data" in n for n in result.notes)  # evaluated on --data


def test_missing_quantization_tools_are_reported(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)
    with pytest.raises(RuntimeMissingError, match="quantization"):
        compress(DIGITS, 0.5, output=tmp_path / "m.onnx", mode="unstructured",
                 quantize="int8")
    assert not (tmp_path / "m.onnx").exists()


def test_cli_prints_the_evaluation_table_and_writes_json(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli.onnx"
    args = ["compress", str(DIGITS), "--mode", "unstructured", "-t", "0.7", "--quantize",
            "int8", "--data", TRAIN, "--max-samples", "128", "--eval-data", TEST, "-o",
            str(out)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "pruned+int8" in result.stdout and "prunable weights are zero" in result.stdout
    as_json = runner.invoke(main, [*args, "-o", str(tmp_path / "cli2.onnx"), "--json"])
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.stdout)
    assert document["sparsity"]["achieved"] == pytest.approx(0.7, abs=1e-4)
    assert document["quantization"]["method"] == "static"
    bad = runner.invoke(main, ["compress", str(DIGITS), "--mode", "n:m", "-t", "0.5"])
    assert bad.exit_code == 2 and "does not apply to mode n:m" in bad.output


def test_old_opset_is_converted_for_per_channel_qdq(tmp_path):
    from tests.builders import GraphBuilder

    b = GraphBuilder(opset=11)
    h = b.op("Relu", [b.conv(b.input(["N", 3, 8, 8]), 3, 8, name="c1")])
    b.output(b.conv(h, 8, 4, name="c2"))
    onnx.save(b.model(), tmp_path / "o11.onnx")
    np.savez(tmp_path / "calib.npz",
             x=np.random.default_rng(0).standard_normal((32, 3, 8, 8)).astype(np.float32))
    result = compress(tmp_path / "o11.onnx", 0.5, output=tmp_path / "q.onnx",
                      mode="unstructured", quantize="int8", data=str(tmp_path / "calib.npz"),
                      report=False)
    assert result.quantization["per_channel"]
    assert any("converted from opset 11 to 13" in n for n in result.notes)
    model = onnx.load(tmp_path / "q.onnx")
    assert next(o.version for o in model.opset_import if o.domain == "") >= 13
    int8_rel = _rows(result)["pruned+int8"]["max_rel_diff"]
    pruned_rel = _rows(result)["pruned"]["max_rel_diff"]
    assert abs(int8_rel - pruned_rel) < 0.1  # INT8 adds little to the pruning deviation


def test_cli_structured_int8_prints_the_structural_summary_too(tmp_path):
    out = tmp_path / "s.onnx"
    result = CliRunner().invoke(main, ["compress", str(DIGITS), "--target", "0.3",
                                       "--quantize", "int8", "--data", TRAIN,
                                       "--max-samples", "64", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "channels per layer" in result.output and "params" in result.output
    assert "pruned+int8" in result.output
