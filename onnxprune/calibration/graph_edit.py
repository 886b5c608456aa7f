"""Multiply named tensors of an ONNX graph by factors, rerouting their readers.

Rule: for every ``tensor -> factor`` pair a node ``tensor__<suffix> = Mul(tensor, factor)``
is inserted right after the tensor's producer (or first, for graph inputs), and every
node that read ``tensor`` reads the product instead, also inside If/Loop bodies
(outer-scope reads, ``graph.protos.rename_reads``). Graph outputs keep the original
tensor. Used for the masked-evaluation and gate-gradient models.
"""

from __future__ import annotations

__all__ = ["multiply_tensors"]

import onnx
from onnx import helper

from onnxprune.graph.protos import rename_reads


def multiply_tensors(graph: onnx.GraphProto, factors: dict[str, str], suffix: str) -> None:
    """Insert the Mul nodes of the module rule into ``graph`` in place."""
    renamed = {name: f"{name}__{suffix}" for name in factors}
    pending = dict(factors)

    def mul(name: str) -> onnx.NodeProto:
        return helper.make_node("Mul", [name, pending.pop(name)], [renamed[name]],
                                name=f"{renamed[name]}_mul")

    ordered = []
    produced = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    for name in list(pending):
        if name in produced:
            ordered.append(mul(name))
    rename_reads(graph, renamed)
    for node in graph.node:
        ordered.append(node)
        for out in node.output:
            if out in pending:
                ordered.append(mul(out))
    del graph.node[:]
    graph.node.extend(ordered)
