"""Which initializers fine-tuning trains, and writing trained values back.

Rules:

1. A float32 initializer is trainable when every use is a weight position: Conv /
   ConvTranspose weight and bias, Gemm/MatMul operands, the scale and bias of
   BatchNormalization / LayerNormalization / InstanceNormalization /
   GroupNormalization, the PRelu slope, a Gather table (embeddings), the W/R/B (and
   LSTM peephole) tensors of LSTM/GRU/RNN, or an operand of
   Add/Sub/Mul/Div with more than one element (per-channel scales and shifts such as
   a decomposed LayerNorm's). Scalars (epsilons, exponents, GELU constants), shape
   operands and BatchNormalization running statistics are not.
2. ``frozen`` names (or ``fnmatch`` patterns) are removed from the trainable set.
3. :func:`with_weights` returns a copy of a model with some initializers replaced by
   arrays of the same shape and dtype; nothing else changes.
4. :func:`untie_weights`: weights a graph computes with ``Identity(initializer)`` (the
   TorchScript exporter's way of sharing equal tensors) or holds in float ``Constant``
   nodes of more than one element, and that a node reads at a weight position (rule
   1), become initializers named after the node output, one copy per output, so every
   layer trains its own weights (ORT training rejects gradients through such sharing).
5. A weight may reach its weight position through layout ops (``Reshape``,
   ``Transpose``, ``Slice``, ``Concat``, ``Squeeze``/``Unsqueeze``, ``Split``,
   ``Flatten``, ``Identity``): Paddle2ONNX writes conv biases as
   ``Add(conv, Reshape(Constant))`` and LSTM weights as ``Concat`` of constants. Such a
   tensor counts as a weight when every path from it ends at weight positions (rules 1
   and 4 then apply to it); the gradient flows back through the layout ops.
"""

from __future__ import annotations

__all__ = ["select_frozen", "trainable_candidates", "untie_weights", "with_weights"]

import fnmatch
import logging
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from onnxprune.errors import UsageError

logger = logging.getLogger(__name__)

WEIGHT_INPUTS = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (0, 1, 2), "MatMul": (0, 1),
    "BatchNormalization": (1, 2), "LayerNormalization": (1, 2),
    "InstanceNormalization": (1, 2), "GroupNormalization": (1, 2), "PRelu": (1,),
    "Gather": (0,), "LSTM": (1, 2, 3, 7), "GRU": (1, 2, 3), "RNN": (1, 2, 3),
}
ARITHMETIC = {"Add", "Sub", "Mul", "Div"}
# ops a weight may pass through on its way to a weight position (rule 5): input positions
# that carry the data (None: every input)
LAYOUT = {"Concat": None, "Slice": (0,), "Reshape": (0,), "Transpose": (0,), "Squeeze": (0,),
          "Unsqueeze": (0,), "Identity": (0,), "Split": (0,), "Flatten": (0,)}
_FLOATS = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16)


class _Uses:
    """Rule 1 and 5: whether every use of a tensor (of ``size`` elements) is a weight use."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        for node in graph.node:
            for position, name in enumerate(node.input):
                if name:
                    self.consumers.setdefault(name, []).append((node, position))
        self.outputs = {o.name for o in graph.output}

    def weight(self, name: str, size: int, depth: int = 0) -> bool:
        uses = self.consumers.get(name, [])
        if not uses or name in self.outputs or depth > 16:
            return False
        for node, position in uses:
            if node.domain not in ("", "ai.onnx"):
                return False
            if position in WEIGHT_INPUTS.get(node.op_type, ()):
                continue
            if node.op_type in ARITHMETIC and size > 1:
                continue
            data = LAYOUT.get(node.op_type, ())
            if node.op_type in LAYOUT and (data is None or position in data) and all(
                    self.weight(out, size, depth + 1) for out in node.output if out):
                continue
            return False
        return True


def trainable_candidates(model: onnx.ModelProto) -> list[str]:
    """Initializers rules 1 and 5 allow to train, in graph order."""
    uses = _Uses(model.graph)
    return [t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT
            and uses.weight(t.name, int(np.prod(t.dims)) if t.dims else 1)]


def select_frozen(names: Iterable[str], patterns: Iterable[str]) -> set[str]:
    """The ``names`` matched by ``patterns`` (exact names or fnmatch globs, rule 2); a
    pattern that matches nothing is logged as a warning (a typo freezes nothing)."""
    names = list(names)
    chosen = set()
    for pattern in patterns:
        matched = {n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)}
        if not matched:
            logger.warning("frozen pattern %r matches no trainable weight", pattern)
        chosen |= matched
    return chosen


def with_weights(model: onnx.ModelProto, arrays: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` with initializers replaced by ``arrays`` (rule 3)."""
    proto = onnx.ModelProto()
    proto.CopyFrom(model)
    for index, tensor in enumerate(proto.graph.initializer):
        if tensor.name not in arrays:
            continue
        old_shape = tuple(tensor.dims)
        value = np.asarray(arrays[tensor.name])
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        if value.shape != old_shape:
            raise UsageError(f"trained value of '{tensor.name}' has shape {list(value.shape)}, "
                             f"the model's initializer {list(old_shape)}")
        proto.graph.initializer[index].CopyFrom(
            numpy_helper.from_array(value.astype(dtype, copy=False), tensor.name))
    return proto


def _size(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> int:
    """Elements of a Constant's value or an Identity's initializer input (else 1)."""
    if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
        return int(np.prod(node.attribute[0].t.dims))
    if node.op_type == "Identity" and node.input and node.input[0] in inits:
        return int(np.prod(inits[node.input[0]].dims))
    return 1


def untie_weights(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` with rule 4 applied, and the number of nodes it replaced."""
    proto = onnx.ModelProto()
    proto.CopyFrom(model)
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    uses = _Uses(graph)
    kept, count = [], 0
    for node in graph.node:
        out = node.output[0] if node.output else ""
        default = node.domain in ("", "ai.onnx")
        tensor = None
        if not out or not uses.weight(out, _size(node, inits)):
            pass
        elif default and node.op_type == "Identity" and node.input[0] in inits \
                and out not in outputs and inits[node.input[0]].data_type in _FLOATS:
            tensor = numpy_helper.from_array(numpy_helper.to_array(inits[node.input[0]]), out)
        elif default and node.op_type == "Constant" and out not in outputs \
                and len(node.attribute) == 1 and node.attribute[0].name == "value" \
                and node.attribute[0].t.data_type in _FLOATS \
                and int(np.prod(node.attribute[0].t.dims)) > 1:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = out
        if tensor is None:
            kept.append(node)
            continue
        graph.initializer.append(tensor)
        inits[out] = tensor
        count += 1
    del graph.node[:]
    graph.node.extend(kept)
    return proto, count
