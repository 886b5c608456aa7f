"""Which channels a non-modelled node's time follows (the latency model's node part).

Rules:

1. A *node* here is every node of the model that is not a Conv/Gemm/MatMul (those are
   the modelled layers, :mod:`onnxprune.planning.latency_model`) and has a named first
   output; that name is its key (the rewrite keeps it, so a step model's node matches
   the original's).
2. A node's *tracked tensors* are its inputs and outputs whose layout (the analysis'
   channel ids along one axis) holds channels of a prunable group. The node is
   attributed to one tracked tensor, its *carrier*, and its time is taken as
   proportional to the kept fraction of the carrier's channel axis (all groups on that
   axis together, e.g. a Concat's output):

   1. no tracked tensor (shape arithmetic, the stem before any prunable group, a head
      after the last one): not attributed, its time is fixed;
   2. one tracked tensor whose groups contain every other tracked tensor's groups (an
      SE block's GlobalAveragePool, Mul and Sigmoid, an activation, a BatchNormalization,
      a residual Add, a Concat's output, a Resize): that tensor, outputs before inputs;
   3. tracked tensors with groups none of which contains the others' (channels of
      several groups mixed in a way one axis does not describe): not attributed, fixed.
3. ``width`` is the carrier's full channel count in the model the analysis was built
   on; the kept fraction is ``kept channels / width``.
"""

from __future__ import annotations

__all__ = ["MODELLED_OPS", "NodeSpec", "carrier", "kept_fraction", "node_specs"]

import dataclasses

import numpy as np
import onnx_ir as ir

MODELLED_OPS = ("Conv", "Gemm", "MatMul")


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    """A node's carrier (rule 2): ``value``'s ``axis`` of ``width`` channels."""

    name: str
    value: ir.Value
    axis: int
    width: int


def _tracked(analysis, value: ir.Value | None, prunable: set[int]
             ) -> tuple[ir.Value, int, frozenset[int], int] | None:
    layout = analysis.ctx.layout(value)
    if layout is None:
        return None
    ids = layout.ids[layout.ids >= 0]
    groups = {int(g) for g in analysis.unit_group[analysis.element_unit[ids]]} & prunable
    if not groups:
        return None
    return value, int(layout.axis), frozenset(groups), len(layout.ids)


def carrier(analysis, node: ir.Node, prunable: set[int]) -> NodeSpec | None:
    """Rule 2 for one node; ``prunable`` holds the prunable groups' indices."""
    tracked = [t for t in (_tracked(analysis, v, prunable)
                           for v in (*node.outputs, *node.inputs)) if t is not None]
    if not tracked:
        return None  # rule 2.1
    union = frozenset().union(*(t[2] for t in tracked))
    for value, axis, groups, width in tracked:
        if groups == union:  # rule 2.2
            return NodeSpec(node.outputs[0].name, value, axis, width)
    return None  # rule 2.3


def node_specs(analysis) -> dict[str, NodeSpec | None]:
    """Every node of rule 1 by key, with its carrier or ``None`` (fixed time)."""
    prunable = {g.index for g in analysis.prunable_groups}
    specs: dict[str, NodeSpec | None] = {}
    for node in analysis.model.graph:
        if node.op_type in MODELLED_OPS or not node.outputs or not node.outputs[0].name:
            continue
        specs[node.outputs[0].name] = carrier(analysis, node, prunable)
    return specs


def kept_fraction(kept: int, width: int) -> float:
    """Rule 3, clipped to [0, 1]."""
    return float(np.clip(kept / width, 0.0, 1.0)) if width > 0 else 1.0
