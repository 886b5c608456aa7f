"""Which initializers fine-tuning trains, and writing trained values back.

Rules:

1. A float32 initializer is trainable when every use is a weight position: Conv /
   ConvTranspose weight and bias, Gemm/MatMul operands, the scale and bias of
   BatchNormalization / LayerNormalization / InstanceNormalization /
   GroupNormalization, the PRelu slope, a Gather table (embeddings), or an operand of
   Add/Sub/Mul/Div with more than one element (per-channel scales and shifts such as
   a decomposed LayerNorm's). Scalars (epsilons, exponents, GELU constants), shape
   operands and BatchNormalization running statistics are not.
2. ``frozen`` names (or ``fnmatch`` patterns) are removed from the trainable set.
3. :func:`with_weights` returns a copy of a model with some initializers replaced by
   arrays of the same shape and dtype; nothing else changes.
"""

from __future__ import annotations

__all__ = ["select_frozen", "trainable_candidates", "with_weights"]

import fnmatch
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from onnxprune.errors import UsageError

WEIGHT_INPUTS = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (0, 1, 2), "MatMul": (0, 1),
    "BatchNormalization": (1, 2), "LayerNormalization": (1, 2),
    "InstanceNormalization": (1, 2), "GroupNormalization": (1, 2), "PRelu": (1,),
    "Gather": (0,),
}
ARITHMETIC = {"Add", "Sub", "Mul", "Div"}


def trainable_candidates(model: onnx.ModelProto) -> list[str]:
    """Initializers rule 1 allows to train, in graph order."""
    inits = {t.name: t for t in model.graph.initializer}
    weight, other = set(), set()
    for node in model.graph.node:
        positions = WEIGHT_INPUTS.get(node.op_type, ())
        for position, name in enumerate(node.input):
            if name not in inits:
                continue
            tensor = inits[name]
            size = int(np.prod(tensor.dims)) if tensor.dims else 1
            if position in positions or (node.op_type in ARITHMETIC and size > 1):
                weight.add(name)
            else:
                other.add(name)
    return [t.name for t in model.graph.initializer if t.name in weight - other
            and t.data_type == TensorProto.FLOAT]


def select_frozen(names: Iterable[str], patterns: Iterable[str]) -> set[str]:
    """The ``names`` matched by ``patterns`` (exact names or fnmatch globs, rule 2)."""
    names = list(names)
    chosen = set()
    for pattern in patterns:
        matched = {n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)}
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
