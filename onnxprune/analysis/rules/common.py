"""Helpers shared by rules: attribute and constant-input access, axis arithmetic."""

from __future__ import annotations

__all__ = ["attr_int", "attr_ints", "axes_arg", "channel_first_ok", "const_ints", "norm_axis",
           "tracked_rank", "tracked_shape",
           "static_dim"]

import numpy as np
import onnx_ir as ir

from onnxprune.analysis.context import AnalysisContext, Layout, describe


def attr_int(node: ir.Node, name: str, default: int) -> int:
    return int(node.attributes.get_int(name, default))


def attr_ints(node: ir.Node, name: str) -> tuple[int, ...] | None:
    attr = node.attributes.get(name)
    return None if attr is None else tuple(int(v) for v in attr.value)


def const_ints(ctx: AnalysisContext, node: ir.Node, index: int) -> tuple[int, ...] | None:
    """Integer constant at input ``index``; ``None`` when absent or not constant."""
    if index >= len(node.inputs) or node.inputs[index] is None:
        return None
    array = ctx.const(node.inputs[index])
    return None if array is None else tuple(int(v) for v in np.ravel(array))


def norm_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def axes_arg(ctx: AnalysisContext, node: ir.Node, input_index: int,
             attr_since: int) -> tuple[int, ...] | str | None:
    """Axes given as attribute (opset < ``attr_since``) or as constant input.

    Returns the axes, ``None`` when not given, or ``"dynamic"`` when given by a
    non-constant input.
    """
    if ctx.opset < attr_since:
        return attr_ints(node, "axes")
    if input_index >= len(node.inputs) or node.inputs[input_index] is None:
        return None
    axes = const_ints(ctx, node, input_index)
    return "dynamic" if axes is None else axes


def channel_first_ok(ctx: AnalysisContext, node: ir.Node, layout: Layout | None) -> bool:
    """NCHW ops read channels on axis 1; a layout elsewhere is blocked, returning False."""
    if layout is None:
        return False
    if layout.axis != 1:
        ctx.block(layout.ids, f"{describe(node)} reads channels on axis 1, "
                              f"but the pruned axis is {layout.axis}")
        return False
    return True


def static_dim(ctx: AnalysisContext, value: ir.Value | None, axis: int) -> int | None:
    """The static size of ``value`` on ``axis``; ``None`` when unknown."""
    shape = ctx.shape(value)
    return None if shape is None or axis >= len(shape) else shape[axis]


def tracked_rank(ctx: AnalysisContext, node: ir.Node,
                 index: int = 0) -> tuple[Layout, int] | None:
    """The layout and rank of input ``index`` when it carries channels; ``None`` when it
    carries none, or (after blocking them: "input rank unknown") when its rank is not
    known, so a rule never drops tracked channels silently."""
    return _tracked(ctx, node, index, ctx.rank, "rank")


def tracked_shape(ctx: AnalysisContext, node: ir.Node,
                  index: int = 0) -> tuple[Layout, tuple[int | None, ...]] | None:
    """:func:`tracked_rank` for rules that need the input's shape ("input shape
    unknown")."""
    return _tracked(ctx, node, index, ctx.shape, "shape")


def _tracked(ctx: AnalysisContext, node: ir.Node, index: int, read, what: str):
    value = node.inputs[index]
    layout = ctx.layout(value)
    if layout is None:
        return None
    known = read(value)
    if known is None:
        ctx.block(layout.ids, f"{describe(node)}: input {what} unknown")
        return None
    return layout, known
