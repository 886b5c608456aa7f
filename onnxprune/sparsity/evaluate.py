"""Size, fidelity, accuracy and latency of the original and compressed models.

Rules:

1. Every model runs on the same evaluation data; the first output is compared.
2. ``accuracy``: top-1 against the data's labels, when the data has labels and the
   output is ``[N, classes]``. ``agreement``: fraction of samples whose top-1 equals
   the original's. ``max_rel_diff``: largest absolute output difference from the
   original divided by the original's largest magnitude.
3. ``file_bytes`` and ``gzip_bytes`` (gzip level 9 of the .onnx file, what a zip or
   gzip download of the model weighs; zeros compress, dense weights do not).
4. With ``bench``: single-thread CPU latency, every model timed interleaved run by run
   (:func:`onnxprune.benchmark.benchmark`, batch 1 unless the model fixes it).
"""

from __future__ import annotations

__all__ = ["compare_models", "fidelity", "gzip_size", "model_outputs"]

import gzip
import logging
import pathlib

import numpy as np
import onnx

from onnxprune.data import DataSource
from onnxprune.graph.runtime import make_session

logger = logging.getLogger(__name__)


def gzip_size(path: str | pathlib.Path) -> int:
    """Rule 3."""
    return len(gzip.compress(pathlib.Path(path).read_bytes(), compresslevel=9, mtime=0))


def model_outputs(model: str | pathlib.Path | onnx.ModelProto, data: DataSource,
                  batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """First output over all of ``data`` and the labels (``None`` without)."""
    source = model if isinstance(model, onnx.ModelProto) else str(model)
    session = make_session(source, threads=1, optimize=True)
    outputs, labels = [], []
    for batch_labels, feeds in data.labeled_batches(batch_size):
        outputs.append(session.run(None, feeds)[0])
        if batch_labels is not None:
            labels.append(batch_labels)
    return np.concatenate(outputs), (np.concatenate(labels) if labels else None)


def fidelity(output: np.ndarray, reference: np.ndarray, labels: np.ndarray | None) -> dict:
    """Rule 2."""
    row: dict = {}
    classes = output.ndim == 2 and output.shape[1] > 1
    if classes and labels is not None and labels.ndim == 1:
        row["accuracy"] = round(float((output.argmax(axis=1) == labels).mean()), 6)
    if classes:
        row["agreement"] = round(float((output.argmax(axis=1) ==
                                        reference.argmax(axis=1)).mean()), 6)
    scale = max(float(np.abs(reference).max()) if reference.size else 0.0, 1e-12)
    row["max_rel_diff"] = float(np.abs(output.astype(np.float64) - reference).max() / scale)
    return row


def compare_models(models: dict[str, pathlib.Path], data: DataSource, *, batch_size: int,
                   bench: bool = False, runs: int = 50, seed: int = 0,
                   origin: str = "") -> dict:
    """Rules 1-4 for ``models`` (name -> file; the first is the reference)."""
    names = list(models)
    reference, labels = model_outputs(models[names[0]], data, batch_size)
    rows = []
    for name in names:
        path = pathlib.Path(models[name])
        output = reference if name == names[0] else model_outputs(path, data, batch_size)[0]
        rows.append({"model": name, "file_bytes": path.stat().st_size,
                     "gzip_bytes": gzip_size(path), **fidelity(output, reference, labels)})
    result = {"data": origin or data.origin, "samples": len(reference),
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
