"""Ops that merge the channel axis with its neighbours or split it: Flatten and Reshape.

Cases:

1. Flatten merging the channel axis into the columns: each channel becomes a block of
   positions (Flatten -> Linear); merging it into the rows blocks.
2. Reshape merging the channel axis with neighbours: positions repeat channel ids
   (``reshape_math.merge_map``); the target entry of the merged axis is patched when it
   is a constant or a constant piece of a Concat (:mod:`.shape_tensors`).
3. Reshape splitting the channel axis into heads ``(H, D)``: each head is one unit
   (``ReshapeRule`` case 2); a channel shuffle (split, Transpose, merge) makes channel
   ``j`` of every group one unit (``ReshapeRule`` case 5).
4. Anything else (unknown shapes, a target entry that cannot be followed) blocks with
   the reason.
"""

from __future__ import annotations

__all__ = ["FlattenRule", "ReshapeRule"]

import numpy as np
import onnx_ir as ir

from onnxprune.analysis.context import AnalysisContext, Layout, describe
from onnxprune.analysis.registry import OpRule, register
from onnxprune.analysis.rules.common import attr_int, attr_ints, norm_axis, tracked_shape
from onnxprune.analysis.rules.reshape_math import (
    MergeMap,
    SplitMap,
    fill_minus_one,
    merge_map,
    merged_ids,
    split_map,
)
from onnxprune.analysis.rules.shape_tensors import (
    locate_shape_entry,
    patch_shape_entry,
    shape_entries,
)


def _apply_merge(node: ir.Node, ctx: AnalysisContext, mapping: MergeMap | str) -> bool:
    layout = ctx.layout(node.inputs[0])
    if isinstance(mapping, str):
        ctx.block(layout.ids, f"{describe(node)} {mapping}")
        return False
    ctx.set_layout(node.outputs[0], mapping.out_axis, merged_ids(layout.ids, mapping))
    return True


@register("Flatten")
class FlattenRule(OpRule):
    """Case 1 of the module."""

    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        tracked = tracked_shape(ctx, node)
        if tracked is None:
            return
        layout, shape = tracked
        axis = norm_axis(attr_int(node, "axis", 1), len(shape))
        if layout.axis < axis:
            ctx.block(layout.ids, f"{describe(node)} merges the channel axis into the rows")
            return
        _apply_merge(node, ctx, merge_map(shape, (_product(shape[:axis]), _product(shape[axis:])),
                                          layout.axis))


def _product(dims: tuple[int | None, ...]) -> int | None:
    return None if any(d is None for d in dims) else int(np.prod(dims, dtype=np.int64))


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
    def _mapping(node: ir.Node, ctx: AnalysisContext, layout: Layout,
                 refine: bool) -> MergeMap | SplitMap | str:
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
    def _split(node: ir.Node, ctx: AnalysisContext, layout: Layout, split: SplitMap) -> None:
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


def _shuffle_split(node: ir.Node, ctx: AnalysisContext, layout: Layout,
                   split: SplitMap) -> None:
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
    entries = shape_entries(node.inputs[1], len(out_shape))
    if not attr_int(node, "allowzero", 0):
        entries = [in_shape[i] if d == 0 and i < len(in_shape) else d
                   for i, d in enumerate(entries)]
    filled = fill_minus_one(in_shape, entries)
    return tuple(d if d is not None else f for d, f in zip(out_shape, filled))

