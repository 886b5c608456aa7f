"""The masked-equivalence oracle.

Rule: pruning a unit must give the same outputs as keeping the graph whole and
multiplying every tracked tensor by a 0/1 mask that zeroes the unit's positions.
Channel-mixing ops (Conv, Gemm, ...) then never see the removed channels, and
channel-wise ops cannot leak them into kept ones, so the masked model computes
exactly what the pruned one does. ``channel_masks`` records the masks by value name
before the rewrite; ``masked_model`` builds the masked twin of the original.
"""

from __future__ import annotations

__all__ = ["channel_masks", "masked_model"]

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxprune.analysis.groups import Analysis
from onnxprune.analysis.keep import KeepView


def channel_masks(analysis: Analysis, removed_units: np.ndarray,
                  ) -> dict[str, tuple[int, int, np.ndarray]]:
    """value name -> (axis, rank, keep mask) for every tracked value that loses positions."""
    view = KeepView(analysis, removed_units)
    masks = {}
    for value, layout in analysis.ctx.layouts.items():
        keep = view.keep_ids(layout.ids)
        rank = view.rank(value)
        if value.name and rank is not None and not keep.all():
            masks[value.name] = (layout.axis, rank, keep)
    return masks


def masked_model(original: onnx.ModelProto, masks: dict[str, tuple[int, int, np.ndarray]],
                 ) -> onnx.ModelProto:
    """Copy of ``original`` whose tracked tensors are multiplied by their keep masks."""
    model = onnx.ModelProto()
    model.CopyFrom(original)
    graph = model.graph
    dtypes = _elem_types(model)
    renames = {name: f"{name}__masked" for name in masks}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]
    new_nodes = []
    for name, (axis, rank, keep) in masks.items():
        shape = [1] * rank
        shape[axis] = len(keep)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(dtypes.get(name, onnx.TensorProto.FLOAT))
        mask = numpy_helper.from_array(keep.astype(dtype).reshape(shape), f"{name}__mask")
        graph.initializer.append(mask)
        new_nodes.append(helper.make_node("Mul", [name, mask.name], [renames[name]]))
    _insert_after_producers(graph, new_nodes)
    return model


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    types = {}
    for info in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        if info.type.HasField("tensor_type"):
            types[info.name] = info.type.tensor_type.elem_type
    return types


def _insert_after_producers(graph: onnx.GraphProto, extra: list[onnx.NodeProto]) -> None:
    by_input = {n.input[0]: n for n in extra}
    ordered = []
    produced_now = set(i.name for i in graph.input) | set(i.name for i in graph.initializer)
    for name in list(by_input):
        if name in produced_now:
            ordered.append(by_input.pop(name))
    for node in graph.node:
        ordered.append(node)
        for out in node.output:
            if out in by_input:
                ordered.append(by_input.pop(out))
    del graph.node[:]
    graph.node.extend(ordered)
