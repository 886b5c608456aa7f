"""Versioned schema of the JSON documents onnxprune writes: compress reports, benchmarks.

Rules:

1. ``REPORT_SCHEMA_VERSION`` is the version of these schemas; a report carries it in
   ``schema_version``. Adding an optional key keeps the version; renaming, removing or
   changing the meaning of a key bumps it.
2. Models accept keys they do not know (``extra="allow"``), so an older reader can
   read a newer report; the documented keys are type-checked.
3. ``validate_report`` / ``validate_benchmark`` raise :class:`DataError` naming the
   first bad key; ``report_json_schema()`` is the JSON Schema (draft 2020-12) of a
   compress report, written to ``docs/report.schema.json`` by
   ``python -m onnxprune.reporting.schema``.
"""

from __future__ import annotations

__all__ = [
    "REPORT_SCHEMA_VERSION",
    "BenchmarkComparison",
    "BenchmarkReport",
    "CompressReport",
    "LatencySection",
    "report_json_schema",
    "validate_benchmark",
    "validate_report",
]

import json
import sys
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from onnxprune.errors import DataError

REPORT_SCHEMA_VERSION = 2  # 2: standardised cosine/rel_mse (calibration.fidelity)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Latency(_Open):
    runs: int
    batch: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    throughput: float = Field(description="items per second: batch / mean latency")
    cv: float = Field(description="coefficient of variation of the latency")


class ModelInfo(_Open):
    path: str
    file_bytes: int
    params: int | None = Field(None, description="None for ORT-format files")
    macs: float | None = Field(None, description="MACs per item; None for ORT-format files")


class ModelRun(_Open):
    load_s: float = Field(description="session creation time (includes graph optimization)")
    first_run_ms: float
    input_shapes: dict[str, list[int]]
    peak_memory_mb: float | None = Field(None, description="see settings.memory_method")
    latency: Latency


class ComparisonRun(_Open):
    threads: int
    batch: int
    session_providers: list[str]
    node_placement: dict[str, int] | None = Field(
        None, description="nodes per provider in a profiled run (non-CPU providers)")
    original: ModelRun
    pruned: ModelRun
    speedup: float = Field(description="p50(original) / p50(pruned), timed interleaved")
    speedup_mean: float | None = None
    speedup_paired: dict[str, float] = Field(description="median/q25/q75 of per-run ratios")
    ideal_speedup: float | None = Field(None, description="MACs(original) / MACs(pruned)")
    warning: str | None = None


class BenchmarkComparison(_Open):
    """``onnxprune.benchmark.compare()``: original vs pruned per provider."""

    kind: str = "onnxprune.benchmark.compare"
    schema_version: int
    original: ModelInfo
    pruned: ModelInfo
    ideal_speedup: float | None
    settings: dict[str, Any]
    environment: dict[str, Any]
    unavailable: dict[str, str] = Field(description="provider alias -> why it was not timed")
    providers: dict[str, list[ComparisonRun]]


class BenchResult(_Open):
    provider: str
    provider_name: str
    threads: int
    batch: int | None
    status: str = Field(description="ok | fallback (not timed, see reason)")
    reason: str
    session_providers: list[str] | None = None
    node_placement: dict[str, int] | None = None
    models: list[ModelRun] | None = None
    speedup: list[dict[str, Any] | None] | None = None
    note: str | None = None
    warning: str | None = None


class BenchmarkReport(_Open):
    """``onnxprune bench --json`` / ``onnxprune.benchmark.benchmark()``."""

    kind: str = "onnxprune.benchmark"
    schema_version: int
    models: list[ModelInfo]
    settings: dict[str, Any]
    environment: dict[str, Any]
    providers: list[dict[str, Any]]
    results: list[BenchResult]


class LayerRow(_Open):
    layer: str
    kind: str
    before: int = Field(description="channels before")
    after: int = Field(description="channels after")


class LayerMacs(_Open):
    node: str
    op_type: str
    before: float
    after: float | None


class Versions(_Open):
    onnx: str | None = None
    onnxruntime: str | None = None
    onnxprune: str | None = None


class LatencyPrediction(_Open):
    original_ms: float
    pruned_ms: float
    ratio: float | None = Field(None, description="pruned / original")


