"""Run every node's rule over the graph and build the groups.

Rules:

1. Nodes are visited in topological order; each node's rule is looked up by
   domain, op type and the model's opset.
2. A node without a rule blocks every layout reaching it ("no rule for op X").
   A rule that raises blocks its inputs with the error as reason: analysis never
   crashes on a model.
3. Layouts on inputs a rule does not handle (``data_inputs``), on graph outputs
   and on values read inside subgraphs (If/Loop/Scan bodies) are blocked.
4. ``prune_hidden=True`` lets the rules prune the hidden (residual-stream) width of
   transformers: embedding tables become sources and normalisations over the
   hidden axis (LayerNormalization, ReduceMean) compute over the kept channels.
   Without it, a transformer-like model (LayerNormalization, a decomposed
   LayerNorm/RMSNorm chain found by :func:`onnxprune.graph.norms.find_norm_chains`, or
   a Gather from a 2-D initializer) is also analyzed with it, and every group that is
   blocked now but prunable then gets a first reason saying so (:data:`HIDDEN_HINT`);
   that analysis is kept as ``Analysis.hidden`` (the planner names ``--prune-hidden``
   when it would reach an unreachable target).
"""

from __future__ import annotations

__all__ = ["analyze"]

import logging

import onnx_ir as ir

import onnxprune.analysis.rules  # noqa: F401  (registers the rules)
from onnxprune.analysis.context import AnalysisContext, describe
from onnxprune.analysis.groups import Analysis, build_groups
from onnxprune.analysis.registry import lookup
from onnxprune.graph.norms import find_norm_chains
from onnxprune.graph.shapes import infer_shapes

logger = logging.getLogger(__name__)

HIDDEN_HINT = "hidden (residual-stream) width: prunable with --prune-hidden"


def analyze(model: ir.Model, *, shapes_done: bool = False,
            prune_hidden: bool = False) -> Analysis:
    """Build channel groups for ``model`` (shape inference runs first unless done)."""
    if not shapes_done:
        infer_shapes(model)
    ctx = AnalysisContext(model, prune_hidden=prune_hidden)
    captured = _subgraph_reads(model.graph)
    for node in model.graph:
        _visit(node, ctx)
        for out in node.outputs:
            if out in captured:
                ctx.block_layout(out, f"'{out.name}' is read inside a subgraph")
    for out in model.graph.outputs:
        ctx.block_layout(out, f"reaches graph output '{out.name}'")
    analysis = build_groups(ctx)
    if not prune_hidden and _transformer_like(model):
        analysis.hidden = analyze(model, shapes_done=True, prune_hidden=True)
        _hint_hidden(analysis, analysis.hidden)
    return analysis


def _transformer_like(model: ir.Model) -> bool:
    for node in model.graph:
        if node.op_type == "LayerNormalization":
            return True
        if node.op_type == "Gather" and node.inputs[0] is not None \
                and node.inputs[0].const_value is not None \
                and len(node.inputs[0].const_value.shape) == 2:
            return True
    imports = model.opset_imports
    return bool(find_norm_chains(model.graph, int(imports.get("", imports.get("ai.onnx", 0)))))


def _hint_hidden(analysis: Analysis, hidden: Analysis) -> None:
    """Rule 4: blocked groups whose sources are prunable with ``prune_hidden``."""
    prunable = {s.node for g in hidden.groups if g.prunable for s in g.sources}
    for group in analysis.groups:
        if not group.prunable and any(s.node in prunable for s in group.sources):
            group.reasons.insert(0, HIDDEN_HINT)


def _visit(node: ir.Node, ctx: AnalysisContext) -> None:
    tracked = [v for v in node.inputs if ctx.layout(v) is not None]
    if any(isinstance(a.value, ir.Graph) or _is_graph_list(a) for a in node.attributes.values()):
        ctx.block_inputs(node, f"{describe(node)} has subgraphs")
        return
    rule = lookup(node.domain, node.op_type, ctx.opset)
    if rule is None:
        if tracked:
            domain = f" (domain {node.domain})" if node.domain else ""
            ctx.block_inputs(node, f"no rule for op {node.op_type}{domain}")
        return
    try:
        rule.propagate(node, ctx)
    except Exception as exc:  # a rule bug must not take the analysis down
        logger.debug("rule for %s failed", describe(node), exc_info=True)
        ctx.block_inputs(node, f"{describe(node)}: rule failed ({type(exc).__name__}: {exc})")
        for out in node.outputs:
            ctx.layouts.pop(out, None)
        return
    if rule.data_inputs is not None:
        for index, value in enumerate(node.inputs):
            if index not in rule.data_inputs:
                ctx.block_layout(value, f"{describe(node)}: channels reach input {index}")


def _is_graph_list(attr: ir.Attr) -> bool:
    return attr.type == ir.AttributeType.GRAPHS


def _subgraph_reads(graph: ir.Graph) -> set[ir.Value]:
    """Values of ``graph`` read by nodes inside any nested subgraph."""
    reads: set[ir.Value] = set()
    for node in ir.traversal.RecursiveGraphIterator(graph):
        if node.graph is graph:
            continue
        reads.update(v for v in node.inputs if v is not None and v.graph is graph)
    return reads
