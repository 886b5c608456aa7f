"""Gather: indexing along an axis, and embedding lookups.

Cases:

1. Gather on another axis than the channel axis passes the layout through, moved by the
   indices' rank (``axis`` replaced by the indices' axes).
2. Gather on the channel axis (or with indices of unknown rank) blocks.
3. A lookup in a 2-D initializer table on axis 0 (an embedding) is a source whose
   channels are the table's columns, when it feeds no residual stream
   (``residual.feeds_residual_stream``: Embedding -> LSTM, GRU or Conv1d); one that
   feeds a residual stream is the hidden width, a source only with ``prune_hidden``.
"""

from __future__ import annotations

__all__ = ["GatherRule"]

import onnx_ir as ir

from onnxprune.analysis.context import AnalysisContext, describe
from onnxprune.analysis.registry import OpRule, register
from onnxprune.analysis.rules.common import attr_int, norm_axis
from onnxprune.analysis.rules.residual import feeds_residual_stream


@register("Gather")
class GatherRule(OpRule):
    """Gather on another axis passes the layout (moved by the indices' rank); on the
    channel axis it blocks. A lookup in a 2-D initializer table on axis 0 (an
    embedding) is a source, its output features being the table's columns, when it
    feeds no residual stream (``residual.feeds_residual_stream``: Embedding -> LSTM,
    GRU or Conv1d); one that does is the hidden width, a source only with
    ``prune_hidden``."""

    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        layout = ctx.layout(node.inputs[0])
        rank = ctx.rank(node.inputs[0])
        if layout is None:
            self._embedding(node, ctx)
            return
        if rank is None:
            return
        axis = norm_axis(attr_int(node, "axis", 0), rank)
        index_rank = ctx.rank(node.inputs[1])
        if layout.axis == axis or index_rank is None:
            ctx.block(layout.ids, f"{describe(node)} gathers along the channel axis")
            return
        new_axis = layout.axis if layout.axis < axis else layout.axis + index_rank - 1
        ctx.set_layout(node.outputs[0], new_axis, layout.ids)

    @staticmethod
    def _embedding(node: ir.Node, ctx: AnalysisContext) -> None:
        table = node.inputs[0]
        out_rank = ctx.rank(node.outputs[0])
        if not ctx.is_param(table) or out_rank is None:
            return
        if len(table.const_value.shape) != 2 or attr_int(node, "axis", 0) != 0:
            return
        residual = feeds_residual_stream(node.outputs[0])
        if residual and not ctx.prune_hidden:
            return
        width = int(table.const_value.shape[1])
        kind = "embedding" if residual else "embedding table"
        ids = ctx.new_source(node, node.outputs[0], out_rank - 1, width, kind)
        ctx.couple(node, 0, 1, ids, role="out")
