"""Recurrent ops: LSTM, GRU and RNN hidden units.

Weights (``D`` directions, ``G`` gates: 4 for LSTM, 3 for GRU, 1 for RNN, ``H`` hidden):
``W [D, G*H, I]``, ``R [D, G*H, H]``, ``B [D, 2*G*H]``, LSTM peepholes ``P [D, 3*H]``.

Cases:

1. The hidden units are a new source. Each unit owns one row in every gate block of
   W, R and B (the ids tiled ``G`` / ``2G`` times), one column of R (R couples the
   units to themselves: its input axis holds the same units), its peephole entries,
   and its position on the last axis of ``Y``, ``Y_h`` and ``Y_c``. Both directions
   of a bidirectional op share the units.
2. A layout on X's feature axis is coupled to W's input axis.
3. Initial states: absent, constant (sliced on the hidden axis), or zeros built at run
   time by ``ConstantOfShape``/``Expand`` from a shape whose hidden entry is a
   constant (patched, with ``hidden_size``); anything else blocks the units. The
   zeros may pass through Slice/Identity/Cast and may be shared by several layers
   (``ConstantOfShape([L*D, N, H])`` sliced per layer, as the torch exporters write
   a multi-layer RNN): the chain is copied for each layer before its hidden entry is
   patched, so every layer gets its own kept count.
4. R itself carries the layout on its input axis, so the masked twin of the oracle
   cuts the recurrence from removed units to kept ones, which is what removing
   them does.
5. W, R or B not constant initializers: the units are not created; a layout on X
   is blocked.
"""

from __future__ import annotations

__all__ = ["GRURule", "LSTMRule", "RNNRule"]

import numpy as np
import onnx_ir as ir

from onnxprune.analysis.context import AnalysisContext, describe
from onnxprune.analysis.registry import OpRule, register
from onnxprune.analysis.rules.common import attr_int
from onnxprune.analysis.rules.shape_tensors import constant_entry, patch_shape_entry

_STATE_INPUTS = (5, 6)  # initial_h, initial_c
_PASS_THROUGH = ("Slice", "Identity", "Cast")


class _RecurrentRule(OpRule):
    gates = 1
    kind = "RNN"
    data_inputs = (0, 2)  # R carries its own layout (case 4)

    def propagate(self, node: ir.Node, ctx: AnalysisContext) -> None:
        x, w, r = node.inputs[0], node.inputs[1], node.inputs[2]
        x_layout = ctx.layout(x)
        bias = node.inputs[3] if len(node.inputs) > 3 else None
        if not (ctx.is_param(w) and ctx.is_param(r)) or (bias is not None
                                                        and not ctx.is_param(bias)):
            ctx.block_layout(x, f"{describe(node)}: W, R and B must be constant initializers")
            return
        hidden = int(r.const_value.shape[-1])
        if x_layout is not None:
            if x_layout.axis != 2 or len(x_layout) != w.const_value.shape[2]:
                ctx.block(x_layout.ids, f"{describe(node)}: channels are not on the "
                                        "input feature axis")
            else:
                ctx.couple(node, 1, 2, x_layout.ids, role="in")
        ids = ctx.new_source(node, node.outputs[0], 3, hidden, f"{self.kind} hidden")
        ctx.couple(node, 1, 1, np.tile(ids, self.gates), role="out")
        ctx.couple(node, 2, 1, np.tile(ids, self.gates), role="out")
        ctx.couple(node, 2, 2, ids, role="in")
        ctx.set_layout(r, 2, ids)
        if bias is not None:
            ctx.couple(node, 3, 1, np.tile(ids, 2 * self.gates), role="bias")
        if len(node.inputs) > 7 and node.inputs[7] is not None:
            if ctx.is_param(node.inputs[7]):
                ctx.couple(node, 7, 1, np.tile(ids, 3), role="bias")
            else:
                ctx.block(ids, f"{describe(node)}: peepholes P are not constant")
        for out in node.outputs[1:]:
            ctx.set_layout(out, 2, ids)
        ctx.note_units(ids, self.kind, 1)
        self._states(node, ctx, ids, hidden)

    @staticmethod
    def _states(node: ir.Node, ctx: AnalysisContext, ids: np.ndarray, hidden: int) -> None:
        zeros: list[int] = []
        for index in _STATE_INPUTS:
            state = node.inputs[index] if len(node.inputs) > index else None
            if state is None:
                continue
            if ctx.is_param(state):
                ctx.couple(node, index, 2, ids, role="const")
                continue
            if _zeros_shape(state, hidden) is None:
                ctx.block(ids, f"{describe(node)}: initial state '{state.name}' is computed "
                               "at run time")
                return
            zeros.append(index)
        node.meta["onnxprune.state_inputs"] = zeros

    def patch(self, node, ctx) -> None:
        kept = ctx.kept_count(node.outputs[0], axis=3)
        if not ctx.changed(node.outputs[0]):
            return
        node.attributes["hidden_size"] = ir.AttrInt64("hidden_size", kept)
        hidden = len(ctx.layout(node.outputs[0]))
        for state_index in node.meta.get("onnxprune.state_inputs", []):
            producer, index = _private_zeros(ctx, node, state_index)
            patch_shape_entry(ctx, producer, index, 2, kept, only_if=hidden)

    def macs(self, node, ctx) -> float:
        w = node.inputs[1]
        if w is None or w.const_value is None:
            return 0.0
        directions, _, features = (int(d) for d in w.const_value.shape)
        hidden = ctx.kept_count(node.outputs[0], axis=3)
        inputs = ctx.kept_count(node.inputs[0], axis=2, fallback=features)
        shape = ctx.shape(node.inputs[0]) or (None,)
        steps = shape[1 if attr_int(node, "layout", 0) else 0] or 1
        return float(steps * directions * self.gates * hidden * (inputs + hidden))


