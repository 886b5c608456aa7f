"""``--mobile``, ``--bench`` and ``--report`` (HTML) work with every compress flow, and
every flow's report has the same sections (``layer_macs``, ``benchmark``, ``mobile``)."""

from __future__ import annotations

import json
import pathlib

import pytest
from click.testing import CliRunner

from onnxprune.cli import main
from onnxprune.reporting.schema import validate_report

ROOT = pathlib.Path(__file__).resolve().parents[2]
DIGITS = ROOT / "fixtures" / "models" / "digits_cnn.ts.onnx"
TRAIN = ROOT / "fixtures" / "data" / "digits_train.npz"

FLOWS = {
    "one-shot": ["-t", "0.3"],
    "unstructured": ["-t", "0.5", "--mode", "unstructured"],
    "2:4": ["--mode", "2:4"],
    "int8": ["-t", "0.3", "--quantize", "int8"],
    "progressive": ["-t", "0.3", "--steps", "2", "--train-steps", "1", "--data", str(TRAIN),
                    "--max-samples", "64", "--accept-drop"],
}

# what the terminal summary of each flow shows (the CLI asks the flow table)
PRINTED = {
    "one-shot": ["channels per layer"],
    "unstructured": ["unstructured sparsity", "evaluation on"],
    "2:4": ["n:m sparsity", "evaluation on"],
    "int8": ["channels per layer", "evaluation on", "pruned+int8"],
    "progressive": ["channels per layer", "progressive steps"],
}


@pytest.fixture
def no_memory_probe(monkeypatch):
    """Peak memory is measured in a fresh process per model (tests/benchmark cover it);
    here a stub keeps the test fast. Timing, export and reports stay real."""
    from onnxprune.benchmark import bench

    monkeypatch.setattr(bench, "peak_memory", lambda *args, **kwargs: {"peak_mb": 1.0,
                                                                      "method": "stub"})


@pytest.mark.parametrize("flow", list(FLOWS))
def test_every_flow_writes_mobile_bench_and_html_sections(tmp_path, flow, no_memory_probe):
    out, page = tmp_path / "out.onnx", tmp_path / "out.html"
    args = ["compress", str(DIGITS), "-o", str(out), "--mobile", "--bench", "--bench-runs",
            "2", "--report", str(page), *FLOWS[flow]]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert all(text in result.output for text in PRINTED[flow]), result.output
    report = json.loads((tmp_path / "out.onnx.report.json").read_text())
    validate_report(report)
    assert report["layer_macs"]  # per-node MACs of original and result
    assert sum(r["before"] for r in report["layer_macs"]) > 0
    assert {"original", "pruned"} <= set(json.dumps(report["benchmark"]).split('"'))
    assert report["mobile"]["output"].endswith(".ort")
    assert pathlib.Path(report["mobile"]["output"]).is_file()
    assert page.is_file() and "<html" in page.read_text()[:500].lower()
