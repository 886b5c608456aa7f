"""Size, fidelity, accuracy and latency of the original and compressed models.

Rules:

1. Every model runs on the same evaluation data.
2. Each row (:func:`evaluation_row`) holds the fidelity to the original: the metrics of
   :mod:`onnxprune.calibration.fidelity`, the one fidelity module (per output head, on
   the logits of Softmax/Sigmoid heads: ``accuracy`` with labels, ``agreement``, ``kl``,
   standardised ``cosine``/``rel_mse``, per output in ``outputs``; no
   ``reference_accuracy``: the first row is the reference), plus its ``max_rel_diff``
   (largest absolute difference of the first output from the original's divided by the
   original's largest magnitude).
3. ``file_bytes`` and ``gzip_bytes`` (gzip level 9 of the .onnx file, what a zip or
   gzip download of the model weighs; zeros compress, dense weights do not).
4. With ``bench``: single-thread CPU latency, every model timed interleaved run by run
   (:func:`onnxprune.benchmark.benchmark`, batch 1 unless the model fixes it).
"""

from __future__ import annotations

__all__ = ["compare_models", "evaluation_row", "gzip_size", "heads_for", "model_outputs"]

import gzip
import logging
import pathlib

import numpy as np
import onnx

from onnxprune.calibration.fidelity import compare, fidelity_heads, max_rel_diff, outputs_on
from onnxprune.data import DataSource

logger = logging.getLogger(__name__)


def gzip_size(path: str | pathlib.Path) -> int:
    """Rule 3."""
    return len(gzip.compress(pathlib.Path(path).read_bytes(), compresslevel=9, mtime=0))


def model_outputs(model: str | pathlib.Path | onnx.ModelProto, data: DataSource,
                  batch_size: int, heads: list | None = None,
                  ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Every output (and every head's logits) over all of ``data``, and the labels."""
    return outputs_on(_proto(model), fidelity_heads(_proto(model)) if heads is None else heads,
                      data, batch_size)


def _proto(model: str | pathlib.Path | onnx.ModelProto) -> onnx.ModelProto:
    return model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))


def heads_for(original: onnx.ModelProto, model: str | pathlib.Path | onnx.ModelProto) -> list:
    """The original's heads as ``model`` can be compared on them (a quantized model whose
    logits tensor was renamed is compared on the output)."""
    return fidelity_heads(original, _proto(model))


def evaluation_row(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray],
                   labels: np.ndarray | None, heads: list) -> dict:
    """Rule 2: one model's fidelity metrics in the evaluation table."""
    row = compare(outputs, reference, heads, labels)
    row.pop("reference_accuracy", None)
    diff = max_rel_diff(outputs, reference, heads)
    if diff is not None:
        row["max_rel_diff"] = diff
    return row


def compare_models(models: dict[str, pathlib.Path], data: DataSource, *, batch_size: int,
                   bench: bool = False, runs: int = 50, seed: int = 0,
                   origin: str = "") -> dict:
    """Rules 1-4 for ``models`` (name -> file; the first is the reference)."""
    names = list(models)
    original = onnx.load(str(models[names[0]]))
    reference, labels = model_outputs(original, data, batch_size)
    rows = []
    for name in names:
        path = pathlib.Path(models[name])
        heads = heads_for(original, path)
        output = reference if name == names[0] else \
            model_outputs(path, data, batch_size, heads)[0]
        rows.append({"model": name, "file_bytes": path.stat().st_size,
                     "gzip_bytes": gzip_size(path),
                     **evaluation_row(output, reference, labels, heads)})
    result = {"data": origin or data.origin, "samples": data.num_samples,
              "labels": labels is not None, "models": rows}
    if bench:
        result["latency"] = _latency(models, rows, runs, seed)
    return result


def _latency(models: dict[str, pathlib.Path], rows: list[dict], runs: int, seed: int) -> dict:
    from onnxprune.benchmark import benchmark

    full = benchmark([str(p) for p in models.values()], providers=("cpu",), threads=1,
                     runs=runs, warmup=10, seed=seed, memory=False)
    timed = next(r for r in full["results"] if r["status"] == "ok")
    base = timed["models"][0]["latency"]["p50_ms"]
    for row, model in zip(rows, timed["models"]):
        p50 = model["latency"]["p50_ms"]
        row["latency_p50_ms"] = p50
        row["latency_mean_ms"] = model["latency"]["mean_ms"]
        row["speedup"] = round(base / p50, 4) if p50 else None
    return {"threads": 1, "batch": timed["batch"], "runs": runs, "warmup": 10,
            "provider": timed["provider_name"], "warning": timed.get("warning"),
            "environment": full["environment"]}
