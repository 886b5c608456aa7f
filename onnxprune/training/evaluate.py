"""Fidelity of a model to a reference model (the original) on data.

Metrics, averaged over samples (ONNX Runtime inference, one pass over ``data``):

1. The first output shaped ``[N, K]`` (K > 1) is a classifier's logits: ``kl`` =
   KL(softmax(reference) || softmax(model)), ``agreement`` = fraction of samples with
   the same top class, and with integer labels in ``[0, K)``, ``accuracy`` (and
   ``reference_accuracy``).
2. Otherwise, over every float output: ``cosine`` = mean of ``1 - cos`` between the
   flattened per-sample outputs, and ``rel_mse`` = squared error over the
   reference's mean square.
"""

from __future__ import annotations

__all__ = ["fidelity"]

import numpy as np
import onnx

from onnxprune.data import DataSource
from onnxprune.graph import runtime


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def fidelity(model: onnx.ModelProto, reference: onnx.ModelProto, data: DataSource,
             batch_size: int = 64) -> dict[str, float]:
    """Metrics 1-2 of ``model`` against ``reference`` on ``data``."""
    session, ref_session = runtime.make_session(model), runtime.make_session(reference)
    first = session.get_outputs()[0]
    classifier = first.type == "tensor(float)" and len(first.shape) == 2
    sums: dict[str, float] = {}
    count = 0

    def add(key: str, values: np.ndarray) -> None:
        sums[key] = sums.get(key, 0.0) + float(np.sum(values))

    for labels, feeds in data.labeled_batches(batch_size):
        outputs, expected = session.run(None, feeds), ref_session.run(None, feeds)
        rows = len(next(iter(feeds.values())))
        count += rows
        if classifier and np.asarray(outputs[0]).shape[1] > 1:
            y, r = np.asarray(outputs[0], np.float64), np.asarray(expected[0], np.float64)
            log_p, log_q = _log_softmax(r), _log_softmax(y)
            add("kl", (np.exp(log_p) * (log_p - log_q)).sum(axis=1))
            add("agreement", y.argmax(1) == r.argmax(1))
            ids = None if labels is None else np.asarray(labels).reshape(-1)
            if ids is not None and len(ids) == rows and np.issubdtype(ids.dtype, np.integer):
                add("accuracy", y.argmax(1) == ids)
                add("reference_accuracy", r.argmax(1) == ids)
            continue
        cos, rel = [], []
        for y, r in zip(outputs, expected):
            if not np.issubdtype(np.asarray(r).dtype, np.floating):
                continue
            y = np.asarray(y, np.float64).reshape(rows, -1)
            r = np.asarray(r, np.float64).reshape(rows, -1)
            norms = np.linalg.norm(y, axis=1) * np.linalg.norm(r, axis=1)
            cos.append(1.0 - (y * r).sum(axis=1) / np.maximum(norms, 1e-12))
            rel.append(((y - r) ** 2).mean(axis=1) / max(float((r ** 2).mean()), 1e-12))
        if cos:
            add("cosine", np.mean(cos, axis=0))
            add("rel_mse", np.mean(rel, axis=0))
    return {k: round(v / max(count, 1), 6) for k, v in sums.items()}
