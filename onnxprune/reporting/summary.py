"""Plain-data rows describing groups and layers, shared by the CLI and the API.

``group_rows`` lists every group: its members, channel count, the share of the
model's params and MACs that removing the whole group would take away, and
whether it is prunable or why not. ``layer_rows`` lists channels per source layer
before and after a plan.
"""

from __future__ import annotations

__all__ = ["group_rows", "layer_rows"]

import numpy as np

from onnxprune.analysis.groups import Analysis
from onnxprune.planning.cost import CostModel


def group_rows(analysis: Analysis, cost: CostModel) -> list[dict]:
    rows = []
    for group in analysis.groups:
        removed = np.zeros(analysis.num_units, dtype=bool)
        removed[group.units] = True
        rows.append({
            "index": group.index,
            "name": group.name,
            "description": group.description,
            "unit_size": group.unit_size,
            "channels": group.size,
            "prunable_channels": int((~group.blocked).sum()),
            "prunable": group.prunable,
            "params_share": round(cost.reduction(removed, "params"), 6),
            "macs_share": round(cost.reduction(removed, "flops"), 6),
            "sources": [f"{s.node} ({s.kind})" for s in group.sources],
            "members": group.members,
            "reasons": group.reasons,
            "grouped_conv_blocks": max((len(c) for c in group.constraints), default=0),
        })
    return rows


def layer_rows(analysis: Analysis, removed_units: np.ndarray) -> list[dict]:
    removed = analysis.removed_elements(removed_units)
    rows = []
    for source in analysis.ctx.sources:
        ids = np.arange(source.start, source.start + source.size)
        rows.append({
            "layer": source.node,
            "kind": source.kind,
            "before": source.size,
            "after": int((~removed[ids]).sum()),
        })
    return rows
