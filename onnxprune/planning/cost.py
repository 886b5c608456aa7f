"""Parameter and MAC counts of a model, before and after removing units.

Rules:

1. Parameters are the elements of floating-point initializers and of quantized
   weights (integer initializers read by DequantizeLinear as input 0); the scales and
   zero points of QuantizeLinear/DequantizeLinear are not. A coupled axis counts its
   kept positions (a grouped-conv axis: kept positions / groups).
2. MACs are what each op's rule reports (Conv, ConvTranspose, Gemm, MatMul);
   symbolic dimensions count as 1, i.e. MACs are per sample.
"""

from __future__ import annotations

__all__ = ["Cost", "CostContext", "CostModel"]

import dataclasses
import math

import numpy as np
import onnx_ir as ir

from onnxprune.analysis.groups import Analysis
from onnxprune.analysis.keep import KeepView
from onnxprune.analysis.registry import lookup

CostContext = KeepView

_FLOAT_TYPES = {ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.BFLOAT16, ir.DataType.DOUBLE}


@dataclasses.dataclass(frozen=True)
class Cost:
    params: int
    macs: float

    def get(self, metric: str) -> float:
        return float(self.params if metric == "params" else self.macs)


def _is_param(value: ir.Value) -> bool:
    """Rule 1: float initializers and quantized weights, without quantization params."""
    uses = [(node.op_type, index) for node, index in value.uses()]
    if any(op == "DequantizeLinear" and index == 0 for op, index in uses):
        return True
    if uses and all(op in ("QuantizeLinear", "DequantizeLinear") for op, _ in uses):
        return False
    return value.const_value.dtype in _FLOAT_TYPES


class CostModel:
    def __init__(self, analysis: Analysis) -> None:
        self.analysis = analysis
        self._params: list[tuple[tuple[int, ...], list]] = []
        self._fixed_params = 0
        by_value: dict[ir.Value, list] = {}
        for coupling in analysis.ctx.couplings:
            by_value.setdefault(coupling.value, []).append(coupling)
        for value in analysis.model.graph.initializers.values():
            tensor = value.const_value
            if tensor is None or not _is_param(value):
                continue
            shape = tuple(int(d) for d in tensor.shape)
            if value in by_value:
                self._params.append((shape, by_value[value]))
            else:
                self._fixed_params += math.prod(shape)
        opset = analysis.ctx.opset
        self._mac_nodes = [
            (node, rule) for node in analysis.model.graph
            if (rule := lookup(node.domain, node.op_type, opset)) is not None
        ]
        self.original = self.evaluate(np.zeros(analysis.num_units, dtype=bool))

    def evaluate(self, removed_units: np.ndarray) -> Cost:
        view = KeepView(self.analysis, removed_units)
        params = self._fixed_params
        for shape, couplings in self._params:
            sizes = list(shape)
            for coupling in couplings:
                kept = int(view.keep_ids(coupling.ids).sum())
                sizes[coupling.axis] = kept // coupling.groups
            params += math.prod(sizes)
        macs = sum(rule.macs(node, view) for node, rule in self._mac_nodes)
        return Cost(int(params), float(macs))

    def reduction(self, removed_units: np.ndarray, metric: str) -> float:
        before = self.original.get(metric)
        return 0.0 if before == 0 else 1.0 - self.evaluate(removed_units).get(metric) / before
