"""Small edits on ``onnx.GraphProto`` shared by the calibration and training layers.

Rules:

1. ``ancestors(graph, names)``: every value name some of ``names`` depends on
   (the names themselves included), walking producers backwards.
2. ``set_static_batch``: the first dimension of every graph input that is not an
   initializer becomes ``batch`` (training graphs need a static batch).
"""

from __future__ import annotations

__all__ = ["ancestors", "set_static_batch"]

from collections.abc import Iterable

import onnx


def ancestors(graph: onnx.GraphProto, names: Iterable[str]) -> set[str]:
    """Rule 1."""
    producers = {out: node for node in graph.node for out in node.output if out}
    seen: set[str] = set()
    frontier = list(names)
    while frontier:
        name = frontier.pop()
        if name in seen:
            continue
        seen.add(name)
        node = producers.get(name)
        if node is not None:
            frontier.extend(i for i in node.input if i)
    return seen


def set_static_batch(graph: onnx.GraphProto, batch: int, skip: set[str]) -> None:
    """Rule 2 (inputs named in ``skip``, e.g. initializers, are left alone)."""
    for value in graph.input:
        if value.name in skip:
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_value = batch
