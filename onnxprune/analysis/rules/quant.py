"""QuantizeLinear / DequantizeLinear (QDQ models) and quantized constant weights.

Cases for ``QuantizeLinear(x, scale, zero_point)`` and ``DequantizeLinear`` of an
activation (the channel layout arrives on input 0):

1. Per-tensor scale (a scalar or one element): the layout passes through unchanged
   (quantization is elementwise).
2. Per-axis scale on the layout's axis (``axis`` attribute, 1-D scale): the layout
   passes through and the scale and zero point are coupled to it (sliced with the
   channels); they must be initializers, else the layout is blocked.
3. Per-axis scale on another axis: passes through like case 1.
4. Blocked quantization (``block_size`` > 0, opset 21) on any axis: blocked.

``DequantizeLinear`` of a constant integer initializer is a *weight source*: a
Conv/Gemm/MatMul whose weight (or bias) input is such a value couples the integer
tensor instead of a float initializer (:func:`weight_source`, :func:`couple_weight`).
Slicing the weight along the DequantizeLinear's per-axis ``axis`` also slices its
scale and zero point; slicing it along another axis leaves them whole. The
DequantizeLinear must be read only by that layer.
"""

from __future__ import annotations

__all__ = ["QdqRule", "WeightSource", "couple_weight", "dequantized", "weight_source"]

import dataclasses

import numpy as np
import onnx_ir as ir

from onnxprune.analysis.context import AnalysisContext, describe
from onnxprune.analysis.registry import OpRule, register
from onnxprune.analysis.rules.common import attr_int, norm_axis

_INTEGER = {ir.DataType.INT8, ir.DataType.UINT8, ir.DataType.INT16, ir.DataType.UINT16,
            ir.DataType.INT32, ir.DataType.INT4, ir.DataType.UINT4}


def _is_const(value: ir.Value | None) -> bool:
    return value is not None and value.is_initializer() and value.const_value is not None


def _per_axis(node: ir.Node, rank: int) -> int | None:
    """The quantization axis when the scale is per-axis (1-D, > 1 element), else ``None``."""
    scale = node.inputs[1] if len(node.inputs) > 1 else None
    shape = scale.shape if scale is not None else None
    if shape is None and _is_const(scale):
        shape = scale.const_value.shape
    if shape is None or len(shape) == 0 or (len(shape) == 1 and shape[0] == 1):
        return None
    return norm_axis(attr_int(node, "axis", 1), rank)


@dataclasses.dataclass(frozen=True)
class WeightSource:
    """Where a layer's constant weight lives: input ``index`` of ``node``.

    ``node`` is the layer itself for a float initializer, or the ``DequantizeLinear``
    (``dequant``) whose input 0 holds the quantized tensor.
    """

    node: ir.Node
    index: int
    shape: tuple[int, ...]
    dequant: ir.Node | None = None


def weight_source(node: ir.Node, index: int) -> WeightSource | None:
    """The constant behind input ``index`` of ``node``: an initializer, or
    ``DequantizeLinear(initializer)`` read only by ``node``; ``None`` otherwise."""
    value = node.inputs[index] if index < len(node.inputs) else None
    if value is None:
        return None
    if _is_const(value):
        return WeightSource(node, index, tuple(value.const_value.shape))
    producer = value.producer()
    if producer is None or producer.op_type != "DequantizeLinear" or producer.domain not in (
            "", "ai.onnx") or len(value.uses()) != 1 or value.is_graph_output():
        return None
    q = producer.inputs[0]
    if not _is_const(q) or q.const_value.dtype not in _INTEGER:
        return None
    if attr_int(producer, "block_size", 0) > 0:
        return None
    if any(not _is_const(v) for v in producer.inputs[1:] if v is not None):
        return None
    return WeightSource(producer, 0, tuple(q.const_value.shape), producer)


def couple_weight(ctx: AnalysisContext, source: WeightSource, axis: int, ids: np.ndarray,
                  groups: int = 1, role: str = "const") -> None:
    """Couple ``axis`` of the weight to ``ids``; for a quantized weight also its
    per-axis scale and zero point when ``axis`` is the quantization axis."""
    ctx.couple(source.node, source.index, axis, ids, groups=groups, role=role)
    dq = source.dequant
    if dq is None or _per_axis(dq, len(source.shape)) != axis:
        return
    if groups != 1:
        ctx.block(ids, f"{describe(dq)}: per-channel scales on a grouped axis")
        return
    for index in (1, 2):
        if index < len(dq.inputs) and dq.inputs[index] is not None:
            ctx.couple(dq, index, 0, ids, role="qparam")


def dequantized(node: ir.Node, index: int) -> np.ndarray:
    """Input ``index`` of ``node`` as float: dequantized when ``node`` is the
    ``DequantizeLinear`` of a weight source and ``index`` is 0."""
    array = node.inputs[index].const_value.numpy()
    if node.op_type != "DequantizeLinear" or index != 0:
        return array
    scale = node.inputs[1].const_value.numpy().astype(np.float64)
    zero = (node.inputs[2].const_value.numpy().astype(np.float64)
            if len(node.inputs) > 2 and node.inputs[2] is not None else np.zeros(()))
    shape = [1] * array.ndim
    if scale.ndim == 1 and scale.size > 1:
        shape[norm_axis(attr_int(node, "axis", 1), array.ndim)] = scale.size
        zero = np.broadcast_to(zero, scale.shape).reshape(shape)
        scale = scale.reshape(shape)
    return (array.astype(np.float64) - zero) * scale


@register("QuantizeLinear", "DequantizeLinear", since=10)
class QdqRule(OpRule):
    """Cases 1-4 of the module rule."""

    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        x = node.inputs[0]
        layout = ctx.layout(x)
        if layout is None:
            return  # a constant (weight source) or an untracked activation
        rank = ctx.rank(x)
        if attr_int(node, "block_size", 0) > 0 or rank is None:
            ctx.block(layout.ids, f"{describe(node)}: blocked quantization or unknown rank")
            return
        axis = _per_axis(node, rank)
        if axis == layout.axis:
            params = [i for i in (1, 2) if i < len(node.inputs) and node.inputs[i] is not None]
            if any(not _is_const(node.inputs[i]) for i in params):
                ctx.block(layout.ids, f"{describe(node)}: per-channel scale is not a constant")
                return
            for index in params:
                ctx.couple(node, index, 0, layout.ids, role="qparam")
        ctx.set_layout(node.outputs[0], layout.axis, layout.ids)
