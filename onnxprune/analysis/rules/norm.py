"""Normalisation ops.

Cases:

1. BatchNormalization, InstanceNormalization: per-channel on axis 1; scale, bias
   (and BN's mean/var) are coupled to the layout, which passes through.
2. LayerNormalization normalises over axes ``[axis, rank)``: a layout on one of
   those axes is blocked (removing channels would change the statistics); a
   layout on an earlier axis passes through. With ``prune_hidden`` a layout on
   the last axis, when that is the only normalised axis, passes and slices the
   scale and bias: the pruned model normalises over the kept channels (the
   oracle's masked twin computes the same statistics).
3. GroupNormalization mixes channels within groups: blocked with the reason.
4. LpNormalization over the channel axis: blocked; over another axis: passes.
5. LayerNormalization/LpNormalization of an input whose rank is unknown: blocked
   (the normalised axes cannot be compared with the channel axis).
"""

from __future__ import annotations

__all__ = ["GroupNormRule", "LayerNormRule", "LpNormRule", "PerChannelNormRule"]

import onnx_ir as ir

from onnxprune.analysis.context import AnalysisContext, describe
from onnxprune.analysis.registry import OpRule, register
from onnxprune.analysis.rules.common import attr_int, channel_first_ok, norm_axis, tracked_rank


@register("BatchNormalization", "InstanceNormalization")
class PerChannelNormRule(OpRule):
    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        layout = ctx.layout(node.inputs[0])
        if not channel_first_ok(ctx, node, layout):
            return
        for index in range(1, len(node.inputs)):
            value = node.inputs[index]
            if value is None:
                continue
            if not ctx.is_param(value):
                ctx.block(layout.ids, f"{describe(node)}: input {index} is not a constant")
                return
            ctx.couple(node, index, 0, layout.ids, role="bn_scale" if index == 1 else "norm")
        ctx.pass_through(node)
        for extra in node.outputs[1:]:
            if extra.uses() or extra.is_graph_output():
                ctx.block(layout.ids, f"{describe(node)}: training-mode outputs are used")


@register("LayerNormalization", since=17)
class LayerNormRule(OpRule):
    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        tracked = tracked_rank(ctx, node)
        if tracked is None:
            return
        layout, rank = tracked
        axis = norm_axis(attr_int(node, "axis", -1), rank)
        if ctx.prune_hidden and axis == layout.axis == rank - 1:
            ctx.note_units(layout.ids, "hidden", 1)
            self._hidden(node, ctx, layout)
            return
        if layout.axis >= axis:
            ctx.block(layout.ids, f"{describe(node)} normalises over the channel axis; "
                                  "removing channels would change its statistics")
            return
        ctx.pass_through(node)

    @staticmethod
    def _hidden(node: ir.Node, ctx: AnalysisContext, layout) -> None:
        for index in (1, 2):
            value = node.inputs[index] if len(node.inputs) > index else None
            if value is None:
                continue
            shape = ctx.shape(value)
            if not ctx.is_param(value) or shape != (len(layout),):
                ctx.block(layout.ids, f"{describe(node)}: input {index} is not a constant "
                                      "vector over the normalised channels")
                return
            ctx.couple(node, index, 0, layout.ids, role="norm")
        if any(out.uses() or out.is_graph_output() for out in node.outputs[1:]):
            ctx.block(layout.ids, f"{describe(node)}: mean / inverse std outputs are used")
            return
        ctx.pass_through(node)


@register("GroupNormalization", since=18)
class GroupNormRule(OpRule):
    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        ctx.block_layout(node.inputs[0], f"{describe(node)} normalises over groups of "
                                         "channels; removing channels changes the statistics")


@register("LpNormalization")
class LpNormRule(OpRule):
    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        tracked = tracked_rank(ctx, node)
        if tracked is None:
            return
        layout, rank = tracked
        if layout.axis == norm_axis(attr_int(node, "axis", -1), rank):
            ctx.block(layout.ids, f"{describe(node)} normalises over the channel axis")
            return
        ctx.pass_through(node)
