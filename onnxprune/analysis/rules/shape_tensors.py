"""Reading and editing the entries of 1-D shape tensors (Reshape/Expand targets, the
zeros-shape of a recurrent state).

Rules read a shape tensor entry by entry; exporters write it as a constant or as a
``Concat`` of constant and run-time pieces (``[N, -1]`` from ``Shape -> Gather`` next to
constants). The cases:

1. :func:`locate_shape_entry`: where entry ``i`` comes from: the tensor itself when it is
   a constant (:class:`ShapeEntry` with ``consumer=None``); a constant piece of the
   ``Concat`` that builds it (``consumer`` is that ``Concat``, ``input_index`` the
   piece); ``"dynamic"`` for a run-time piece or producer; another reason string when
   it cannot be followed (a graph input, pieces of unknown length, out of range).
2. :func:`constant_entry` / :func:`shape_entries`: the value of one / every entry,
   ``None`` where it is not a constant.
3. :func:`patch_shape_entry`: set one constant entry (after pruning). A ``Concat`` whose
   output other nodes read too is first copied for the reader, so they keep their
   shape; entries that are not positive (``-1``, ``0``) or differ from ``only_if`` are
   left alone.
"""

from __future__ import annotations

__all__ = ["ShapeEntry", "constant_entry", "locate_shape_entry", "patch_shape_entry",
           "shape_entries"]

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import onnx_ir as ir

if TYPE_CHECKING:
    from onnxprune.rewrite.context import RewriteContext


class ShapeEntry(NamedTuple):
    """The constant holding one entry: input ``input_index`` of ``consumer`` at
    ``position`` (``consumer`` ``None``: the shape tensor itself, ``input_index`` -1)."""

    consumer: ir.Node | None
    input_index: int
    position: int


def locate_shape_entry(shape_value: ir.Value, index: int) -> ShapeEntry | str:
    """Case 1: where entry ``index`` of the 1-D shape tensor ``shape_value`` comes from."""
    if shape_value.const_value is not None:
        return ShapeEntry(None, -1, index)
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
                return ShapeEntry(producer, input_index, index - offset)
            return "dynamic"
        offset += length
    return "shape entry out of range"


def constant_entry(shape_value: ir.Value, index: int) -> int | None:
    """Case 2: the value of entry ``index``; ``None`` when it is not a constant."""
    where = locate_shape_entry(shape_value, index)
    if isinstance(where, str):
        return None
    source = shape_value if where.consumer is None else where.consumer.inputs[where.input_index]
    return int(np.ravel(source.const_value.numpy())[where.position])


def shape_entries(shape_value: ir.Value, length: int) -> list[int | None]:
    """Case 2: the first ``length`` entries (``None`` where computed at run time)."""
    return [constant_entry(shape_value, index) for index in range(length)]


def patch_shape_entry(ctx: RewriteContext, reader: ir.Node, input_index: int, position: int,
                      value: int, only_if: int | None = None) -> bool:
    """Case 3: set entry ``position`` of the shape tensor read as input ``input_index`` of
    ``reader`` to ``value``. Returns whether anything changed."""
    where = locate_shape_entry(reader.inputs[input_index], position)
    if isinstance(where, str):
        return False
    if where.consumer is None:
        owner, index = reader, input_index
    else:
        consumer = where.consumer
        if len(consumer.outputs[0].uses()) > 1:
            consumer = _private_copy(ctx, consumer, reader, input_index)
        owner, index = consumer, where.input_index
    array = np.array(ctx.const_input(owner, index), dtype=np.int64).copy()
    flat = array.reshape(-1)
    current = int(flat[where.position])
    if current <= 0 or (only_if is not None and current != only_if) or current == value:
        return False
    flat[where.position] = value
    ctx.set_const_input(owner, index, array)
    return True


def _private_copy(ctx: RewriteContext, concat: ir.Node, reader: ir.Node,
                  input_index: int) -> ir.Node:
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
