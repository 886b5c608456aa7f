"""Data-free importance criteria.

Each criterion maps every unit to a non-negative score (higher = keep), by
aggregating over all members of its group:

1. ``l1`` / ``l2``: norms of every weight slice coupled to the unit (the layer's
   own filters *and* the consumers' input slices), summed over members.
2. ``bn_scale``: ``|gamma|`` of the BatchNormalization/InstanceNormalization scales
   coupled to the unit (network slimming); groups without one fall back to ``l1``.
3. ``fpgm``: distance of each filter to the other filters of its layer (Filter
   Pruning via Geometric Median): filters near the median are redundant.
4. ``random``: uniform scores from a seeded generator (a baseline).

Criteria read initializers only; they never change the model. A quantized weight
(``DequantizeLinear`` of an integer initializer) is read dequantized.
"""

from __future__ import annotations

__all__ = ["CRITERIA", "score_units"]

import logging
from collections.abc import Callable

import numpy as np

from onnxprune.analysis.context import Coupling
from onnxprune.analysis.groups import Analysis
from onnxprune.analysis.rules.quant import dequantized
from onnxprune.errors import UsageError
from onnxprune.graph.tensors import reduce_rows, release

logger = logging.getLogger(__name__)

_WEIGHT_ROLES = ("out", "in")


def _position_stat(coupling: Coupling, stat: Callable[[np.ndarray, tuple[int, ...]], np.ndarray],
                   chunked: bool = True) -> np.ndarray:
    """A statistic per position of the coupled axis (grouped axes flattened in order).

    Sum-like statistics are computed in chunks (large weights); others (``fpgm``)
    need the whole tensor at once.
    """
    array = dequantized(coupling.node, coupling.input_index)
    plain = reduce_rows if chunked else _whole
    try:
        if coupling.groups > 1:
            blocks = np.split(array, coupling.groups, axis=0)
            return np.concatenate([plain(b, coupling.axis, stat) for b in blocks])
        return plain(array, coupling.axis, stat)
    finally:
        del array
        release(coupling.value)


def _whole(array, axis, stat) -> np.ndarray:
    others = tuple(i for i in range(array.ndim) if i != axis)
    return stat(np.asarray(array, dtype=np.float64), others)


def _accumulate(analysis: Analysis, couplings: list[Coupling], stat,
                chunked: bool = True) -> np.ndarray:
    scores = np.zeros(analysis.num_units)
    for coupling in couplings:
        values = _position_stat(coupling, stat, chunked)
        ids = coupling.ids
        valid = ids >= 0
        np.add.at(scores, analysis.element_unit[ids[valid]], values[valid])
    return scores


def _roles(analysis: Analysis, roles: tuple[str, ...]) -> list[Coupling]:
    return [c for c in analysis.ctx.couplings if c.role in roles]


def l1(analysis: Analysis, seed: int) -> np.ndarray:
    return _accumulate(analysis, _roles(analysis, _WEIGHT_ROLES),
                       lambda a, axes: np.abs(a).sum(axis=axes))


def l2(analysis: Analysis, seed: int) -> np.ndarray:
    squares = _accumulate(analysis, _roles(analysis, _WEIGHT_ROLES),
                          lambda a, axes: np.square(a).sum(axis=axes))
    return np.sqrt(squares)


def bn_scale(analysis: Analysis, seed: int) -> np.ndarray:
    scales = _accumulate(analysis, _roles(analysis, ("bn_scale",)),
                         lambda a, axes: np.abs(a).sum(axis=axes) if axes else np.abs(a))
    covered = np.zeros(analysis.num_units, dtype=bool)
    for coupling in _roles(analysis, ("bn_scale",)):
        covered[analysis.element_unit[coupling.ids[coupling.ids >= 0]]] = True
    fallback = l1(analysis, seed)
    for group in analysis.groups:
        if not covered[group.units].any():
            scales[group.units] = fallback[group.units]
            logger.info("group %s has no normalisation scale; bn_scale uses l1 there", group.name)
    return scales


def _fpgm_stat(array: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    axis = next(i for i in range(array.ndim) if i not in axes)
    filters = np.moveaxis(array, axis, 0).reshape(array.shape[axis], -1)
    squared = np.square(filters).sum(axis=1)
    gram = filters @ filters.T
    dist = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * gram, 0.0))
    return dist.sum(axis=1)


def fpgm(analysis: Analysis, seed: int) -> np.ndarray:
    return _accumulate(analysis, _roles(analysis, ("out",)), _fpgm_stat, chunked=False)


def random(analysis: Analysis, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(analysis.num_units)


CRITERIA: dict[str, Callable[[Analysis, int], np.ndarray]] = {
    "l1": l1,
    "l2": l2,
    "bn_scale": bn_scale,
    "fpgm": fpgm,
    "random": random,
}


def score_units(analysis: Analysis, criterion: str = "l1", seed: int = 0) -> np.ndarray:
    """Score every unit with the named criterion (see module docstring)."""
    if criterion not in CRITERIA:
        raise UsageError(f"unknown criterion '{criterion}'; choose one of {', '.join(CRITERIA)}")
    return CRITERIA[criterion](analysis, seed)
