"""Pooling, reductions and softmax.

Cases:

1. Max/Average/Lp pooling and their Global forms work per channel on axis 1:
   the layout passes through (MaxPool's Indices output, when used, blocks).
2. Reduce* ops: a layout on a reduced axis is blocked (the result would depend
   on the removed channels); otherwise it passes through, moved when
   ``keepdims=0`` drops earlier axes. With ``prune_hidden``, ReduceMean over the
   channel axis (decomposed LayerNorm / RMSNorm) averages the kept channels; the
   result carries no layout.
3. Softmax/LogSoftmax/Hardmax: a layout on the normalised axis (or, before
   opset 13, on any axis from ``axis`` on) is blocked; otherwise it passes.
4. Shape/Size read only the shape: nothing is blocked, nothing propagates.
5. A Reduce* or Softmax-family input whose rank is unknown: blocked (the reduced or
   normalised axes cannot be compared with the channel axis).
"""

from __future__ import annotations

__all__ = ["PoolRule", "ReduceRule", "ShapeReaderRule", "SoftmaxRule"]

import onnx_ir as ir

from onnxprune.analysis.context import AnalysisContext, describe
from onnxprune.analysis.registry import OpRule, register
from onnxprune.analysis.rules.common import (
    attr_int,
    axes_arg,
    channel_first_ok,
    norm_axis,
    tracked_rank,
)


@register("MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool",
          "GlobalLpPool", "MaxRoiPool", "SpaceToDepth")
class PoolRule(OpRule):
    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        layout = ctx.layout(node.inputs[0])
        if node.op_type == "SpaceToDepth":
            ctx.block_layout(node.inputs[0], f"{describe(node)} interleaves channels")
            return
        if not channel_first_ok(ctx, node, layout):
            return
        if len(node.outputs) > 1 and (node.outputs[1].uses() or node.outputs[1].is_graph_output()):
            ctx.block(layout.ids, f"{describe(node)}: Indices output is used")
            return
        ctx.pass_through(node)


# op -> opset from which ``axes`` is an input instead of an attribute
_REDUCE_AXES_INPUT_SINCE = {
    "ReduceSum": 13, "ReduceMean": 18, "ReduceMax": 18, "ReduceMin": 18, "ReduceProd": 18,
    "ReduceL1": 18, "ReduceL2": 18, "ReduceLogSum": 18, "ReduceLogSumExp": 18,
    "ReduceSumSquare": 18,
}


@register(*_REDUCE_AXES_INPUT_SINCE)
class ReduceRule(OpRule):
    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        tracked = tracked_rank(ctx, node)
        if tracked is None:
            return
        layout, rank = tracked
        axes = axes_arg(ctx, node, 1, _REDUCE_AXES_INPUT_SINCE[node.op_type])
        if axes == "dynamic":
            ctx.block(layout.ids, f"{describe(node)}: reduction axes are not constant")
            return
        if axes is None or len(axes) == 0:
            if attr_int(node, "noop_with_empty_axes", 0):
                ctx.pass_through(node)
                return
            axes = tuple(range(rank))
        axes = {norm_axis(a, rank) for a in axes}
        if layout.axis in axes and ctx.prune_hidden and node.op_type == "ReduceMean":
            ctx.note_units(layout.ids, "hidden", 1)
            return
        if layout.axis in axes:
            ctx.block(layout.ids, f"{describe(node)} reduces over the channel axis")
            return
        keep = attr_int(node, "keepdims", 1)
        axis = layout.axis if keep else layout.axis - sum(1 for a in axes if a < layout.axis)
        ctx.set_layout(node.outputs[0], axis, layout.ids)


@register("Softmax", "LogSoftmax", "Hardmax")
class SoftmaxRule(OpRule):
    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        tracked = tracked_rank(ctx, node)
        if tracked is None:
            return
        layout, rank = tracked
        default = -1 if ctx.opset >= 13 else 1
        axis = norm_axis(attr_int(node, "axis", default), rank)
        hit = layout.axis == axis if ctx.opset >= 13 else layout.axis >= axis
        if hit:
            ctx.block(layout.ids, f"{describe(node)} normalises over the channel axis")
            return
        ctx.pass_through(node)


@register("Shape", "Size")
class ShapeReaderRule(OpRule):
    data_inputs = None

    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        """Reads only the (new) shape at run time: nothing to do."""
