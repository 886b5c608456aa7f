"""Sensitivity-based allocation: per-group ratios reaching the target with least damage.

Rules:

1. Each group's damage as a function of its removed count is read from a
   :class:`Sensitivity` measurement: piecewise linear between the measured counts
   (with ``(0, 0)``), made non-decreasing, and extended past the last measurement
   with its last slope.
2. Within a group the lowest-scoring units go first (the order the measurement used).
3. Greedy: starting from nothing removed, repeatedly take the single step (one
   group to its next candidate count) with the least added damage per unit of
   target gained (the real reduction from the cost model, so coupled layers count
   correctly), until the target is reached. Candidate counts are the feasible
   counts of the planner (``min_keep``, ``round_to``, grouped convs), thinned to
   at most ``LEVELS`` per group.
4. Then single steps back are taken while the target stays reached, largest damage
   saved first.
5. Unreachable targets raise :class:`UnreachableTargetError`: the planner's one check
   (:meth:`~onnxprune.planning.planner.Searcher.require_reachable`).
"""

from __future__ import annotations

__all__ = ["LEVELS", "make_sensitivity_plan"]

import numpy as np

from onnxprune.analysis.groups import Analysis
from onnxprune.calibration.sensitivity import Sensitivity
from onnxprune.planning.planner import Plan, PlanOptions, Searcher

LEVELS = 24


def _interpolate(points: list[tuple[int, float]], counts: list[int]) -> dict[int, float]:
    xs = np.array([p[0] for p in points], dtype=float)
    ys = np.maximum.accumulate(np.array([p[1] for p in points], dtype=float))
    values = np.interp(counts, xs, ys)
    if len(xs) >= 2:
        slope = max((ys[-1] - ys[-2]) / max(xs[-1] - xs[-2], 1.0), 0.0)
        beyond = np.asarray(counts, dtype=float) > xs[-1]
        values[beyond] = ys[-1] + slope * (np.asarray(counts, dtype=float)[beyond] - xs[-1])
    return dict(zip(counts, values.tolist()))


def _levels(counts: list[int]) -> list[int]:
    """At most ``LEVELS`` of ``counts``, always with the first and the last (so the
    maximum stays the planner's)."""
    if len(counts) <= LEVELS:
        return counts
    picks = np.unique(np.linspace(0, len(counts) - 1, LEVELS).round().astype(int))
    return [counts[i] for i in picks]


def make_sensitivity_plan(analysis: Analysis, scores: np.ndarray, options: PlanOptions,
                          sensitivity: Sensitivity) -> Plan:
    """Apply rules 1-5."""
    options.validate()
    search = Searcher(analysis, scores, options)
    maximum = search.require_reachable()
    levels, damage = [], []
    for opts, _ in search.groups:
        candidates = _levels(opts.counts)
        levels.append(candidates)
        damage.append(_interpolate(sensitivity.curve(opts.group.index), candidates))
    position = [0] * len(levels)
    counts = [0] * len(levels)
    current = 0.0
    while current + 1e-12 < options.target:
        best = None
        for i, candidates in enumerate(levels):
            if position[i] + 1 >= len(candidates):
                continue
            trial = counts[:i] + [candidates[position[i] + 1]] + counts[i + 1:]
            gained = search.achieved(trial) - current
            added = damage[i][trial[i]] - damage[i][counts[i]]
            rate = added / gained if gained > 1e-12 else np.inf
            key = (rate, added)
            if best is None or key < best[0]:
                best = (key, i, trial)
        if best is None:
            break
        _, i, counts = best
        position[i] += 1
        current = search.achieved(counts)
    counts = _step_back(search, levels, damage, position, counts, options.target)
    removed = search.removal(counts)
    kept = {opts.group.index: opts.group.size - c for (opts, _), c in zip(search.groups, counts)}
    return Plan(removed, search.achieved(counts), options.metric, kept, maximum)


def _step_back(search, levels, damage, position, counts, target) -> list[int]:
    while True:
        best = None
        for i in range(len(counts)):
            if position[i] == 0:
                continue
            trial = counts[:i] + [levels[i][position[i] - 1]] + counts[i + 1:]
            if search.achieved(trial) + 1e-12 < target:
                continue
            saved = damage[i][counts[i]] - damage[i][trial[i]]
            if best is None or saved > best[0]:
                best = (saved, i, trial)
        if best is None:
            return counts
        _, i, counts = best
        position[i] -= 1
