"""Apply a plan to the model in place.

Passes, in order:

1. Slice every coupled initializer (``slicing``).
2. Let each node's rule patch what slicing does not cover: ``group`` of depthwise
   convs, Split sizes, Slice bounds, Reshape/Expand/Resize shape constants.
3. Drop initializers nothing reads any more, forget stale intermediate shapes and
   run shape inference again so value_info describes the new graph.
"""

from __future__ import annotations

__all__ = ["apply_plan"]

import logging

import numpy as np
from onnx_ir.passes.common import RemoveUnusedNodesPass

from onnxprune.analysis.groups import Analysis
from onnxprune.analysis.registry import lookup
from onnxprune.graph.shapes import infer_shapes
from onnxprune.rewrite.context import RewriteContext
from onnxprune.rewrite.slicing import slice_initializers

logger = logging.getLogger(__name__)


def apply_plan(analysis: Analysis, removed_units: np.ndarray) -> int:
    """Rewrite ``analysis.model``; return the number of sliced initializers."""
    ctx = RewriteContext(analysis, removed_units)
    changed = slice_initializers(ctx)
    graph = analysis.model.graph
    for node in list(graph):
        rule = lookup(node.domain, node.op_type, ctx.opset)
        if rule is not None:
            rule.patch(node, ctx)
    RemoveUnusedNodesPass()(analysis.model)
    _drop_unused_initializers(analysis)
    outputs = set(graph.outputs)
    for node in graph:
        for out in node.outputs:
            if out not in outputs:
                out.shape = None
    infer_shapes(analysis.model)
    logger.info("sliced %d initializers", changed)
    return changed


def _drop_unused_initializers(analysis: Analysis) -> None:
    graph = analysis.model.graph
    for name, value in list(graph.initializers.items()):
        if not value.uses() and not value.is_graph_output():
            del graph.initializers[name]
