"""Conv and ConvTranspose.

Cases (W is Conv's ``[C_out, C_in/g, k...]``, ConvTranspose's ``[C_in, C_out/g, k...]``):

1. ``group == 1``: the input layout is coupled to W's input axis; the output is a
   new source coupled to W's output axis and the bias.
2. Depthwise (``group == C_in``, ``C_out = m * C_in``): output channel ``o`` reads
   input ``o // m``, so the output layout is the input's ids repeated ``m`` times and
   ``group`` becomes the kept input count. Nothing new is prunable.
3. Grouped (``1 < group < C_in``): input and output are independent, but each must
   lose the same number of channels in every group (equal-blocks constraint); the
   per-group axis of W is sliced block by block.
4. W is not a constant initializer: the input layout is blocked, no source.
5. W (or the bias) is ``DequantizeLinear`` of a constant integer tensor (QDQ models):
   the integer tensor is sliced instead, with its per-channel scale and zero point
   (see :mod:`onnxprune.analysis.rules.quant`).
"""

from __future__ import annotations

__all__ = ["ConvRule", "ConvTransposeRule"]

import math

import numpy as np
import onnx_ir as ir

from onnxprune.analysis.context import AnalysisContext, describe
from onnxprune.analysis.registry import OpRule, register
from onnxprune.analysis.rules.common import attr_int, channel_first_ok
from onnxprune.analysis.rules.quant import couple_weight, weight_source


class _ConvBase(OpRule):
    #: axis of W holding the output channels (full count for ConvTranspose is g * dim)
    out_axis = 0
    in_axis = 1
    kind = "Conv output"

    def channels(self, w_shape: tuple[int, ...], group: int) -> tuple[int, int]:
        """(C_in, C_out) from the weight shape."""
        return w_shape[1] * group, w_shape[0]

    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        x = node.inputs[0]
        layout = ctx.layout(x)
        weight = weight_source(node, 1)
        if weight is None:
            ctx.block_layout(x, f"{describe(node)}: weight is not a constant initializer")
            return
        group = attr_int(node, "group", 1)
        c_in, c_out = self.channels(weight.shape, group)
        tracked = channel_first_ok(ctx, node, layout)
        y = node.outputs[0]
        if group > 1 and group == c_in:
            self._depthwise(node, ctx, weight, layout.ids if tracked else None, c_in, c_out)
            return
        if tracked:
            if len(layout) != c_in:
                ctx.block(layout.ids, f"{describe(node)}: input has {len(layout)} channels, "
                                      f"weight expects {c_in}")
            else:
                couple_weight(ctx, weight, self.in_axis, layout.ids,
                              groups=group if self.in_axis else 1, role="in")
                if group > 1:
                    ctx.equal_blocks(layout.ids, group, f"{describe(node)} has group={group}")
        ids = ctx.new_source(node, y, 1, c_out, self.kind)
        couple_weight(ctx, weight, self.out_axis, ids, groups=group if self.out_axis else 1,
                      role="out")
        _couple_bias(node, ctx, ids)
        if group > 1:
            ctx.equal_blocks(ids, group, f"{describe(node)} has group={group}")

    def _depthwise(self, node: ir.Node, ctx: AnalysisContext, weight, ids: np.ndarray | None,
                   c_in: int, c_out: int) -> None:
        if ids is None or c_out % c_in:
            return
        out_ids = np.repeat(ids, c_out // c_in)
        ctx.set_layout(node.outputs[0], 1, out_ids)
        # depthwise weights hold one row block per input channel on axis 0 in both ops
        couple_weight(ctx, weight, 0, out_ids if self.out_axis == 0 else ids, role="out")
        _couple_bias(node, ctx, out_ids)
        node.meta["onnxprune.depthwise"] = True

    def patch(self, node, ctx) -> None:
        if node.meta.get("onnxprune.depthwise"):
            kept = ctx.kept_count(node.inputs[0])
            node.attributes["group"] = ir.AttrInt64("group", kept)

    def macs(self, node, ctx) -> float:
        weight = weight_source(node, 1)
        if weight is None:
            return 0.0
        group = attr_int(node, "group", 1)
        kernel = math.prod(weight.shape[2:])
        c_in = ctx.kept_count(node.inputs[0], fallback=weight.shape[1] * group)
        if node.meta.get("onnxprune.depthwise"):
            group = max(c_in, 1)
        return self._macs(ctx, node, c_in, group, kernel)

    def _macs(self, ctx, node, c_in: int, group: int, kernel: int) -> float:
        return ctx.numel_kept(node.outputs[0]) * (c_in / group) * kernel


def _couple_bias(node: ir.Node, ctx: AnalysisContext, ids: np.ndarray) -> None:
    if len(node.inputs) < 3 or node.inputs[2] is None:
        return
    bias = weight_source(node, 2)
    if bias is None:
        ctx.block(ids, f"{describe(node)}: bias is not a constant")
    else:
        couple_weight(ctx, bias, 0, ids, role="bias")


@register("Conv")
class ConvRule(_ConvBase):
    pass


@register("ConvTranspose")
class ConvTransposeRule(_ConvBase):
    out_axis = 1
    in_axis = 0
    kind = "ConvTranspose output"

    def channels(self, w_shape, group):
        return w_shape[0], w_shape[1] * group

    def _macs(self, ctx, node, c_in, group, kernel):
        c_out = ctx.kept_count(node.outputs[0])
        return ctx.numel_kept(node.inputs[0]) * (c_out / group) * kernel
