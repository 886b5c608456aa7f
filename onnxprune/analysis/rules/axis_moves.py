"""Ops that move the channel axis without touching its channels.

Cases:

1. Transpose: the layout moves to where ``perm`` puts its axis (no ``perm``: the axes
   reversed).
2. Squeeze: the layout's axis shifts left by the squeezed axes before it. Squeezing the
   channel axis itself blocks; axes given by a run-time input block (which axis goes is
   unknown).
3. Unsqueeze: the layout's axis shifts right by the inserted axes before it; run-time
   axes or an unknown output rank block.
"""

from __future__ import annotations

__all__ = ["SqueezeRule", "TransposeRule", "UnsqueezeRule"]

import onnx_ir as ir

from onnxprune.analysis.context import AnalysisContext, describe
from onnxprune.analysis.registry import OpRule, register
from onnxprune.analysis.rules.common import (
    attr_ints,
    axes_arg,
    norm_axis,
    tracked_rank,
    tracked_shape,
)


@register("Transpose")
class TransposeRule(OpRule):
    """Case 1."""

    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        tracked = tracked_rank(ctx, node)
        if tracked is None:
            return
        layout, rank = tracked
        perm = attr_ints(node, "perm") or tuple(reversed(range(rank)))
        ctx.set_layout(node.outputs[0], list(perm).index(layout.axis), layout.ids)


@register("Squeeze")
class SqueezeRule(OpRule):
    """Case 2."""

    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        tracked = tracked_shape(ctx, node)
        if tracked is None:
            return
        layout, shape = tracked
        axes = axes_arg(ctx, node, 1, 13)
        if axes == "dynamic":
            ctx.block(layout.ids, f"{describe(node)}: axes are not constant")
            return
        if axes is None:
            axes = tuple(i for i, d in enumerate(shape) if d == 1)
        axes = {norm_axis(a, len(shape)) for a in axes}
        if layout.axis in axes:
            ctx.block(layout.ids, f"{describe(node)} squeezes the channel axis")
            return
        ctx.set_layout(node.outputs[0], layout.axis - sum(a < layout.axis for a in axes),
                       layout.ids)


@register("Unsqueeze")
class UnsqueezeRule(OpRule):
    """Case 3."""

    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        layout = ctx.layout(node.inputs[0])
        out_rank = ctx.rank(node.outputs[0])
        axes = axes_arg(ctx, node, 1, 13)
        if layout is None:
            return
        if out_rank is None or axes in (None, "dynamic"):
            ctx.block(layout.ids, f"{describe(node)}: axes or rank unknown")
            return
        inserted = {norm_axis(a, out_rank) for a in axes}
        kept_axes = [i for i in range(out_rank) if i not in inserted]
        ctx.set_layout(node.outputs[0], kept_axes[layout.axis], layout.ids)

