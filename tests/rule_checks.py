"""Inspecting one analysis: the helpers of the per-rule unit tests (``tests/analysis/rules``).

``analyzed`` runs the analysis on a hand-built proto and fails the test when a rule
raised (the analysis turns an exception into a "rule failed" block: for a rule that
is always a bug). The other helpers read what the rules wrote into the
``AnalysisContext``: layouts by value name, couplings by node, block reasons by
source node, and the MACs a rule reports for a set of removed units.
"""

from __future__ import annotations

__all__ = ["analyzed", "block_reasons", "coupled", "group_of", "layout_ids", "macs",
           "node", "reasons", "removing", "source_ids"]

import numpy as np
import onnx
import onnx_ir as ir

from onnxprune.analysis import Analysis, analyze
from onnxprune.analysis.groups import Group
from onnxprune.analysis.keep import KeepView
from onnxprune.analysis.registry import lookup
from onnxprune.graph.shapes import infer_shapes
from tests.oracle import load


def analyzed(model: onnx.ModelProto, *, prune_hidden: bool = False,
             unknown_shapes: tuple[str, ...] = ()) -> Analysis:
    """The analysis of ``model``; asserts that no rule raised.

    ``unknown_shapes`` names values whose shape is erased after shape inference (what
    a rule sees when neither inference nor the runtime probe found it).
    """
    loaded = load(model)
    infer_shapes(loaded)
    for name in unknown_shapes:
        _value_in(loaded, name).shape = None
    analysis = analyze(loaded, shapes_done=True, prune_hidden=prune_hidden)
    failed = [reason for _, reason in analysis.ctx.blocks if "rule failed" in reason]
    assert not failed, f"a rule raised: {failed}"
    return analysis


def node(analysis: Analysis, name: str) -> ir.Node:
    return next(n for n in analysis.model.graph if n.name == name)


def _value(analysis: Analysis, name: str) -> ir.Value:
    return _value_in(analysis.model, name)


def _value_in(model: ir.Model, name: str) -> ir.Value:
    for n in model.graph:
        for v in (*n.inputs, *n.outputs):
            if v is not None and v.name == name:
                return v
    raise KeyError(name)


def layout_ids(analysis: Analysis, value: str) -> tuple[int, list[int]] | None:
    """``(axis, ids)`` of the layout on the value named ``value``, or ``None``."""
    layout = analysis.ctx.layout(_value(analysis, value))
    return None if layout is None else (layout.axis, [int(i) for i in layout.ids])


def source_ids(analysis: Analysis, node_name: str) -> list[int]:
    """Element ids of the source created by ``node_name``."""
    source = next(s for s in analysis.ctx.sources if s.node == node_name)
    return list(range(source.start, source.start + source.size))


def coupled(analysis: Analysis, node_name: str) -> dict[tuple[int, int], tuple[str, list[int]]]:
    """Couplings on the inputs of ``node_name``: ``(input, axis) -> (role, ids)``."""
    return {(c.input_index, c.axis): (c.role, [int(i) for i in c.ids])
            for c in analysis.ctx.couplings if c.node.name == node_name}


def group_of(analysis: Analysis, node_name: str) -> Group:
    return next(g for g in analysis.groups if any(s.node == node_name for s in g.sources))


def reasons(analysis: Analysis, node_name: str) -> str:
    """The block reasons of the group sourced by ``node_name``, joined."""
    return " | ".join(group_of(analysis, node_name).reasons)


def block_reasons(analysis: Analysis) -> str:
    """Every block reason the rules wrote, joined."""
    return " | ".join(reason for _, reason in analysis.ctx.blocks)


def removing(analysis: Analysis, source: str, count: int) -> np.ndarray:
    """Removed-unit mask that drops the first ``count`` units of ``source``'s group."""
    removed = np.zeros(analysis.num_units, dtype=bool)
    removed[group_of(analysis, source).units[:count]] = True
    return removed


def macs(analysis: Analysis, node_name: str, removed: np.ndarray | None = None) -> float:
    """MACs the rule of ``node_name`` reports with ``removed`` units gone."""
    n = node(analysis, node_name)
    rule = lookup(n.domain, n.op_type, analysis.ctx.opset)
    if removed is None:
        removed = np.zeros(analysis.num_units, dtype=bool)
    return rule.macs(n, KeepView(analysis, removed))
