"""How much of a model can be pruned at all: the prunable share and the reachable maximum.

Rules:

1. The **prunable share** of a metric is what removing every prunable unit would remove
   (floors and rounding ignored): the part of the parameters (or MACs) that sits on
   prunable channels at all. It says how much of the network the analysis sees.
2. The **maximum** of a metric is what the planner can remove with the given options
   (``min_keep``, ``round_to``, one kept channel per source and Split/Slice part, equal
   loss per grouped-conv block): every group at its largest feasible removal count.
   A target above it raises :class:`~onnxprune.errors.UnreachableTargetError`.
3. Both depend on the analysis only (scores pick *which* units, not how many), so an
   architecture exported two ways should give the same numbers; the fixture tests
   check that property.
"""

from __future__ import annotations

__all__ = ["Capacity", "capacity"]

import dataclasses

import numpy as np

from onnxprune.analysis.groups import Analysis
from onnxprune.planning.cost import CostModel
from onnxprune.planning.planner import PlanOptions, reachable_maximum

METRICS = ("params", "flops")


@dataclasses.dataclass(frozen=True)
class Capacity:
    """Rule 1 and rule 2 values, per metric (``params``, ``flops``)."""

    prunable_share: dict[str, float]
    maximum: dict[str, float]

    def to_dict(self) -> dict:
        return {"prunable_share": self.prunable_share, "maximum": self.maximum}


def capacity(analysis: Analysis, options: PlanOptions | None = None,
             scores: np.ndarray | None = None, cost: CostModel | None = None) -> Capacity:
    """Rules 1-2 for ``analysis`` under ``options`` (default: compress's defaults)."""
    options = options or PlanOptions(0.5, round_to=None)
    cost = cost or CostModel(analysis)
    if scores is None:
        scores = np.ones(analysis.num_units)
    every = np.zeros(analysis.num_units, dtype=bool)
    for group in analysis.prunable_groups:
        every[group.units[~group.blocked]] = True
    return Capacity(
        {m: round(cost.reduction(every, m), 6) for m in METRICS},
        {m: round(reachable_maximum(analysis, dataclasses.replace(options, metric=m), scores), 6)
         for m in METRICS})
