"""Ops that cut the channel axis into parts: Split and Slice.

Cases:

1. On another axis than the channel axis the layout passes through unchanged.
2. Split on the channel axis: each output gets its part of the layout and must keep a
   channel; ``patch`` rewrites the sizes (``split`` attribute before opset 13, the
   sizes input from 13) to the kept counts. Unknown output sizes block.
3. Slice on the channel axis with constant starts/ends/axes and step 1: the output gets
   the sliced part (which must keep a channel); ``patch`` moves starts/ends to the kept
   positions. Strided slices over channels block.
4. Slice with constant ``axes`` that exclude the channel axis passes through even when
   its starts/ends are computed at run time (RoPE's ``rotate_half``).
5. Slice bounds computed from the tensor's own shape that behave like ``chunk(n)``
   (probed): every chunk keeps the same number of channels; no patch is needed.
   Other run-time bounds block.
"""

from __future__ import annotations

__all__ = ["SliceRule", "SplitRule"]

import numpy as np
import onnx_ir as ir

from onnxprune.analysis.context import AnalysisContext, Layout, describe
from onnxprune.analysis.registry import OpRule, register
from onnxprune.analysis.rules.common import (
    attr_int,
    const_ints,
    norm_axis,
    static_dim,
    tracked_rank,
)
from onnxprune.analysis.rules.shape_probe import probe_bounds


@register("Split")
class SplitRule(OpRule):
    """Cases 1-2 of the module."""

    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        tracked = tracked_rank(ctx, node)
        if tracked is None:
            return
        layout, rank = tracked
        axis = norm_axis(attr_int(node, "axis", 0), rank)
        if layout.axis != axis:
            for out in node.outputs:
                ctx.set_layout(out, layout.axis, layout.ids)
            return
        sizes = [static_dim(ctx, out, axis) for out in node.outputs]
        if any(s is None for s in sizes) or sum(sizes) != len(layout):
            ctx.block(layout.ids, f"{describe(node)}: split sizes unknown")
            return
        offsets = np.cumsum([0, *sizes])
        for out, start, stop in zip(node.outputs, offsets[:-1], offsets[1:]):
            ctx.set_layout(out, axis, layout.ids[start:stop])
            ctx.require_nonempty(layout.ids[start:stop])

    def patch(self, node, ctx) -> None:
        layout = ctx.layout(node.inputs[0])
        out_layout = ctx.layout(node.outputs[0])
        if layout is None or out_layout is None or not ctx.changed(node.inputs[0]):
            return
        if ctx.layout(node.outputs[0]).ids is layout.ids:
            return
        sizes = np.array([ctx.kept_count(out) for out in node.outputs], dtype=np.int64)
        if ctx.opset < 13:
            node.attributes["split"] = ir.AttrInt64s("split", [int(s) for s in sizes])
            return
        node.attributes.pop("num_outputs", None)
        if len(node.inputs) < 2:
            node.resize_inputs(2)
        ctx.set_const_input(node, 1, sizes)


@register("Slice", since=10)
class SliceRule(OpRule):
    """Cases 1 and 3-5 of the module."""

    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        tracked = tracked_rank(ctx, node)
        if tracked is None:
            return
        layout, rank = tracked
        spec = _slice_spec(ctx, node, rank)
        if isinstance(spec, str) and _slices_other_axes(ctx, node, rank, layout.axis):
            ctx.pass_through(node)
            return
        if isinstance(spec, str):
            if not _runtime_chunk(node, ctx, layout, rank):
                ctx.block(layout.ids, f"{describe(node)}: {spec}")
            return
        if layout.axis not in spec:
            ctx.pass_through(node)
            return
        start, stop, step = spec[layout.axis]
        if step != 1:
            ctx.block(layout.ids, f"{describe(node)}: strided slice over channels")
            return
        begin, end, _ = slice(start, stop, step).indices(len(layout))
        node.meta["onnxprune.slice"] = (begin, end)
        ctx.set_layout(node.outputs[0], layout.axis, layout.ids[begin:max(begin, end)])
        ctx.require_nonempty(layout.ids[begin:max(begin, end)])

    def patch(self, node, ctx) -> None:
        layout = ctx.layout(node.inputs[0])
        if "onnxprune.slice" not in node.meta or not ctx.changed(node.inputs[0]):
            return
        begin, end = node.meta["onnxprune.slice"]
        keep = ctx.keep_mask(node.inputs[0])
        axes = const_ints(ctx, node, 3) or tuple(range(len(const_ints(ctx, node, 1))))
        rank = len(ctx.shape(node.inputs[0]))
        position = [norm_axis(a, rank) for a in axes].index(layout.axis)
        for index, new in ((1, int(keep[:begin].sum())), (2, int(keep[:end].sum()))):
            values = np.array(ctx.const_input(node, index), dtype=np.int64).copy()
            values[position] = new
            ctx.set_const_input(node, index, values)


