"""Magnitude masks: unstructured (global or per layer) and N:M.

A mask is a boolean array shaped like its weight: ``True`` keeps the weight, ``False``
zeroes it. Rules:

1. Unstructured, ``scope="global"``: the ``round(s * total)`` smallest magnitudes over
   all prunable weights together are zeroed (one threshold, so layers end up with
   different sparsities); ``scope="uniform"``: ``round(s * size)`` in every layer.
2. N:M: along the input axis, every run of ``M`` consecutive weights (at one output
   channel and kernel position) keeps at most ``N`` non-zeros: its ``M - N`` smallest
   magnitudes are zeroed. Layers whose input axis is not a multiple of ``M`` are left
   dense and reported as skipped. With ``fraction < 1`` (progressive steps) only that
   fraction of each layer's groups is made N:M, those that lose the least magnitude.
3. Masks only grow: weights zeroed by ``previous`` masks rank below every other
   weight, so they stay zeroed (and an N:M group masked before is selected again).
"""

from __future__ import annotations

__all__ = ["apply_masks", "magnitude_masks", "nm_masks"]

import math

import numpy as np


def _scores(arrays: dict[str, np.ndarray], previous: dict[str, np.ndarray] | None,
            ) -> dict[str, np.ndarray]:
    scores = {}
    for name, array in arrays.items():
        score = np.abs(array.astype(np.float64))
        if previous is not None and name in previous:
            score[~previous[name]] = -1.0
        scores[name] = score
    return scores


def _lowest(score: np.ndarray, count: int) -> np.ndarray:
    """Keep-mask zeroing the ``count`` lowest entries of ``score`` (stable order)."""
    keep = np.ones(score.size, dtype=bool)
    if count > 0:
        keep[np.argsort(score.ravel(), kind="stable")[:count]] = False
    return keep.reshape(score.shape)


def magnitude_masks(arrays: dict[str, np.ndarray], sparsity: float, scope: str = "global",
                    previous: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Rule 1 (with rule 3)."""
    scores = _scores(arrays, previous)
    if scope == "uniform":
        return {name: _lowest(score, round(sparsity * score.size))
                for name, score in scores.items()}
    if scope != "global":
        raise ValueError(f"scope must be global or uniform, got {scope!r}")
    flat = np.concatenate([s.ravel() for s in scores.values()]) if scores else np.zeros(0)
    keep = _lowest(flat, round(sparsity * flat.size))
    masks, start = {}, 0
    for name, score in scores.items():
        masks[name] = keep[start:start + score.size].reshape(score.shape)
        start += score.size
    return masks


def nm_masks(arrays: dict[str, np.ndarray], in_axes: dict[str, int], n: int, m: int,
             fraction: float = 1.0, previous: dict[str, np.ndarray] | None = None,
             ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Rule 2 (with rule 3): ``(masks, {skipped weight: reason})``."""
    scores = _scores(arrays, previous)
    masks, skipped = {}, {}
    for name, score in scores.items():
        axis = in_axes[name]
        if score.shape[axis] % m:
            skipped[name] = (f"input axis has {score.shape[axis]} weights, not a multiple "
                             f"of {m}")
            continue
        moved = np.moveaxis(score, axis, -1)
        groups = moved.reshape(-1, m)
        order = np.argsort(groups, axis=1, kind="stable")[:, :m - n]
        cost = np.take_along_axis(groups, order, axis=1).sum(axis=1)
        chosen = np.argsort(cost, kind="stable")[:math.ceil(fraction * len(groups) - 1e-9)]
        keep = np.ones(groups.shape, dtype=bool)
        rows = np.repeat(chosen, m - n)
        keep[rows, order[chosen].ravel()] = False
        masks[name] = np.moveaxis(keep.reshape(moved.shape), -1, axis)
        if previous is not None and name in previous:
            masks[name] &= previous[name]
    return masks, skipped


def apply_masks(arrays: dict[str, np.ndarray], masks: dict[str, np.ndarray],
                ) -> dict[str, np.ndarray]:
    """The arrays with masked entries set to exactly zero."""
    return {name: np.where(masks[name], array, np.zeros((), dtype=array.dtype)).astype(
        array.dtype) if name in masks else array for name, array in arrays.items()}
