"""Ops that move, merge, cut or join axes.

Cases:

1. Transpose moves the layout's axis; Squeeze/Unsqueeze shift it (squeezing the
   channel axis itself blocks).
2. Flatten/Reshape merging the channel axis with neighbours: each channel becomes
   a block of positions (Flatten->Linear); the Reshape target is patched when it
   is a constant or a constant piece of a Concat. Splitting the channel axis
   (e.g. into heads) is blocked here.
3. Concat on the channel axis concatenates layouts (untracked inputs become
   fixed positions); on another axis the inputs' layouts are merged.
4. Split/Slice on the channel axis cut the layout; their sizes/starts/ends are
   patched. On other axes the layout passes through.
5. Pad, Resize/Upsample, Tile, Expand pass the layout through when they leave the
   channel axis alone; otherwise they block it (Resize/Expand sizes are patched).
6. Gather on another axis passes the layout through (moved by the indices' rank);
   on the channel axis it blocks.
"""

from __future__ import annotations

__all__ = [
    "ConcatRule",
    "ExpandRule",
    "FlattenRule",
    "GatherRule",
    "PadRule",
    "ReshapeRule",
    "ResizeRule",
    "SliceRule",
    "SplitRule",
    "SqueezeRule",
    "TileRule",
    "TransposeRule",
    "UnsqueezeRule",
    "locate_shape_entry",
]

import numpy as np
import onnx_ir as ir

from onnxprune.analysis.context import AnalysisContext, describe
from onnxprune.analysis.registry import OpRule, register
from onnxprune.analysis.rules.common import attr_int, attr_ints, axes_arg, const_ints, norm_axis
from onnxprune.analysis.rules.reshape_math import MergeMap, merge_map, merged_ids
from onnxprune.analysis.rules.shape_probe import probe_bounds


@register("Transpose")
class TransposeRule(OpRule):
    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        layout = ctx.layout(node.inputs[0])
        rank = ctx.rank(node.inputs[0])
        if layout is None or rank is None:
            return
        perm = attr_ints(node, "perm") or tuple(reversed(range(rank)))
        ctx.set_layout(node.outputs[0], list(perm).index(layout.axis), layout.ids)


@register("Squeeze")
class SqueezeRule(OpRule):
    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        layout = ctx.layout(node.inputs[0])
        shape = ctx.shape(node.inputs[0])
        if layout is None or shape is None:
            return
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


def _apply_merge(node: ir.Node, ctx: AnalysisContext, mapping: MergeMap | str) -> bool:
    layout = ctx.layout(node.inputs[0])
    if isinstance(mapping, str):
        ctx.block(layout.ids, f"{describe(node)} {mapping}")
        return False
    ctx.set_layout(node.outputs[0], mapping.out_axis, merged_ids(layout.ids, mapping))
    return True


@register("Flatten")
class FlattenRule(OpRule):
    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        layout = ctx.layout(node.inputs[0])
        shape = ctx.shape(node.inputs[0])
        if layout is None or shape is None:
            return
        axis = norm_axis(attr_int(node, "axis", 1), len(shape))
        if layout.axis < axis:
            ctx.block(layout.ids, f"{describe(node)} merges the channel axis into the rows")
            return
        _apply_merge(node, ctx, merge_map(shape, (_product(shape[:axis]), _product(shape[axis:])),
                                          layout.axis))


def _product(dims: tuple[int | None, ...]) -> int | None:
    return None if any(d is None for d in dims) else int(np.prod(dims, dtype=np.int64))


def locate_shape_entry(shape_value: ir.Value, index: int) -> tuple[ir.Node | None, int, int] | str:
    """Where entry ``index`` of a 1-D shape tensor comes from.

    Returns ``(consumer, input_index, position)``: the constant that holds the
    entry is input ``input_index`` of ``consumer`` (``None`` consumer: the value
    itself is a constant) at ``position``; ``"dynamic"`` when it is computed at run
    time; a reason string when it cannot be followed.
    """
    if shape_value.const_value is not None:
        return (None, -1, index)
    producer = shape_value.producer()
    if producer is None or producer.op_type != "Concat":
        return "dynamic" if producer is not None else "shape input is a graph input"
    offset = 0
    for input_index, piece in enumerate(producer.inputs):
        length = piece.shape[0] if piece is not None and piece.shape is not None else None
        if not isinstance(length, int):
            return "shape pieces of unknown length"
        if offset <= index < offset + length:
            if piece.const_value is not None:
                return (producer, input_index, index - offset)
            return "dynamic"
        offset += length
    return "shape entry out of range"


