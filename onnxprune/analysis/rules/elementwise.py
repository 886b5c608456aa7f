"""Element-wise ops.

Cases:

1. Unary ops (activations, Cast, Identity, Dropout ...) pass the layout through.
2. Broadcasting ops (Add, Mul, Where, Sum ...): tracked inputs are aligned to the
   output rank (numpy rules). Tracked inputs on the same aligned axis are merged
   (residual Add: both sides lose the same channels); on different axes they are
   blocked. A tracked input one channel wide (a spatial attention map) broadcasts
   over the others: it is not merged, and its channel is kept. An untracked input
   that broadcasts (size 1 on that axis, if need be learnt from the runtime probe
   of static dims) is fine; a constant with the full channel count is coupled
   (sliced); any other tensor with those channels blocks the layout. A tracked
   input or the output of unknown rank blocks (the axes cannot be aligned).
3. PRelu: a per-channel slope is a broadcast constant, handled as in case 2.
"""

from __future__ import annotations

__all__ = ["BROADCAST_OPS", "UNARY_OPS", "BroadcastRule", "UnaryRule"]

import onnx_ir as ir

from onnxprune.analysis.context import AnalysisContext, describe
from onnxprune.analysis.registry import OpRule, register

UNARY_OPS = (
    "Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
    "Celu", "Gelu", "Softplus", "Softsign", "Mish", "Erf", "Exp", "Log", "Abs", "Neg",
    "Sqrt", "Reciprocal", "Sin", "Cos", "Floor", "Ceil", "Round", "Sign", "Not",
    "ThresholdedRelu", "Shrink", "IsNaN", "IsInf", "Identity", "Cast", "Dropout", "Clip",
    "Swish", "CastLike",
)
BROADCAST_OPS = (
    "Add", "Sub", "Mul", "Div", "Pow", "Min", "Max", "Mean", "Sum", "Where", "Equal",
    "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Mod", "PRelu",
    "BitwiseAnd", "BitwiseOr",
)


@register(*UNARY_OPS)
class UnaryRule(OpRule):
    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        ctx.pass_through(node)
        for extra in node.outputs[1:]:
            if extra.uses() or extra.is_graph_output():
                ctx.block_layout(node.inputs[0], f"{describe(node)}: extra output is used")


@register(*BROADCAST_OPS)
class BroadcastRule(OpRule):
    data_inputs = None

    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        out = node.outputs[0]
        out_rank = ctx.rank(out)
        tracked = [(i, ctx.layout(v)) for i, v in enumerate(node.inputs) if ctx.layout(v)]
        if not tracked:
            return
        if max(len(layout) for _, layout in tracked) > 1:
            tracked = self._broadcast_single(ctx, tracked)
        if out_rank is None:
            ctx.block_inputs(node, f"{describe(node)}: output rank unknown")
            return
        if any(ctx.rank(node.inputs[i]) is None for i, _ in tracked):
            ctx.block_inputs(node, f"{describe(node)}: input rank unknown")
            return
        aligned = {layout.axis + out_rank - ctx.rank(node.inputs[i]) for i, layout in tracked}
        if len(aligned) != 1:
            ctx.block_inputs(node, f"{describe(node)}: operands carry channels on different axes")
            return
        axis = aligned.pop()
        ref = tracked[0][1].ids
        for _, layout in tracked[1:]:
            ctx.union(ref, layout.ids, f"{describe(node)} merges channels")
        tracked_indices = {i for i, _ in tracked}
        for index, value in enumerate(node.inputs):
            if value is None or index in tracked_indices:
                continue
            if not self._other_operand(node, ctx, index, value, axis, out_rank, ref):
                return
        ctx.set_layout(out, axis, ref)

    @staticmethod
    def _broadcast_single(ctx, tracked):
        """Case 2: a tracked operand one channel wide broadcasts over the others; it is
        kept (a tensor of zero channels cannot broadcast) and handled as untracked."""
        for _, layout in tracked:
            if len(layout) == 1:
                ctx.require_nonempty(layout.ids)
        return [(i, layout) for i, layout in tracked if len(layout) > 1]

    @staticmethod
    def _other_operand(node, ctx, index, value, axis, out_rank, ref) -> bool:
        shape = ctx.shape(value)
        if shape is None:
            ctx.block(ref, f"{describe(node)}: operand '{value.name}' has unknown shape")
            return False
        local = axis - (out_rank - len(shape))
        if local >= 0 and shape[local] is None:
            shape = ctx.refined_shape(value)
        if local < 0 or shape[local] == 1:
            return True
        if ctx.is_param(value) and shape[local] == len(ref):
            ctx.couple(node, index, local, ref)
            return True
        ctx.block(ref, f"{describe(node)}: combined with '{value.name}', whose channels "
                       "cannot be sliced")
        return False
