"""The layers whose inputs lose channels, in a canonical form recovery can refit.

A *consumer* is a node whose weight has an ``in`` coupling with removed positions.
Supported cases (others are left alone and listed with the reason):

1. ``Conv`` with ``group == 1``: ``W[O, C, k...]``, the input's channel axis.
2. ``Gemm`` with ``transA == 0``: ``Y = alpha * A @ B + beta * C``; ``B`` is read as
   ``[K, N]`` (transposed back when ``transB``); ``C`` must be absent, a scalar or a
   per-output vector.
3. ``MatMul`` with a 2-D ``[K, N]`` weight, channels on the last axis of ``A``.

Grouped/depthwise convolutions and ConvTranspose are not refitted.
"""

from __future__ import annotations

__all__ = ["Consumer", "find_consumers"]

import dataclasses
import logging

import numpy as np
import onnx_ir as ir

from onnxprune.analysis.context import describe
from onnxprune.analysis.groups import Analysis
from onnxprune.analysis.keep import KeepView
from onnxprune.analysis.rules.common import attr_int

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Consumer:
    node: ir.Node
    kind: str                  # conv | gemm | matmul
    weight: np.ndarray         # original effective weight: conv [O, C, k...], else [K, N]
    bias: np.ndarray | None    # original effective per-output bias, or None
    # (Gemm: alpha * B as [K, N] and beta * C broadcast to N)
    in_keep: np.ndarray        # bool over the weight's input positions
    out_keep: np.ndarray       # bool over the weight's output positions
    layout_axis: int           # channel axis of the data input

    @property
    def name(self) -> str:
        return describe(self.node)

    @property
    def data(self) -> ir.Value:
        return self.node.inputs[0]

    @property
    def output(self) -> ir.Value:
        return self.node.outputs[0]


def _gemm_bias(node: ir.Node, n: int) -> tuple[bool, np.ndarray | None]:
    if len(node.inputs) < 3 or node.inputs[2] is None:
        return True, None
    value = node.inputs[2]
    if value.const_value is None:
        return False, None
    c = value.const_value.numpy()
    if c.size in (1, n) and (c.ndim <= 1 or (c.ndim == 2 and c.shape[0] == 1)):
        return True, np.broadcast_to(c.reshape(-1), (n,)).astype(np.float64)
    return False, None


def _attr(node: ir.Node, name: str) -> float:
    attr = node.attributes.get(name)
    return 1.0 if attr is None else float(attr.value)


def _canonical(analysis: Analysis, node: ir.Node, weight: np.ndarray,
               ) -> tuple[str, np.ndarray, np.ndarray | None] | str:
    """(kind, canonical weight, bias) or the reason the node is not refitted."""
    if node.op_type == "Conv":
        if attr_int(node, "group", 1) != 1:
            return "grouped convolution"
        bias = None
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            if node.inputs[2].const_value is None:
                return "bias is not a constant"
            bias = node.inputs[2].const_value.numpy().astype(np.float64)
        return "conv", weight, bias
    if node.op_type == "Gemm":
        if attr_int(node, "transA", 0):
            return "transA=1"
        canonical = (weight.T if attr_int(node, "transB", 0) else weight) * _attr(node, "alpha")
        ok, bias = _gemm_bias(node, canonical.shape[1])
        if not ok:
            return "bias C is neither a scalar nor a per-output vector"
        return "gemm", canonical, None if bias is None else bias * _attr(node, "beta")
    if node.op_type == "MatMul" and weight.ndim == 2:
        layout = analysis.ctx.layout(node.inputs[0])
        rank = analysis.ctx.rank(node.inputs[0])
        if layout is None or rank is None or layout.axis != rank - 1:
            return "channels are not on the last axis"
        return "matmul", weight, None
    return f"op {node.op_type} is not refitted"


def find_consumers(analysis: Analysis, removed_units: np.ndarray,
                   ) -> tuple[list[Consumer], list[str]]:
    """Consumers losing input channels, in graph order, and notes on skipped ones."""
    view = KeepView(analysis, removed_units)
    outs = {id(c.node): c for c in analysis.ctx.couplings if c.role == "out"}
    order = {id(n): i for i, n in enumerate(analysis.model.graph)}
    found, notes = [], []
    for coupling in analysis.ctx.couplings:
        if coupling.role != "in":
            continue
        in_keep = view.keep_ids(coupling.ids)
        if in_keep.all():
            continue
        node = coupling.node
        weight = coupling.value.const_value.numpy().astype(np.float64)
        result = _canonical(analysis, node, weight)
        if isinstance(result, str) or coupling.groups != 1:
            notes.append(f"{describe(node)}: not refitted "
                         f"({result if isinstance(result, str) else 'grouped'})")
            continue
        kind, canonical, bias = result
        out = outs.get(id(node))
        n_out = canonical.shape[0] if kind == "conv" else canonical.shape[1]
        out_keep = view.keep_ids(out.ids) if out is not None else np.ones(n_out, dtype=bool)
        layout = analysis.ctx.layout(node.inputs[0])
        found.append(Consumer(node, kind, canonical, bias, in_keep, out_keep, layout.axis))
    found.sort(key=lambda c: order.get(id(c.node), 0))
    return found, notes
