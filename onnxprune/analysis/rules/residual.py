"""Does a tensor feed a residual stream? (decides how embeddings are treated)

Rule: starting at ``value``, follow its readers forwards until each path reaches a
layer that creates channels of its own (Conv, ConvTranspose, Gemm, MatMul with a
constant weight, LSTM/GRU/RNN, Einsum with a constant operand). The value feeds a
residual stream when some path meets, before such a layer:

1. a normalisation over the hidden axis (LayerNormalization, RMSNormalization,
   com.microsoft SimplifiedLayerNormalization / SkipLayerNormalization), or a
   ReduceMean over the last axis (the first step of a written-out LayerNorm/RMSNorm;
   a mean over the time axis is pooling);
2. an Add/Sum joining it with another tensor computed at run time (a residual Add,
   or token + position embeddings).

Embedding tables that feed no residual stream (Embedding -> LSTM/GRU/Conv1d -> Linear)
are ordinary channel sources; the others are the hidden width that only
``--prune-hidden`` prunes.
"""

from __future__ import annotations

__all__ = ["feeds_residual_stream"]

import onnx_ir as ir

_NORMS = frozenset({"LayerNormalization", "RMSNormalization", "SimplifiedLayerNormalization",
                    "SkipLayerNormalization", "SkipSimplifiedLayerNormalization"})
_JOINS = frozenset({"Add", "Sum"})
_CREATORS = frozenset({"Conv", "ConvTranspose", "Gemm", "LSTM", "GRU", "RNN"})
_WEIGHTED = frozenset({"MatMul", "Einsum"})


def _creates_channels(node: ir.Node, value: ir.Value) -> bool:
    if node.op_type in _CREATORS:
        return True
    if node.op_type in _WEIGHTED:
        return any(v is not None and v is not value and v.const_value is not None
                   for v in node.inputs)
    return False


def _mean_over_last_axis(node: ir.Node, value: ir.Value) -> bool:
    if node.op_type != "ReduceMean":
        return False
    rank = len(value.shape) if value.shape is not None else None
    attr = node.attributes.get("axes")
    if attr is not None:
        axes = list(attr.value)
    elif len(node.inputs) > 1 and node.inputs[1] is not None:
        const = node.inputs[1].const_value
        if const is None:
            return True
        axes = [int(a) for a in const.numpy().ravel()]
    else:
        return True  # every axis
    return rank is None or any(a in (-1, rank - 1) for a in axes)


def _joins_runtime_tensor(node: ir.Node, value: ir.Value) -> bool:
    return node.op_type in _JOINS and any(
        v is not None and v is not value and v.const_value is None for v in node.inputs)


def feeds_residual_stream(value: ir.Value, limit: int = 10_000) -> bool:
    """The rule of the module (``limit`` bounds the walk on huge graphs: then True)."""
    seen: set[int] = set()
    frontier = [value]
    while frontier:
        current = frontier.pop()
        for user, _ in current.uses():
            if id(user) in seen:
                continue
            seen.add(id(user))
            if len(seen) > limit or user.op_type in _NORMS \
                    or _mean_over_last_axis(user, current) \
                    or _joins_runtime_tensor(user, current):
                return True
            if not _creates_channels(user, current):
                frontier.extend(user.outputs)
    return False