@register("Reshape")
class ReshapeRule(OpRule):
    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        layout = ctx.layout(node.inputs[0])
        shape, out_shape = ctx.shape(node.inputs[0]), ctx.shape(node.outputs[0])
        if layout is None:
            return
        if shape is None or out_shape is None:
            ctx.block(layout.ids, f"{describe(node)}: shapes unknown")
            return
        mapping = merge_map(shape, out_shape, layout.axis)
        if isinstance(mapping, MergeMap):
            where = locate_shape_entry(node.inputs[1], mapping.out_axis)
            if isinstance(where, str) and where != "dynamic":
                ctx.block(layout.ids, f"{describe(node)}: target shape {where}")
                return
        _apply_merge(node, ctx, mapping)

    def patch(self, node, ctx) -> None:
        layout = ctx.layout(node.outputs[0])
        if layout is None or not ctx.changed(node.outputs[0]):
            return
        where = locate_shape_entry(node.inputs[1], layout.axis)
        if isinstance(where, str):
            return
        consumer, input_index, position = where
        owner = consumer or node
        index = input_index if consumer else 1
        target = ctx.const_input(owner, index).copy()
        if target[position] > 0:
            target[position] = ctx.kept_count(node.outputs[0])
            ctx.set_const_input(owner, index, target)


def _static_dim(ctx: AnalysisContext, value: ir.Value | None, axis: int) -> int | None:
    shape = ctx.shape(value)
    return None if shape is None or axis >= len(shape) else shape[axis]


@register("Concat")
class ConcatRule(OpRule):
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
            size = _static_dim(ctx, value, axis)
            if size is None:
                ctx.block_inputs(node, f"{describe(node)}: input '{value.name}' has an "
                                       "unknown size on the concat axis")
                return
            pieces.append(np.full(size, -1, dtype=np.int64))
        ctx.set_layout(node.outputs[0], axis, np.concatenate(pieces))

    @staticmethod
    def _merge(node, ctx, layouts) -> None:
        tracked = [lay for lay in layouts if lay is not None]
        axes = {lay.axis for lay in tracked}
        if len(axes) != 1 or len(tracked) != len(layouts):
            ctx.block_inputs(node, f"{describe(node)}: joins tensors whose channels "
                                   "are not all tracked")
            return
        for other in tracked[1:]:
            ctx.union(tracked[0].ids, other.ids, f"{describe(node)} merges channels")
        ctx.set_layout(node.outputs[0], tracked[0].axis, tracked[0].ids)


@register("Split")
class SplitRule(OpRule):
    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        layout = ctx.layout(node.inputs[0])
        rank = ctx.rank(node.inputs[0])
        if layout is None or rank is None:
            return
        axis = norm_axis(attr_int(node, "axis", 0), rank)
        if layout.axis != axis:
            for out in node.outputs:
                ctx.set_layout(out, layout.axis, layout.ids)
            return
        sizes = [_static_dim(ctx, out, axis) for out in node.outputs]
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
    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        layout = ctx.layout(node.inputs[0])
        rank = ctx.rank(node.inputs[0])
        if layout is None or rank is None:
            return
        spec = _slice_spec(ctx, node, rank)
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


def _runtime_chunk(node: ir.Node, ctx: AnalysisContext, layout, rank: int) -> bool:
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


@register("Pad", since=11)
class PadRule(OpRule):
    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        layout = ctx.layout(node.inputs[0])
        rank = ctx.rank(node.inputs[0])
        if layout is None or rank is None:
            return
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
    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        layout = ctx.layout(node.inputs[0])
        rank, out_rank = ctx.rank(node.inputs[0]), ctx.rank(node.outputs[0])
        if layout is None:
            return
        target = const_ints(ctx, node, 1)
        if target is None or rank is None or out_rank is None:
            ctx.block(layout.ids, f"{describe(node)}: target shape is not constant")
            return
        axis = layout.axis + out_rank - rank
        local = axis - (out_rank - len(target))
        if local >= 0 and target[local] not in (1, len(layout)):
            ctx.block(layout.ids, f"{describe(node)} expands the channel axis")
            return
        ctx.set_layout(node.outputs[0], axis, layout.ids)

    def patch(self, node, ctx) -> None:
        layout = ctx.layout(node.outputs[0])
        if layout is None or not ctx.changed(node.outputs[0]):
            return
        target = np.array(ctx.const_input(node, 1), dtype=np.int64).copy()
        local = layout.axis - (ctx.rank(node.outputs[0]) - len(target))
        if local >= 0 and target[local] == len(layout):
            target[local] = ctx.kept_count(node.outputs[0])
            ctx.set_const_input(node, 1, target)


@register("Tile")
class TileRule(OpRule):
    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        layout = ctx.layout(node.inputs[0])
        if layout is None:
            return
        repeats = const_ints(ctx, node, 1)
        if repeats is None or repeats[layout.axis] != 1:
            ctx.block(layout.ids, f"{describe(node)} tiles the channel axis")
            return
        ctx.pass_through(node)


@register("Gather")
class GatherRule(OpRule):
    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        layout = ctx.layout(node.inputs[0])
        rank = ctx.rank(node.inputs[0])
        if layout is None or rank is None:
            return
        axis = norm_axis(attr_int(node, "axis", 0), rank)
        index_rank = ctx.rank(node.inputs[1])
        if layout.axis == axis or index_rank is None:
            ctx.block(layout.ids, f"{describe(node)} gathers along the channel axis")
            return
        new_axis = layout.axis if layout.axis < axis else layout.axis + index_rank - 1
        ctx.set_layout(node.outputs[0], new_axis, layout.ids)
