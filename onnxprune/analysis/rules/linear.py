"""Gemm and MatMul with constant weights (linear layers).

Cases for ``Y = A @ B (+ C)`` with B a constant initializer:

1. A's layout on its reduction axis (K): coupled to B's K axis (Flatten->Linear
   arrives here with each channel repeated H*W times).
2. A's layout on a row/batch axis (MatMul only): passes through to the output;
   the output features are then not made a source.
3. Otherwise the output features are a new source, coupled to B's N axis and to a
   bias C (Gemm) that has N entries on its last axis. MatMul's B may also be
   ``Transpose(W)`` of a 2-D initializer read only there (W is then sliced).
4. B not constant (activation x activation, e.g. attention ``Q @ K^T`` and
   ``P @ V``), with numpy matmul broadcasting:
   a. layouts on the same batch axis of both inputs (attention heads) are merged
      and the output keeps that axis's layout; a layout on a batch axis the other
      input broadcasts (size 1 or absent) passes through;
   b. layouts on the contracted axis of both inputs are merged (the output then
      carries none); on one input only they are blocked;
   c. A's row axis and B's column axis pass to the output's row/column axis;
   d. layouts that would land on two different output axes are blocked.
5. B (or Gemm's C) ``DequantizeLinear`` of a constant integer tensor (QDQ models): the
   integer tensor is sliced, with its per-channel scale and zero point
   (:mod:`onnxprune.analysis.rules.quant`).
6. com.microsoft Attention/MultiHeadAttention/GroupQueryAttention: a barrier.
"""

from __future__ import annotations

__all__ = ["FusedAttentionRule", "GemmRule", "MatMulRule"]

import onnx_ir as ir

from onnxprune.analysis.context import AnalysisContext, describe
from onnxprune.analysis.registry import OpRule, register
from onnxprune.analysis.rules.common import attr_int, attr_ints
from onnxprune.analysis.rules.quant import WeightSource, couple_weight, weight_source


def _couple_k(node: ir.Node, ctx: AnalysisContext, layout, weight: WeightSource,
              k_axis_b: int, k: int) -> None:
    if len(layout) != k:
        ctx.block(layout.ids, f"{describe(node)}: input has {len(layout)} features, "
                              f"weight expects {k}")
    else:
        couple_weight(ctx, weight, k_axis_b, layout.ids, role="in")


@register("Gemm")
class GemmRule(OpRule):
    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        a = node.inputs[0]
        layout = ctx.layout(a)
        weight = weight_source(node, 1)
        if weight is None or len(weight.shape) != 2:
            ctx.block_inputs(node, f"{describe(node)}: weight B is not a constant initializer")
            return
        trans_a, trans_b = attr_int(node, "transA", 0), attr_int(node, "transB", 0)
        k_axis_b, n_axis_b = (1, 0) if trans_b else (0, 1)
        k, n = weight.shape[k_axis_b], weight.shape[n_axis_b]
        if layout is not None:
            if layout.axis == (0 if trans_a else 1):
                _couple_k(node, ctx, layout, weight, k_axis_b, k)
            else:
                ctx.block(layout.ids, f"{describe(node)}: channels on the row axis of A")
        ids = ctx.new_source(node, node.outputs[0], 1, n, "Gemm output")
        couple_weight(ctx, weight, n_axis_b, ids, role="out")
        self._couple_bias(node, ctx, ids, n)

    @staticmethod
    def _couple_bias(node, ctx, ids, n) -> None:
        if len(node.inputs) < 3 or node.inputs[2] is None:
            return
        bias = weight_source(node, 2)
        if bias is None:
            ctx.block(ids, f"{describe(node)}: bias C is not a constant")
        elif bias.shape and bias.shape[-1] == n and n > 1:
            couple_weight(ctx, bias, len(bias.shape) - 1, ids, role="bias")

    def macs(self, node, ctx) -> float:
        k_axis = 0 if attr_int(node, "transA", 0) else 1
        return ctx.numel_kept(node.outputs[0]) * ctx.kept_count(node.inputs[0], axis=k_axis)