class LatencySection(_Open):
    """``--metric latency``: onnxprune.benchmark.latency_check."""

    provider: str
    threads: int
    input_shapes: dict[str, list[int]]
    target: float
    predicted: LatencyPrediction
    measured: LatencyPrediction | None = Field(
        None, description="timed interleaved after pruning (medians); null when not timed")
    predicted_over_measured: float | None = None
    cache: str = Field(description="latency table file")
    cache_hit: bool
    table: dict[str, Any] = Field(description="whole_ms, fixed_ms, modelled_ms, scale, layers, "
                                              "nodes_ms, scaled_nodes")
class InputShapeRow(_Open):
    shape: list[int | None] = Field(description="dims; null: a dynamic batch axis")
    source: Literal["given", "data", "metadata", "probed", "default", "static"]


class CompressReport(_Open):
    """``CompressResult.to_dict()`` plus the optional keys a run may add."""

    schema_version: int | None = Field(None, description="REPORT_SCHEMA_VERSION")
    versions: Versions | None = None
    input: str
    output: str | None
    options: dict[str, Any]
    achieved: float = Field(description="fraction of the metric removed")
    params_before: int
    params_after: int
    macs_before: float
    macs_after: float
    size_before: int
    size_after: int | None
    layers: list[LayerRow]
    groups: list[dict[str, Any]]
    verification: dict[str, Any] | None
    seconds: float
    notes: list[str]
    version: str
    benchmark: BenchmarkComparison | None = None
    layer_macs: list[LayerMacs] | None = Field(
        None, description="onnxprune.reporting.macs.layer_macs(original, pruned)")
    steps: list[dict[str, Any]] | None = Field(
        None, description="metrics per progressive step (numbers plotted against the step)")
    budget: dict[str, Any] | None = Field(
        None, description="--max-drop: metric, reference, allowed drop, the step that broke "
                          "it (not kept) and the final fine-tune (onnxprune.training)")
    sensitivity: Any | None = Field(
        None, description="curves: {name: {x: [...], y: [...]}} or a list of "
                          "{name, x, y}; see onnxprune.reporting.plots.sensitivity_curves")
    mobile: dict[str, Any] | None = Field(None, description="onnxprune.mobile.export_mobile()")
    sparsity: dict[str, Any] | None = Field(
        None, description="modes unstructured/n:m: per-layer sparsity, gzip sizes "
                          "(onnxprune.pipeline.sparse)")
    quantization: dict[str, Any] | None = Field(
        None, description="--quantize int8: method, format, types (onnxprune.quantize)")
    evaluation: dict[str, Any] | None = Field(
        None, description="original/pruned/pruned+int8: size, gzip size, accuracy, "
                          "agreement, latency (onnxprune.sparsity.evaluate)")
    accuracy: dict[str, Any] | None = Field(
        None, description="task metric of original and result side by side, or "
                          "measured=false with how to measure it "
                          "(onnxprune.calibration.accuracy)")
    flow: dict[str, Any] | None = Field(
        None, description="progressive or one-shot, and why (onnxprune.training.outcome)")
    latency: LatencySection | None = Field(
        None, description="--metric latency: predicted and measured latency, the table and "
                          "its cache file (onnxprune.benchmark.latency_check)")
    input_shapes: dict[str, InputShapeRow] | None = Field(
        None, description="the run-time input shapes every run used (checks, calibration, "
                          "MACs per sample) and why (onnxprune.graph.input_shapes)")


def _validate(model: type[BaseModel], document: dict, what: str) -> BaseModel:
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise DataError(f"{what} does not match schema version {REPORT_SCHEMA_VERSION}: "
                        f"{where}: {first['msg']}") from exc


def validate_report(report: dict) -> CompressReport:
    return _validate(CompressReport, report, "compress report")  # type: ignore[return-value]


def validate_benchmark(document: dict) -> BaseModel:
    """Validate a ``benchmark()`` or ``compare()`` document (by its ``kind``)."""
    model = BenchmarkComparison if document.get("kind", "").endswith("compare") \
        else BenchmarkReport
    return _validate(model, document, "benchmark document")


def report_json_schema() -> dict:
    schema = CompressReport.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "onnxprune compress report"
    schema["version"] = REPORT_SCHEMA_VERSION
    return schema


if __name__ == "__main__":
    json.dump(report_json_schema(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
