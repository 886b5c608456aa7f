"""Slice coupled initializers to the kept channels.

Rules:

1. Every coupling of an initializer to a layout keeps the positions whose units
   survive, along the coupled axis.
2. A grouped coupling (per-group input axis of a grouped conv) is sliced block by
   block: row block ``k`` of axis 0 keeps the kept positions of its group.
   Grouped couplings are applied before plain ones on the same tensor.
3. An initializer read by several nodes is copied for each node that slices it,
   so no other reader sees a changed tensor.
"""

from __future__ import annotations

__all__ = ["slice_initializers"]

import numpy as np
import onnx_ir as ir

from onnxprune.analysis.context import Coupling
from onnxprune.graph.tensors import release
from onnxprune.rewrite.context import RewriteContext


def _slice(array: np.ndarray, coupling: Coupling, keep: np.ndarray) -> np.ndarray:
    if coupling.groups == 1:
        return np.take(array, np.flatnonzero(keep), axis=coupling.axis)
    rows = np.split(array, coupling.groups, axis=0)
    keeps = np.split(keep, coupling.groups)
    return np.concatenate(
        [np.take(r, np.flatnonzero(k), axis=coupling.axis) for r, k in zip(rows, keeps)], axis=0
    )


def slice_initializers(ctx: RewriteContext) -> int:
    """Apply rules 1-3; return how many tensors changed."""
    by_target: dict[tuple[int, int], list[Coupling]] = {}
    nodes: dict[int, ir.Node] = {}
    for coupling in ctx.analysis.ctx.couplings:
        key = (id(coupling.node), coupling.input_index)
        by_target.setdefault(key, []).append(coupling)
        nodes[id(coupling.node)] = coupling.node
    changed = 0
    for (node_id, index), couplings in by_target.items():
        keeps = [ctx.keep_ids(c.ids) for c in couplings]
        if all(k.all() for k in keeps):
            continue
        node = nodes[node_id]
        source = node.inputs[index]
        array = source.const_value.numpy()
        ordered = sorted(zip(couplings, keeps), key=lambda ck: ck[0].groups == 1)
        for coupling, keep in ordered:
            array = _slice(array, coupling, keep)
        ctx.set_const_input(node, index, np.ascontiguousarray(array))
        del array
        release(source)
        changed += 1
    return changed
