"""Numpy helpers of the training losses: class views, targets, stable activations.

1. :func:`classes_view` flattens a tensor into ``[rows, K]`` from axis ``axis`` on (the
   distributions of an opset < 13 Softmax); :func:`log_softmax` works along any axis.
2. :func:`class_targets` turns integer class ids (one per distribution) into one-hot
   targets shaped like the loss view, classes on ``axis``.
3. :func:`regression_targets` reshapes labels to a term's shape (``mse`` targets, or
   ``ce`` targets of a Sigmoid head, which must lie in [0, 1]).
4. :func:`bce_with_logits` is ``softplus(z) - t*z`` elementwise, computed stably.
"""

from __future__ import annotations

__all__ = ["bce_with_logits", "class_targets", "classes_view", "log_softmax",
           "regression_targets"]

import numpy as np

from onnxprune.errors import DataError


def classes_view(value: np.ndarray, axis: int) -> np.ndarray:
    """``value`` as ``[prod(shape[:axis]), prod(shape[axis:])]`` (rule 1)."""
    value = np.asarray(value)
    return value.reshape(int(np.prod(value.shape[:axis], dtype=np.int64)), -1)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def class_targets(labels: np.ndarray | None, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """One-hot targets of ``shape`` from class ids, one per distribution (rule 2)."""
    if labels is None:
        raise DataError("--loss ce needs labels: add a 'labels' array to --data")
    ids = np.asarray(labels).reshape(-1)
    k = shape[axis]
    rows = int(np.prod(shape)) // k
    if not np.issubdtype(ids.dtype, np.integer):
        if not np.all(ids == np.round(ids)):
            raise DataError("--loss ce needs integer class labels; use --loss mse for "
                            "regression targets")
        ids = ids.astype(np.int64)
    if ids.size != rows:
        raise DataError(f"--loss ce: {ids.size} labels for {rows} class distributions per "
                        "batch; give one class id per sample (per row of the output)")
    if ids.min(initial=0) < 0 or ids.max(initial=0) >= k:
        raise DataError(f"labels must be class ids in [0, {k}) for a model with {k} outputs; "
                        f"got values in [{ids.min()}, {ids.max()}]")
    onehot = np.zeros((rows, k), np.float32)
    onehot[np.arange(rows), ids] = 1.0
    moved = [*shape[:axis], *shape[axis + 1:], k]
    return np.moveaxis(onehot.reshape(moved), -1, axis)


def regression_targets(labels: np.ndarray | None, shape: tuple[int, ...], loss: str,
                       bounds: tuple[float, float] | None = None) -> np.ndarray:
    """``labels`` shaped like the term (rule 3)."""
    if labels is None:
        what = "targets: add a 'labels' array (the regression targets)" if loss == "mse" \
            else "labels: add a 'labels' array (0/1 per output value)"
        raise DataError(f"--loss {loss} needs {what} to --data")
    target = np.asarray(labels, np.float32)
    if target.size == int(np.prod(shape)) and target.shape != shape:
        target = target.reshape(shape)
    if target.shape != shape:
        raise DataError(f"--loss {loss}: labels of shape {list(target.shape)} do not match the "
                        f"model output {list(shape)}")
    if bounds is not None and (target.min() < bounds[0] or target.max() > bounds[1]):
        raise DataError(f"--loss {loss} on a Sigmoid output needs labels in "
                        f"[{bounds[0]:g}, {bounds[1]:g}]; got [{target.min()}, {target.max()}]")
    return target


def bce_with_logits(z: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``softplus(z) - target*z`` (rule 4)."""
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z))) - target * z