def _slices_other_axes(ctx: AnalysisContext, node: ir.Node, rank: int, axis: int) -> bool:
    """Constant ``axes`` that leave the channel axis alone (bounds may be dynamic)."""
    if len(node.inputs) <= 3 or node.inputs[3] is None:
        return False
    axes = const_ints(ctx, node, 3)
    return axes is not None and axis not in {norm_axis(a, rank) for a in axes}


def _runtime_chunk(node: ir.Node, ctx: AnalysisContext, layout: Layout, rank: int) -> bool:
    """Slice bounds computed from the tensor's own shape that behave like ``chunk(n)``.

    The bounds are probed (``shape_probe``) at the real channel count ``C`` and at
    other multiples of ``n``; if slice ``i`` is always ``[i*C/n, (i+1)*C/n)`` on the
    channel axis, the output gets that part of the layout and every chunk must keep
    the same number of channels (equal-blocks constraint). The bounds need no patch.
    """
    if len(node.inputs) > 4 and node.inputs[4] is not None:
        return False
    axes = const_ints(ctx, node, 3) if len(node.inputs) > 3 and node.inputs[3] else None
    if axes is None or [norm_axis(a, rank) for a in axes] != [layout.axis]:
        return False
    size = len(layout)
    probes = probe_bounds([node.inputs[1], node.inputs[2]], node.inputs[0],
                          ctx.shape(node.inputs[0]), layout.axis, [size, 2 * size, 4 * size],
                          ctx.opset)
    if probes is None:
        return False
    start, stop = (int(np.ravel(v)[0]) for v in probes[0])
    start, stop, _ = slice(start, stop).indices(size)
    width = stop - start
    if width <= 0 or size % width or start % width:
        return False
    parts, index = size // width, start // width
    for scale, (lo, hi) in zip((2, 4), probes[1:]):
        lo, hi, _ = slice(int(np.ravel(lo)[0]), int(np.ravel(hi)[0])).indices(size * scale)
        if (lo, hi) != (index * width * scale, (index + 1) * width * scale):
            return False
    ctx.equal_blocks(layout.ids, parts, f"{describe(node)} splits channels into {parts} "
                                        "equal chunks at run time")
    ctx.set_layout(node.outputs[0], layout.axis, layout.ids[start:stop])
    ctx.require_nonempty(layout.ids[start:stop])
    return True


def _slice_spec(ctx: AnalysisContext, node: ir.Node, rank: int) -> dict | str:
    starts, ends = const_ints(ctx, node, 1), const_ints(ctx, node, 2)
    if starts is None or ends is None:
        return "starts/ends are not constant"
    axes = const_ints(ctx, node, 3) if len(node.inputs) > 3 and node.inputs[3] else None
    steps = const_ints(ctx, node, 4) if len(node.inputs) > 4 and node.inputs[4] else None
    if (len(node.inputs) > 3 and node.inputs[3] is not None and axes is None) or (
        len(node.inputs) > 4 and node.inputs[4] is not None and steps is None
    ):
        return "axes/steps are not constant"
    axes = axes or tuple(range(len(starts)))
    steps = steps or (1,) * len(starts)
    return {norm_axis(a, rank): (s, e, st) for a, s, e, st in zip(axes, starts, ends, steps)}