@register("MatMul")
class MatMulRule(OpRule):
    data_inputs = (0, 1)

    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        a, b = node.inputs[0], node.inputs[1]
        layout = ctx.layout(a)
        rank_a = ctx.rank(a)
        weight = _weight(ctx, node)
        if weight is None and b is not None and not ctx.is_param(a):
            _activation_matmul(node, ctx)
            return
        if weight is None or rank_a is None:
            ctx.block_inputs(node, f"{describe(node)}: needs a constant 2-D weight "
                                   "as second input")
            return
        source, k_axis, n_axis = weight
        k, n = source.shape[k_axis], source.shape[n_axis]
        out = node.outputs[0]
        if layout is not None and rank_a >= 2 and layout.axis < rank_a - 1:
            ctx.set_layout(out, layout.axis + (ctx.rank(out) or rank_a) - rank_a, layout.ids)
            return
        if layout is not None:
            if len(layout) != k:
                ctx.block(layout.ids, f"{describe(node)}: input has {len(layout)} features, "
                                      f"weight expects {k}")
            else:
                couple_weight(ctx, source, k_axis, layout.ids, role="in")
        if rank_a == 1:
            return
        ids = ctx.new_source(node, out, (ctx.rank(out) or rank_a) - 1, n, "MatMul output")
        couple_weight(ctx, source, n_axis, ids, role="out")

    def macs(self, node, ctx) -> float:
        b = node.inputs[1]
        if b is not None and b.const_value is None and node.inputs[0].const_value is None:
            rank_a = ctx.rank(node.inputs[0])
            if rank_a is None or rank_a < 2 or ctx.shape(node.outputs[0]) is None:
                return 0.0
            return ctx.numel_kept(node.outputs[0]) * ctx.kept_count(node.inputs[0],
                                                                    axis=rank_a - 1)
        if b is None or b.const_value is None or len(b.const_value.shape) != 2:
            return 0.0
        rank_a = len(ctx.shape(node.inputs[0]) or (1,))
        return ctx.numel_kept(node.outputs[0]) * ctx.kept_count(node.inputs[0], axis=rank_a - 1)


def _weight(ctx: AnalysisContext, node: ir.Node) -> tuple[WeightSource, int, int] | None:
    """Where B's constant lives: ``(source, k_axis, n_axis)``.

    B itself (a 2-D initializer or dequantized integer initializer), or
    ``Transpose(W)`` of a 2-D initializer that only this MatMul reads (a torch Linear
    weight ``[N, K]`` transposed in the graph).
    """
    b = node.inputs[1]
    if b is None:
        return None
    source = weight_source(node, 1)
    if source is not None:
        return (source, 0, 1) if len(source.shape) == 2 else None
    producer = b.producer()
    if producer is None or producer.op_type != "Transpose" or len(b.uses()) != 1:
        return None
    w = producer.inputs[0]
    perm = attr_ints(producer, "perm") or (1, 0)
    if not ctx.is_param(w) or len(w.const_value.shape) != 2 or tuple(perm) != (1, 0):
        return None
    return WeightSource(producer, 0, tuple(w.const_value.shape)), 1, 0


def _activation_matmul(node: ir.Node, ctx: AnalysisContext) -> None:
    """Case 4 of the module rule."""
    a, b = node.inputs[0], node.inputs[1]
    ranks = ctx.rank(a), ctx.rank(b), ctx.rank(node.outputs[0])
    tracked = [(i, ctx.layout(v)) for i, v in enumerate((a, b)) if ctx.layout(v) is not None]
    if not tracked:
        return
    if None in ranks or min(ranks[:2]) < 2:
        ctx.block_inputs(node, f"{describe(node)}: ranks unknown or 1-D operand")
        return
    out_rank = ranks[2]
    contracted, placed = [], []
    for index, layout in tracked:
        rank = ranks[index]
        role = _matmul_role(index, layout.axis, rank)
        if role == "k":
            contracted.append(layout.ids)
        elif role == "batch":
            placed.append((out_rank - rank + layout.axis, layout.ids, index))
        else:
            placed.append((out_rank - 2 if role == "m" else out_rank - 1, layout.ids, index))
    if len(contracted) == 1:
        ctx.block(contracted[0], f"{describe(node)} contracts channels with a tensor "
                                 "whose matching axis is not tracked")
    elif len(contracted) == 2:
        ctx.union(contracted[0], contracted[1], f"{describe(node)} contracts channels")
    if not placed:
        return
    axes = {axis for axis, _, _ in placed}
    if len(axes) > 1:
        for _, ids, _ in placed:
            ctx.block(ids, f"{describe(node)}: inputs carry channels on different output axes")
        return
    axis, ids, index = placed[0]
    if len(placed) == 2:
        ctx.union(ids, placed[1][1], f"{describe(node)} pairs heads of both inputs")
        ctx.note_units(ids, "attention", 0)
    elif _matmul_role(index, ctx.layout((a, b)[index]).axis, ranks[index]) == "batch":
        other = (b, a)[index]
        shape = ctx.refined_shape(other)
        local = axis - (out_rank - len(shape)) if shape is not None else -1
        if shape is None or (local >= 0 and shape[local] != 1):
            ctx.block(ids, f"{describe(node)}: the other input does not broadcast over "
                           "the channel axis")
            return
    ctx.set_layout(node.outputs[0], axis, ids)


def _matmul_role(index: int, axis: int, rank: int) -> str:
    if axis < rank - 2:
        return "batch"
    if index == 0:
        return "m" if axis == rank - 2 else "k"
    return "k" if axis == rank - 2 else "n"


@register("Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention",
          "PackedMultiHeadAttention", domain="com.microsoft")
class FusedAttentionRule(OpRule):
    """ONNX Runtime's fused attention ops (com.microsoft) hide the head split in
    attributes and packed weights: every layout reaching them is blocked."""

    data_inputs = None

    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        ctx.block_inputs(node, f"{describe(node)}: fused com.microsoft attention is a barrier "
                               "(export without ORT's attention fusion to prune its heads)")
