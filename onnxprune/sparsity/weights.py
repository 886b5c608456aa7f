"""The weights unstructured and N:M sparsity may zero.

Rules:

1. A prunable weight is a floating-point initializer read as the weight of
   ``Conv`` (input 1, ``[C_out, C_in/group, k...]``), ``Gemm`` (input 1, 2-D) or
   ``MatMul`` (input 1, a 2-D initializer or ``Transpose(perm=[1, 0])`` of one).
   Biases, normalisation parameters and every other tensor are never touched.
2. Its *input axis* is the reduction axis: 1 for Conv, the ``K`` axis for Gemm
   (1 with ``transB=1``, else 0) and MatMul (0; 1 behind the Transpose).
3. An initializer read by several layers is listed once (first reader).
4. ``ignore`` globs matching the layer's node name or the initializer's name exclude it.
"""

from __future__ import annotations

__all__ = ["PrunableWeight", "prunable_weights"]

import dataclasses
import fnmatch

import onnx

_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
           onnx.TensorProto.BFLOAT16}


@dataclasses.dataclass(frozen=True)
class PrunableWeight:
    name: str                 # initializer name
    layer: str                # node name of the layer (op type when unnamed)
    op: str                   # Conv | Gemm | MatMul
    shape: tuple[int, ...]
    in_axis: int              # reduction (input-channel) axis of the initializer

    @property
    def size(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return int(attr.i)
    return default


def _transposed_initializer(graph: onnx.GraphProto, value: str,
                            inits: dict[str, onnx.TensorProto]) -> str | None:
    producer = next((n for n in graph.node if value in n.output), None)
    if producer is None or producer.op_type != "Transpose" or producer.input[0] not in inits:
        return None
    perm = next((list(a.ints) for a in producer.attribute if a.name == "perm"), [1, 0])
    return producer.input[0] if perm == [1, 0] else None


def prunable_weights(model: onnx.ModelProto, ignore: tuple[str, ...] = (),
                     ) -> list[PrunableWeight]:
    """The prunable weights of ``model`` in graph order (rules 1-4)."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    found: dict[str, PrunableWeight] = {}
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            continue
        name, in_axis = node.input[1], None
        if node.op_type == "Conv" and name in inits and len(inits[name].dims) >= 3:
            in_axis = 1
        elif node.op_type == "Gemm" and name in inits and len(inits[name].dims) == 2:
            in_axis = 1 if _attr(node, "transB", 0) else 0
        elif node.op_type == "MatMul":
            if name in inits and len(inits[name].dims) == 2:
                in_axis = 0
            elif (source := _transposed_initializer(graph, name, inits)) is not None \
                    and len(inits[source].dims) == 2:
                name, in_axis = source, 1
        if in_axis is None or name in found or inits[name].data_type not in _FLOATS:
            continue
        layer = node.name or node.op_type
        if any(fnmatch.fnmatchcase(n, p) for p in ignore for n in (layer, name)):
            continue
        found[name] = PrunableWeight(name, layer, node.op_type, tuple(inits[name].dims),
                                     in_axis)
    return list(found.values())