def _zeros_shape(state: ir.Value, hidden: int) -> tuple[ir.Node, int] | None:
    """(node, shape input) of a ConstantOfShape/Expand of zeros with a constant hidden entry."""
    node = state.producer()
    while node is not None and node.op_type in _PASS_THROUGH:
        node = node.inputs[0].producer() if node.inputs[0] is not None else None
    if node is None or node.op_type not in ("ConstantOfShape", "Expand"):
        return None
    index = 0 if node.op_type == "ConstantOfShape" else 1
    if node.op_type == "Expand":
        fill = node.inputs[0].const_value if node.inputs[0] is not None else None
        if fill is None or np.any(fill.numpy()):
            return None
    else:
        value = node.attributes.get("value")
        if value is not None and np.any(value.value.numpy()):
            return None
    if constant_entry(node.inputs[index], 2) != hidden:
        return None
    return node, index


def _private_zeros(ctx, reader: ir.Node, input_index: int) -> tuple[ir.Node, int]:
    """Case 3: copy the zeros chain feeding ``reader``'s input wherever it is shared.

    Walks from the state input through Slice/Identity/Cast up to the
    ConstantOfShape/Expand; every node on the way whose output another node also reads
    is copied for ``reader`` (inserted after the original). Returns the (copied)
    ConstantOfShape/Expand and its shape input index.
    """
    consumer, index = reader, input_index
    while True:
        value = consumer.inputs[index]
        node = value.producer()
        if len(value.uses()) > 1:
            node = _copy_for(ctx, node, consumer, index)
        if node.op_type not in _PASS_THROUGH:
            return node, 0 if node.op_type == "ConstantOfShape" else 1
        consumer, index = node, 0


def _copy_for(ctx, node: ir.Node, consumer: ir.Node, index: int) -> ir.Node:
    """A copy of single-output ``node`` whose output only ``consumer`` (input ``index``) reads."""
    copy = ir.Node(node.domain, node.op_type, list(node.inputs),
                   list(node.attributes.values()), num_outputs=1,
                   name=ctx.fresh_name(node.name or node.op_type))
    out, original = copy.outputs[0], node.outputs[0]
    out.name = ctx.fresh_name(original.name or "state")
    out.shape, out.type = original.shape, original.type
    ctx.graph.insert_after(node, copy)
    consumer.replace_input_with(index, out)
    return copy


@register("LSTM")
class LSTMRule(_RecurrentRule):
    gates = 4
    kind = "LSTM"


@register("GRU")
class GRURule(_RecurrentRule):
    gates = 3
    kind = "GRU"


@register("RNN")
class RNNRule(_RecurrentRule):
    gates = 1
    kind = "RNN"
