"""Ops that grow or repeat axes: Pad, Resize/Upsample, Expand, Tile.

Cases:

1. Pad passes the layout through when its constant pads leave the channel axis alone;
   padding the channel axis or run-time pads block.
2. Resize/Upsample passes the layout through when the constant scale of the channel axis
   is 1 or its constant size is the channel count (the size is patched to the kept
   count); anything else blocks.
3. Expand passes the layout through (moved by the rank it adds) when the target entry on
   the channel axis is 1, -1, the channel count or computed at run time; a target built
   by Concat may mix run-time and constant entries (the ``repeat_kv`` of grouped-query
   attention), and its constant channel-count entry is patched to the kept count.
4. Tile with constant repeats repeats the layout's ids ``r`` times on the channel axis
   (key/value heads tiled for grouped-query attention); the repeats need no patch.
"""

from __future__ import annotations

__all__ = ["ExpandRule", "PadRule", "ResizeRule", "TileRule"]

import numpy as np
import onnx_ir as ir

from onnxprune.analysis.context import AnalysisContext, describe
from onnxprune.analysis.registry import OpRule, register
from onnxprune.analysis.rules.common import const_ints, norm_axis, tracked_rank
from onnxprune.analysis.rules.shape_tensors import (
    constant_entry,
    locate_shape_entry,
    patch_shape_entry,
)


@register("Pad", since=11)
class PadRule(OpRule):
    """Case 1 of the module."""

    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        tracked = tracked_rank(ctx, node)
        if tracked is None:
            return
        layout, rank = tracked
        pads = const_ints(ctx, node, 1)
        axes = const_ints(ctx, node, 3) if len(node.inputs) > 3 and node.inputs[3] else None
        if pads is None:
            ctx.block(layout.ids, f"{describe(node)}: pads are not constant")
            return
        axes = [norm_axis(a, rank) for a in axes] if axes else list(range(rank))
        if layout.axis in axes:
            i = axes.index(layout.axis)
            if pads[i] or pads[i + len(axes)]:
                ctx.block(layout.ids, f"{describe(node)} pads the channel axis")
                return
        ctx.pass_through(node)


@register("Resize", "Upsample")
class ResizeRule(OpRule):
    """Case 2 of the module."""

    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        layout = ctx.layout(node.inputs[0])
        if layout is None:
            return
        sizes = const_ints(ctx, node, 3) if len(node.inputs) > 3 and node.inputs[3] else None
        scale_index = 1 if node.op_type == "Upsample" else 2
        value = node.inputs[scale_index] if len(node.inputs) > scale_index else None
        scales = ctx.const(value) if value is not None else None
        if sizes is not None:
            ok = layout.axis < len(sizes) and sizes[layout.axis] == len(layout)
        elif scales is not None and np.size(scales):
            ok = float(np.ravel(scales)[layout.axis]) == 1.0
        else:
            ok = False
        if not ok:
            ctx.block(layout.ids, f"{describe(node)} resizes the channel axis or its "
                                  "scales/sizes are not constant")
            return
        ctx.pass_through(node)

    def patch(self, node, ctx) -> None:
        layout = ctx.layout(node.inputs[0])
        if layout is None or not ctx.changed(node.inputs[0]) or len(node.inputs) < 4:
            return
        if node.inputs[3] is None or node.inputs[3].const_value is None:
            return
        sizes = np.array(ctx.const_input(node, 3), dtype=np.int64).copy()
        if sizes.size:
            sizes[layout.axis] = ctx.kept_count(node.inputs[0])
            ctx.set_const_input(node, 3, sizes)


@register("Expand")
class ExpandRule(OpRule):
    """The target entry on the channel axis must be 1 or the channel count; a
    target built by Concat may mix run-time and constant entries (the constant
    channel-count entry is patched to the kept count)."""

    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        layout = ctx.layout(node.inputs[0])
        rank, out_rank = ctx.rank(node.inputs[0]), ctx.rank(node.outputs[0])
        if layout is None:
            return
        target_shape = ctx.shape(node.inputs[1])
        if rank is None or out_rank is None or not target_shape or target_shape[0] is None:
            ctx.block(layout.ids, f"{describe(node)}: target shape or ranks unknown")
            return
        axis = layout.axis + out_rank - rank
        local = axis - (out_rank - target_shape[0])
        if local >= 0:
            entry = constant_entry(node.inputs[1], local)
            where = locate_shape_entry(node.inputs[1], local)
            if isinstance(where, str) and where != "dynamic":
                ctx.block(layout.ids, f"{describe(node)}: target shape {where}")
                return
            if entry is not None and entry not in (1, -1, len(layout)):
                ctx.block(layout.ids, f"{describe(node)} expands the channel axis")
                return
        ctx.set_layout(node.outputs[0], axis, layout.ids)

    def patch(self, node, ctx) -> None:
        layout = ctx.layout(node.outputs[0])
        if layout is None or not ctx.changed(node.outputs[0]):
            return
        length = ctx.shape(node.inputs[1])[0]
        local = layout.axis - (ctx.rank(node.outputs[0]) - length)
        if local >= 0:
            patch_shape_entry(ctx, node, 1, local, ctx.kept_count(node.outputs[0]),
                              only_if=len(layout))


@register("Tile")
class TileRule(OpRule):
    """Constant repeats: the layout's ids repeat ``r`` times on the channel axis (e.g.
    key/value heads tiled for grouped-query attention); the repeats need no patch."""

    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        layout = ctx.layout(node.inputs[0])
        if layout is None:
            return
        repeats = const_ints(ctx, node, 1)
        if repeats is None or layout.axis >= len(repeats) or repeats[layout.axis] < 1:
            ctx.block(layout.ids, f"{describe(node)}: repeats are not constant")
            return
        ctx.set_layout(node.outputs[0], layout.axis, np.tile(layout.ids, repeats[layout.axis]))

