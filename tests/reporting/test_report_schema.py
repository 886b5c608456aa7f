"""The versioned JSON schema of reports and benchmark documents."""

from __future__ import annotations

import json

import pytest

from onnxprune.benchmark.bench import SCHEMA_VERSION
from onnxprune.errors import DataError
from onnxprune.reporting.macs import layer_macs, node_macs
from onnxprune.reporting.schema import (
    REPORT_SCHEMA_VERSION,
    report_json_schema,
    validate_benchmark,
    validate_report,
)
from tests.conftest import MODELS, ROOT


def test_compress_report_with_optional_keys_validates(full_report):
    parsed = validate_report(full_report)
    assert parsed.benchmark.providers["cpu"][0].original.latency.runs == 3
    assert parsed.benchmark.unavailable["cuda"].startswith("not available in this build")
    assert parsed.layer_macs[0].before > 0
    validate_benchmark(full_report["benchmark"])


def test_plain_compress_result_without_optional_keys_validates(full_report):
    plain = {k: v for k, v in full_report.items()
             if k not in ("schema_version", "versions", "benchmark", "layer_macs", "steps",
                          "sensitivity")}
    assert validate_report(plain).benchmark is None


def test_bad_report_names_the_offending_key(full_report):
    broken = dict(full_report, layers=[{"layer": "conv", "kind": "Conv", "before": "many"}])
    with pytest.raises(DataError, match=r"layers\.0\.before"):
        validate_report(broken)
    broken = json.loads(json.dumps(full_report["benchmark"]))
    del broken["providers"]["cpu"][0]["pruned"]["latency"]["p50_ms"]
    with pytest.raises(DataError, match="p50_ms"):
        validate_benchmark(broken)


def test_json_schema_is_versioned_and_committed_copy_is_current():
    schema = report_json_schema()
    assert schema["version"] == REPORT_SCHEMA_VERSION == SCHEMA_VERSION
    assert {"layers", "benchmark", "layer_macs", "steps"} <= set(schema["properties"])
    committed = json.loads((ROOT / "docs" / "report.schema.json").read_text())
    assert committed == json.loads(json.dumps(schema)), \
        "regenerate: python -m onnxprune.reporting.schema > docs/report.schema.json"


def test_layer_macs_sum_to_the_cost_model_totals(full_report):
    rows = full_report["layer_macs"]
    assert sum(r["before"] for r in rows) == pytest.approx(full_report["macs_before"])
    assert sum(r["after"] for r in rows) == pytest.approx(full_report["macs_after"])
    assert any(r["after"] < r["before"] for r in rows)
    names = [r["node"] for r in node_macs(MODELS / "resnet_basic.dynamo.onnx")]
    assert names == [r["node"] for r in layer_macs(MODELS / "resnet_basic.dynamo.onnx",
                                                   MODELS / "resnet_basic.dynamo.onnx")]
