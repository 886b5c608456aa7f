"""Evaluate small shape computations (Shape -> Gather -> Div ...) for chosen channel counts.

Exporters compute some slice bounds at run time from the tensor's own shape
(TorchScript's ``chunk``: ``Shape -> Gather -> Add -> Div -> Mul -> Slice``). After
pruning those bounds follow the new channel count by themselves, so the rule
only has to know *how* they follow it. ``probe_bounds`` re-evaluates the bound
computation with the channel dimension set to other values.

Rules:

1. The computation may read only constants and ``Shape`` of the sliced tensor
   itself; anything else (another tensor, a graph input) makes it unprobeable.
2. It is evaluated with ONNX's reference evaluator on a model of just those
   nodes; at most ``MAX_NODES`` nodes.
"""

from __future__ import annotations

__all__ = ["MAX_NODES", "probe_bounds"]

import numpy as np
import onnx
import onnx_ir as ir

MAX_NODES = 64


def _collect(values: list[ir.Value], data: ir.Value) -> tuple[list[ir.Node], list[ir.Node]] | None:
    """Nodes computing ``values`` and the Shape nodes of ``data`` they start from."""
    nodes: dict[int, ir.Node] = {}
    shapes: dict[int, ir.Node] = {}
    stack = list(values)
    while stack:
        value = stack.pop()
        if value is None or value.const_value is not None:
            continue
        node = value.producer()
        if node is None or len(nodes) > MAX_NODES:
            return None
        if node.op_type == "Shape":
            if node.inputs[0] is not data:
                return None
            shapes[id(node)] = node
            continue
        if id(node) not in nodes:
            nodes[id(node)] = node
            stack.extend(node.inputs)
    order = {id(n): i for i, n in enumerate(data.graph)} if data.graph is not None else {}
    ordered = sorted(nodes.values(), key=lambda n: order.get(id(n), 0))
    return ordered, list(shapes.values())


def _shape_slice(node: ir.Node, shape: list[int]) -> np.ndarray:
    start = node.attributes.get_int("start", 0)
    end = node.attributes.get_int("end", len(shape))
    return np.array(shape, dtype=np.int64)[start:end]


def probe_bounds(values: list[ir.Value], data: ir.Value, shape: tuple[int | None, ...],
                 axis: int, channels: list[int], opset: int) -> list[list[np.ndarray]] | None:
    """Evaluate ``values`` for each channel count in ``channels`` (see module rules)."""
    found = _collect(values, data)
    if found is None:
        return None
    nodes, shape_nodes = found
    dynamic = [v for v in values if v.const_value is None]
    if not dynamic:
        return None
    from onnx.reference import ReferenceEvaluator

    initializers = {}
    for node in nodes:
        for value in node.inputs:
            if value is not None and value.const_value is not None:
                initializers[value.name] = value.const_value.numpy()
    graph = onnx.helper.make_graph(
        [ir.serde.serialize_node(n) for n in nodes], "probe",
        [onnx.helper.make_tensor_value_info(s.outputs[0].name, onnx.TensorProto.INT64, None)
         for s in shape_nodes],
        [onnx.helper.make_tensor_value_info(v.name, onnx.TensorProto.INT64, None) for v in dynamic],
        [onnx.numpy_helper.from_array(np.asarray(a), k) for k, a in initializers.items()])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    try:
        evaluator = ReferenceEvaluator(model)
        results = []
        for count in channels:
            dims = [d if d is not None else 1 for d in shape]
            dims[axis] = count
            feeds = {s.outputs[0].name: _shape_slice(s, dims) for s in shape_nodes}
            computed = dict(zip([v.name for v in dynamic], evaluator.run(None, feeds)))
            results.append([np.asarray(computed[v.name]) if v.const_value is None
                            else v.const_value.numpy() for v in values])
        return results
    except Exception:  # an op the reference evaluator lacks: not probeable
        return None
