"""Ops that move, merge, cut or join axes.

Cases:

1. Transpose moves the layout's axis; Squeeze/Unsqueeze shift it (squeezing the
   channel axis itself blocks).
2. Flatten/Reshape merging the channel axis with neighbours: each channel becomes
   a block of positions (Flatten->Linear); the Reshape target is patched when it
   is a constant or a constant piece of a Concat. A Reshape splitting the channel
   axis into heads ``(H, D)`` makes each head one unit (see ``ReshapeRule``).
3. Concat on the channel axis concatenates layouts (untracked inputs become
   fixed positions); on another axis the inputs' layouts are merged.
4. Split/Slice on the channel axis cut the layout; their sizes/starts/ends are
   patched. On other axes the layout passes through (a Slice with constant axes
   that exclude the channel axis may have run-time starts/ends, as in RoPE's
   ``rotate_half``).
5. Pad, Resize/Upsample, Expand pass the layout through when they leave the
   channel axis alone; otherwise they block it; Tile repeats the ids (Resize/Expand
   sizes are patched;
   an Expand target may be a Concat of run-time and constant pieces, as in the
   ``repeat_kv`` of grouped-query attention).
6. Gather on another axis passes the layout through (moved by the indices' rank);
   on the channel axis it blocks; an embedding lookup is a source (``GatherRule``).
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
    "patch_shape_entry",
    "shape_entries",
]

import numpy as np
import onnx_ir as ir

from onnxprune.analysis.context import AnalysisContext, describe
from onnxprune.analysis.registry import OpRule, register
from onnxprune.analysis.rules.common import attr_int, attr_ints, axes_arg, const_ints, norm_axis
from onnxprune.analysis.rules.reshape_math import (
    MergeMap,
    SplitMap,
    fill_minus_one,
    merge_map,
    merged_ids,
    split_map,
)
from onnxprune.analysis.rules.residual import feeds_residual_stream
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


def shape_entries(ctx: AnalysisContext, shape_value: ir.Value, length: int,
                  ) -> list[int | None]:
    """Constant entries of a 1-D shape tensor (``None`` where computed at run time)."""
    entries: list[int | None] = []
    for index in range(length):
        where = locate_shape_entry(shape_value, index)
        if isinstance(where, str):
            entries.append(None)
            continue
        consumer, input_index, position = where
        source = shape_value if consumer is None else consumer.inputs[input_index]
        entries.append(int(np.ravel(source.const_value.numpy())[position]))
    return entries


def patch_shape_entry(ctx, reader: ir.Node, input_index: int, position: int,
                      value: int, only_if: int | None = None) -> bool:
    """Set entry ``position`` of the shape tensor read by ``reader`` to ``value``.

    The entry is a constant input or a constant piece of a Concat. A Concat whose
    output other nodes read too is first copied for ``reader``, so they keep their
    shape. Entries that are not positive (``-1``, ``0``) or differ from ``only_if``
    are left alone. Returns whether anything changed.
    """
    shape_value = reader.inputs[input_index]
    where = locate_shape_entry(shape_value, position)
    if isinstance(where, str):
        return False
    consumer, piece_index, offset = where
    if consumer is None:
        owner, index = reader, input_index
    else:
        if len(consumer.outputs[0].uses()) > 1:
            consumer = _private_copy(ctx, consumer, reader, input_index)
        owner, index = consumer, piece_index
    array = np.array(ctx.const_input(owner, index), dtype=np.int64).copy()
    flat = array.reshape(-1)
    current = int(flat[offset])
    if current <= 0 or (only_if is not None and current != only_if) or current == value:
        return False
    flat[offset] = value
    ctx.set_const_input(owner, index, array)
    return True


def _private_copy(ctx, concat: ir.Node, reader: ir.Node, input_index: int) -> ir.Node:
    """A copy of ``concat`` that only ``reader`` reads (inserted right after it)."""
    copy = ir.Node(concat.domain, concat.op_type, list(concat.inputs),
                   [attr for attr in concat.attributes.values()], num_outputs=1,
                   name=ctx.fresh_name(concat.name or "Concat"))
    copy.outputs[0].name = ctx.fresh_name(concat.outputs[0].name or "shape")
    copy.outputs[0].shape = concat.outputs[0].shape
    copy.outputs[0].type = concat.outputs[0].type
    ctx.graph.insert_after(concat, copy)
    reader.replace_input_with(input_index, copy.outputs[0])
    return copy


@register("Reshape")
class ReshapeRule(OpRule):
    """Cases:

    1. The channel axis merges with neighbours (Flatten-like, or heads back into
       ``H*D``): positions repeat channel ids (``merge_map``).
    2. The channel axis splits into heads ``(H, D)`` (``split_map``): the ``D``
       channels of each head are united into one unit and the head axis carries
       one id per head. The head width entry of the target must be a constant.
    3. Unknown dims are taken from the layout length, from constant target entries
       (a single ``-1`` computed when possible) and, failing that, from the
       runtime probe of static dims.
    4. ``patch`` rewrites the constant target entry of the layout axis (channel,
       ``H*D`` or head count) to the kept count; ``-1`` and run-time entries adapt
       by themselves.
    5. A split ``(g, C/g)`` whose two axes a Transpose swaps before Reshapes read it
       (ShuffleNet's channel shuffle): channel ``j`` of every group is one unit
       (equal loss per group, same indices), the layout sits on the within-group
       axis, and the merge back to ``C`` repeats each unit ``g`` times.
    """

    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        layout = ctx.layout(node.inputs[0])
        if layout is None:
            return
        found = self._mapping(node, ctx, layout, refine=False)
        if isinstance(found, str):
            found = self._mapping(node, ctx, layout, refine=True)
        if isinstance(found, str):
            ctx.block(layout.ids, f"{describe(node)} {found}")
            return
        if isinstance(found, SplitMap):
            self._split(node, ctx, layout, found)
            return
        where = locate_shape_entry(node.inputs[1], found.out_axis)
        if isinstance(where, str) and where != "dynamic":
            ctx.block(layout.ids, f"{describe(node)}: target shape {where}")
            return
        _apply_merge(node, ctx, found)

    @staticmethod
    def _mapping(node, ctx, layout, refine: bool) -> MergeMap | SplitMap | str:
        read = ctx.refined_shape if refine else ctx.shape
        shape, out_shape = read(node.inputs[0]), read(node.outputs[0])
        if shape is None or out_shape is None:
            return "has unknown shapes"
        shape = list(shape)
        if shape[layout.axis] is None:
            shape[layout.axis] = len(layout)
        out_shape = _with_target(node, ctx, tuple(shape), list(out_shape))
        mapping = merge_map(tuple(shape), out_shape, layout.axis)
        if isinstance(mapping, MergeMap):
            return mapping
        split = split_map(tuple(shape), out_shape, layout.axis)
        return split if split is not None else mapping

    @staticmethod
    def _split(node, ctx, layout, split: SplitMap) -> None:
        if _shuffles(node, split.out_axis):
            _shuffle_split(node, ctx, layout, split)
            return
        width_entry = locate_shape_entry(node.inputs[1], split.out_axis + 1)
        if isinstance(width_entry, str):
            ctx.block(layout.ids, f"{describe(node)} splits channels into {split.heads} "
                                  f"heads, but the head width is computed at run time")
            return
        ids = layout.ids.reshape(split.heads, split.width)
        for d in range(1, split.width):
            ctx.union(ids[:, 0], ids[:, d], f"{describe(node)} splits channels into heads")
        ctx.note_units(ids[:, 0], "heads", split.width)
        ctx.set_layout(node.outputs[0], split.out_axis, ids[:, 0])

    def patch(self, node, ctx) -> None:
        layout = ctx.layout(node.outputs[0])
        if layout is None or not ctx.changed(node.outputs[0]):
            return
        patch_shape_entry(ctx, node, 1, layout.axis, ctx.kept_count(node.outputs[0]))


def _shuffles(node: ir.Node, axis: int) -> bool:
    """The split ``(g, C/g)`` at ``axis`` is read only by a Transpose that swaps the two
    axes (and nothing else), itself read only by Reshapes (and Shapes computing their
    targets): a channel shuffle."""
    users = node.outputs[0].uses()
    if len(users) != 1 or users[0].node.op_type != "Transpose" or node.outputs[0].is_graph_output():
        return False
    transpose = users[0].node
    perm = attr_ints(transpose, "perm")
    if perm is None:
        return False
    swapped = list(range(len(perm)))
    swapped[axis], swapped[axis + 1] = axis + 1, axis
    readers = transpose.outputs[0].uses()
    merges = [u for u in readers if u.node.op_type == "Reshape" and u.idx == 0]
    return list(perm) == swapped and bool(merges) and all(
        u in merges or u.node.op_type == "Shape" for u in readers)


def _shuffle_split(node: ir.Node, ctx: AnalysisContext, layout, split: SplitMap) -> None:
    """Channel shuffle ``Reshape(N, g, C/g, ...) -> Transpose -> Reshape(N, C, ...)``:
    channel ``j`` of every group is one unit (each group loses the same channels, so
    the kept channels keep their order through the transpose); the layout moves to the
    within-group axis, whose target entry is patched."""
    where = locate_shape_entry(node.inputs[1], split.out_axis + 1)
    if isinstance(where, str) and where != "dynamic":
        ctx.block(layout.ids, f"{describe(node)}: channel shuffle target shape {where}")
        return
    ids = layout.ids.reshape(split.heads, split.width)
    for g in range(1, split.heads):
        ctx.union(ids[0], ids[g], f"{describe(node)} shuffles channels across "
                                  f"{split.heads} groups")
    ctx.note_units(ids[0], "shuffle", split.heads)
    ctx.set_layout(node.outputs[0], split.out_axis + 1, ids[0])


def _with_target(node: ir.Node, ctx: AnalysisContext, in_shape: tuple[int | None, ...],
                 out_shape: list[int | None]) -> tuple[int | None, ...]:
    """Fill unknown output dims from the Reshape target's constant entries."""
    if None not in out_shape:
        return tuple(out_shape)
    entries = shape_entries(ctx, node.inputs[1], len(out_shape))
    if not attr_int(node, "allowzero", 0):
        entries = [in_shape[i] if d == 0 and i < len(in_shape) else d
                   for i, d in enumerate(entries)]
    filled = fill_minus_one(in_shape, entries)
    return tuple(d if d is not None else f for d, f in zip(out_shape, filled))


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
            entry = shape_entries(ctx, node.inputs[1], target_shape[0])[local]
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
