"""Concat: joining tensors on the channel axis or beside it.

Cases:

1. Every tracked input carries its channels on the concat axis: the output layout is
   the inputs' layouts one after the other (untracked inputs of known size become fixed
   positions, id -1); an untracked input of unknown size blocks.
2. Every tracked input carries its channels on another axis: their layouts are merged
   (they must lose the same channels). An untracked input must be a constant carrying
   the channels (a parameter, or ``Expand`` of one: a ViT's class token), which is
   coupled; anything else blocks.
3. Tracked inputs on different axes, or an unknown rank, block.
"""

from __future__ import annotations

__all__ = ["ConcatRule"]

import numpy as np
import onnx_ir as ir

from onnxprune.analysis.context import AnalysisContext, describe
from onnxprune.analysis.registry import OpRule, register
from onnxprune.analysis.rules.common import attr_int, norm_axis, static_dim


@register("Concat")
class ConcatRule(OpRule):
    """Cases 1-3 of the module."""

    data_inputs = None

    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        layouts = [ctx.layout(v) for v in node.inputs]
        if not any(layouts):
            return
        rank = ctx.rank(node.outputs[0])
        if rank is None:
            ctx.block_inputs(node, f"{describe(node)}: rank unknown")
            return
        axis = norm_axis(attr_int(node, "axis", 0), rank)
        on_axis = {lay.axis == axis for lay in layouts if lay is not None}
        if on_axis == {True}:
            self._concat(node, ctx, layouts, axis)
        elif on_axis == {False}:
            self._merge(node, ctx, layouts)
        else:
            ctx.block_inputs(node, f"{describe(node)}: inputs carry channels on different axes")

    @staticmethod
    def _concat(node, ctx, layouts, axis) -> None:
        pieces = []
        for value, layout in zip(node.inputs, layouts):
            if layout is not None:
                pieces.append(layout.ids)
                continue
            size = static_dim(ctx, value, axis)
            if size is None:
                ctx.block_inputs(node, f"{describe(node)}: input '{value.name}' has an "
                                       "unknown size on the concat axis")
                return
            pieces.append(np.full(size, -1, dtype=np.int64))
        ctx.set_layout(node.outputs[0], axis, np.concatenate(pieces))

    @staticmethod
    def _merge(node, ctx, layouts) -> None:
        """Concat on another axis: tracked inputs are unioned; an untracked input may be a
        constant carrying the channels (a parameter, or ``Expand`` of one: the class
        token of a ViT), which is then coupled (:func:`_couple_constant_input`)."""
        tracked = [lay for lay in layouts if lay is not None]
        axes = {lay.axis for lay in tracked}
        if len(axes) != 1:
            ctx.block_inputs(node, f"{describe(node)}: joins tensors whose channels "
                                   "are not all tracked")
            return
        ref = tracked[0].ids
        for other in tracked[1:]:
            ctx.union(ref, other.ids, f"{describe(node)} merges channels")
        for index, (value, layout) in enumerate(zip(node.inputs, layouts)):
            if layout is None and not _couple_constant_input(node, index, value,
                                                             tracked[0].axis, ref, ctx):
                ctx.block_inputs(node, f"{describe(node)}: joins tensors whose channels "
                                       "are not all tracked")
                return
        ctx.set_layout(node.outputs[0], tracked[0].axis, ref)


def _couple_constant_input(node: ir.Node, index: int, value: ir.Value | None, axis: int,
                           ref: np.ndarray, ctx: AnalysisContext) -> bool:
    """Couple the channels of an untracked ``Concat`` input, when it is constant.

    Cases: a parameter whose ``axis`` has the channel count is coupled directly.
    ``Expand(parameter, shape)`` read only by this ``Concat`` couples the parameter
    (axes aligned from the right) when its dimension there has the channel count and
    the target shape does not pin it: a constant shape must hold 1 there; a shape
    computed at run time is accepted (exporters write ``expand(N, -1, -1)`` as
    ``[N, 1, 1]``), and one that pinned the width would make the rewritten model
    fail the ONNX Runtime check, not produce a wrong model. Anything else: False.
    """
    if value is None:
        return False
    width = len(ref)
    shape = ctx.shape(value)
    if ctx.is_param(value):
        if shape is not None and axis < len(shape) and shape[axis] == width:
            ctx.couple(node, index, axis, ref)
            return True
        return False
    producer = value.producer()
    if producer is None or producer.op_type != "Expand" or len(value.uses()) != 1 \
            or value.is_graph_output() or not ctx.is_param(producer.inputs[0]):
        return False
    param_shape = ctx.shape(producer.inputs[0])
    rank = ctx.rank(value)
    if param_shape is None or rank is None:
        return False
    local = axis - (rank - len(param_shape))
    if local < 0 or param_shape[local] != width:
        return False
    target = ctx.const(producer.inputs[1])
    if target is not None:
        position = axis - (rank - len(target))
        if position >= 0 and int(target[position]) != 1:
            return False
    ctx.couple(producer, 0, local, ref)
    return True

