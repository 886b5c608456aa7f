"""Parameter and MAC counts of a model, before and after removing units.

Rules:

1. Parameters are the elements of floating-point initializers and of quantized
   weights (integer initializers read by DequantizeLinear as input 0); the scales and
   zero points of QuantizeLinear/DequantizeLinear are not. A coupled axis counts its
   kept positions (a grouped-conv axis: kept positions / groups).
2. MACs are what each op's rule reports (Conv, ConvTranspose, Gemm, MatMul), per
   sample at the run's resolved input shapes (:mod:`onnxprune.graph.input_shapes`;
   ``graph.shapes.shapes_at_run``: batch 1, real spatial/sequence sizes). Without
   resolved shapes symbolic dimensions count as 1.
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
from onnxprune.graph import input_shapes
from onnxprune.graph.shapes import shapes_at_run

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
    """Params and MACs for any set of removed units.

    Evaluation is incremental: the model remembers the value of every cost term
    (one per coupled initializer, one per MAC-counting node) for the last removal
    set, and a new evaluation recomputes only the terms touching groups whose
    units changed. Planning and per-group reports evaluate many removal sets that
    differ in one or two groups, so this keeps them linear in model size.
    """

    def __init__(self, analysis: Analysis) -> None:
        self.analysis = analysis
        self.run_dims = run_dims(analysis)
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
        self._group_terms = self._index_terms()
        empty = np.zeros(analysis.num_units, dtype=bool)
        view = KeepView(analysis, empty, self.run_dims)
        self._last = empty
        self._param_values = np.array([self._param_term(i, view)
                                       for i in range(len(self._params))], dtype=np.float64)
        self._mac_values = np.array([float(rule.macs(node, view))
                                     for node, rule in self._mac_nodes], dtype=np.float64)
        self.original = self._total()

    # -- term bookkeeping --------------------------------------------------------------
    def _groups_of(self, ids: np.ndarray) -> set[int]:
        ids = ids[ids >= 0]
        if not ids.size:
            return set()
        units = self.analysis.element_unit[ids]
        return {int(g) for g in np.unique(self.analysis.unit_group[units])}

    def _index_terms(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        params: dict[int, list[int]] = {}
        macs: dict[int, list[int]] = {}
        for i, (_, couplings) in enumerate(self._params):
            for g in set().union(*(self._groups_of(c.ids) for c in couplings)):
                params.setdefault(g, []).append(i)
        ctx = self.analysis.ctx
        for j, (node, _) in enumerate(self._mac_nodes):
            touched: set[int] = set()
            for value in (*node.inputs, *node.outputs):
                layout = ctx.layout(value)
                if layout is not None:
                    touched |= self._groups_of(layout.ids)
            for g in touched:
                macs.setdefault(g, []).append(j)
        return {g: (np.array(params.get(g, []), dtype=np.int64),
                    np.array(macs.get(g, []), dtype=np.int64))
                for g in range(len(self.analysis.groups))}

    def _param_term(self, index: int, view: KeepView) -> float:
        shape, couplings = self._params[index]
        sizes = list(shape)
        for coupling in couplings:
            kept = int(view.keep_ids(coupling.ids).sum())
            sizes[coupling.axis] = kept // coupling.groups
        return float(math.prod(sizes))

    def _total(self) -> Cost:
        return Cost(int(self._fixed_params + self._param_values.sum()),
                    float(self._mac_values.sum()))

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self, removed_units: np.ndarray) -> Cost:
        changed = np.flatnonzero(removed_units != self._last)
        if not changed.size:
            return self._total()
        groups = np.unique(self.analysis.unit_group[changed])
        terms = [self._group_terms[int(g)] for g in groups]
        param_idx = np.unique(np.concatenate([t[0] for t in terms]))
        mac_idx = np.unique(np.concatenate([t[1] for t in terms]))
        view = KeepView(self.analysis, removed_units, self.run_dims)
        for i in param_idx:
            self._param_values[i] = self._param_term(int(i), view)
        for j in mac_idx:
            node, rule = self._mac_nodes[int(j)]
            self._mac_values[j] = float(rule.macs(node, view))
        self._last = removed_units.copy()
        return self._total()

    def reduction(self, removed_units: np.ndarray, metric: str) -> float:
        before = self.original.get(metric)
        return 0.0 if before == 0 else 1.0 - self.evaluate(removed_units).get(metric) / before


def run_dims(analysis: Analysis) -> dict[str, tuple[int, ...]]:
    """Concrete value shapes at the run's input shapes (rule 2), once per analysis and
    resolved shapes (planning builds several cost models of one analysis)."""
    resolved = input_shapes.current()
    if resolved is None:
        return {}
    cached = getattr(analysis, "_run_dims", None)
    if cached is None or cached[0] != resolved:
        cached = (resolved, shapes_at_run(analysis.model))
        analysis._run_dims = cached  # cached on the analysis it describes
    return cached[1]
