"""Terminal summary of a sparsity / quantization run (``onnxprune compress``)."""

from __future__ import annotations

__all__ = ["print_summary"]

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def print_summary(result: Any, console: Console) -> None:
    """Per-layer sparsity (modes unstructured, n:m) and the evaluation table."""
    sparsity = result.sparsity
    if sparsity:
        layers = Table(title=Text(f"{result.input} -> {result.output}: {sparsity['mode']} "
                                  "sparsity"))
        for column in ("layer", "op", "shape", "weights", "zeros", "sparsity"):
            layers.add_column(column)
        for row in sparsity["layers"]:
            layers.add_row(Text(row["layer"]), row["op"], "x".join(map(str, row["shape"])),
                           f"{row['weights']:,}", f"{row['zeros']:,}",
                           _pct(row["sparsity"]) + (" (dense: skipped)" if row.get("skipped")
                                                    else ""))
        console.print(layers)
    evaluation = result.evaluation or {}
    table = Table(title=Text(f"evaluation on {evaluation.get('samples', 0)} samples of "
                             f"{evaluation.get('data', '-')}"))
    table.add_column("model", no_wrap=True, min_width=11)
    for column in ("file bytes", "gzip bytes", "accuracy", "top-1 agreement",
                   "max rel. diff", "p50 latency (1 thread)"):
        table.add_column(column)
    for row in evaluation.get("models", []):
        latency = row.get("latency_p50_ms")
        table.add_row(Text(row["model"]), f"{row['file_bytes']:,}", f"{row['gzip_bytes']:,}",
                      _pct(row.get("accuracy")), _pct(row.get("agreement")),
                      f"{row['max_rel_diff']:.2e}",
                      "-" if latency is None else f"{latency:.4f} ms")
    console.print(table)
    if sparsity:
        console.print(f"{_pct(result.achieved)} of {sparsity['prunable_weights']:,} prunable "
                      f"weights are zero; gzip {sparsity['gzip_before']:,} -> "
                      f"{sparsity['gzip_after']:,} bytes", markup=False)
    if result.quantization:
        q = result.quantization
        console.print(f"quantized: {q['method']} {q['format']}, weights {q['weight_type']} "
                      f"per-channel={q['per_channel']}, {q['calibration_samples']} "
                      "calibration samples")
    for note in result.notes:
        console.print(f"note: {note}", markup=False, emoji=False)
