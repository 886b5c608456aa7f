"""Planning: which units to remove for a target, metric and scope."""

from __future__ import annotations

from onnxprune.planning.cost import Cost, CostModel
from onnxprune.planning.planner import Plan, PlanOptions, make_plan

__all__ = ["Cost", "CostModel", "Plan", "PlanOptions", "make_plan"]
