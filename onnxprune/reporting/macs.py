"""MACs per node, and per node before/after a compression (for reports).

Rules:

1. ``node_macs(model)`` lists every node whose rule counts MACs (Conv,
   ConvTranspose, Gemm, MatMul, ...) with the MACs per sample the cost model uses
   (``onnxprune.planning.cost`` rule 2: at the run's resolved input shapes), in graph
   order. A node without a name is
   called ``<op_type>#<position>``.
2. ``layer_macs(original, pruned)`` joins the two lists by node name (pruning keeps
   node names): ``[{"node", "op_type", "before", "after"}]`` in the original's order;
   a node missing from the pruned model has ``after = None``.
"""

from __future__ import annotations

__all__ = ["layer_macs", "node_macs"]

import os

import numpy as np
import onnx_ir as ir

from onnxprune.analysis import analyze
from onnxprune.analysis.keep import KeepView
from onnxprune.analysis.registry import lookup
from onnxprune.graph import load_model
from onnxprune.planning.cost import run_dims


def node_macs(model: str | os.PathLike[str] | ir.Model) -> list[dict]:
    """``[{"node", "op_type", "macs"}]`` for nodes that do multiply-accumulates (rule 1)."""
    loaded = model if isinstance(model, ir.Model) else load_model(model).model
    analysis = analyze(loaded)
    view = KeepView(analysis, np.zeros(analysis.num_units, dtype=bool), run_dims(analysis))
    rows = []
    for position, node in enumerate(analysis.model.graph):
        rule = lookup(node.domain, node.op_type, analysis.ctx.opset)
        if rule is None:
            continue
        macs = float(rule.macs(node, view))
        if macs:
            rows.append({"node": node.name or f"{node.op_type}#{position}",
                         "op_type": node.op_type, "macs": macs})
    return rows


def layer_macs(original: str | os.PathLike[str], pruned: str | os.PathLike[str]) -> list[dict]:
    """Per-node MACs before and after (rule 2); put under ``report["layer_macs"]``."""
    after = {row["node"]: row["macs"] for row in node_macs(pruned)}
    return [{"node": row["node"], "op_type": row["op_type"], "before": row["macs"],
             "after": after.get(row["node"])} for row in node_macs(original)]
