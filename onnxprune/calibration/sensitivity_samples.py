"""``--samples N``: which groups a subsampled first pass cannot place, to re-measure.

Rule (the decision boundary): the allocation (:mod:`onnxprune.planning.allocation`)
prunes the groups that lose least per channel first, so what a measurement must get
right is each group's side of the ranking at every ratio. For every measured ratio let
``t`` be the damage of the median group measured at it (the lower middle one for an
even count, so the boundary group itself is always re-measured). A group is re-measured on
the full set when, at some ratio, its first-pass damage ``d`` is not clearly on one
side of ``t``:

1. ``|d - t| <= Z * se``, with ``se`` the standard error of ``d`` estimated from its
   per-batch damages (``Z = 2``; one batch only: ``se`` is infinite), or
2. ``|d - t| <= MARGIN * |t|`` (``MARGIN = 0.1``): so close to the boundary that a
   difference the subsample would not show reorders the group.

Groups far from the boundary on every ratio keep their first-pass points (and record
``samples`` = the subsample size).
"""

from __future__ import annotations

__all__ = ["MARGIN", "Z", "boundary_groups", "standard_error"]

import math
from collections.abc import Sequence

import numpy as np

Z = 2.0
MARGIN = 0.1


def standard_error(batches: Sequence[tuple[int, float]]) -> float:
    """Standard error of the sample mean from ``(rows, damage sum)`` per batch."""
    if len(batches) < 2:
        return math.inf
    rows = np.array([r for r, _ in batches], dtype=float)
    means = np.array([s for _, s in batches], dtype=float) / np.maximum(rows, 1.0)
    mean = float((means * rows).sum() / rows.sum())
    variance = float((rows * (means - mean) ** 2).sum() / rows.sum())
    effective = rows.sum() ** 2 / (rows ** 2).sum()  # equal batches: the batch count
    return math.sqrt(variance / max(effective - 1.0, 1.0))


def boundary_groups(points: dict[int, dict[float, tuple[float, float]]]) -> list[int]:
    """Positions of the groups to re-measure; ``points``: position -> ratio ->
    ``(damage, standard error)`` of the cells measured on the subsample."""
    ratios = sorted({r for by_ratio in points.values() for r in by_ratio})
    chosen: set[int] = set()
    for ratio in ratios:
        measured = {p: v[ratio] for p, v in points.items() if ratio in v}
        if len(measured) < 2:
            continue
        ordered = sorted(d for d, _ in measured.values())
        threshold = float(ordered[(len(ordered) - 1) // 2])
        for position, (damage, error) in measured.items():
            gap = abs(damage - threshold)
            if gap <= Z * error or gap <= MARGIN * abs(threshold):
                chosen.add(position)
    return sorted(chosen)
