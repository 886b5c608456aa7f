"""Small edits on ``onnx.GraphProto`` shared by the calibration and training layers.

Rules:

1. ``node_reads(node)``: the names a node reads: its inputs, plus the outer-scope
   names its subgraphs (If/Loop/Scan bodies, at any depth) read without defining them
   (main-graph initializers and tensors a branch uses directly).
2. ``ancestors(graph, names)``: every value name some of ``names`` depends on
   (the names themselves included), walking producers backwards through rule 1, so
   a tensor or initializer read only inside a branch stays alive.
3. ``graph_reads(graph)``: every name the nodes read (rule 1) or the graph outputs;
   derived graphs keep the initializers in it.
4. ``rename_reads(graph, renamed)``: readers of a renamed tensor read the new name,
   also inside subgraphs (outer-scope reads), so a derived graph stays valid.
5. ``set_static_batch``: the first dimension of every graph input that is not an
   initializer becomes ``batch`` (training graphs need a static batch).
"""

from __future__ import annotations

__all__ = ["ancestors", "graph_reads", "node_reads", "rename_reads", "set_static_batch"]

from collections.abc import Iterable, Iterator

import onnx


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def _outer_reads(graph: onnx.GraphProto) -> list[str]:
    """Names a subgraph reads that it does not define itself (rule 1)."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    defined |= {o for n in graph.node for o in n.output if o}
    reads = [name for n in graph.node for name in node_reads(n) if name]
    reads += [o.name for o in graph.output]
    return [name for name in dict.fromkeys(reads) if name not in defined]


def node_reads(node: onnx.NodeProto) -> list[str]:
    """Rule 1."""
    reads = [i for i in node.input if i]
    for graph in _subgraphs(node):
        reads.extend(_outer_reads(graph))
    return list(dict.fromkeys(reads))


def ancestors(graph: onnx.GraphProto, names: Iterable[str]) -> set[str]:
    """Rule 2."""
    producers = {out: node for node in graph.node for out in node.output if out}
    seen: set[str] = set()
    frontier = list(names)
    while frontier:
        name = frontier.pop()
        if name in seen:
            continue
        seen.add(name)
        node = producers.get(name)
        if node is not None:
            frontier.extend(node_reads(node))
    return seen


def graph_reads(graph: onnx.GraphProto) -> set[str]:
    """Rule 3."""
    return {name for node in graph.node for name in node_reads(node)} | {
        o.name for o in graph.output}


def rename_reads(graph: onnx.GraphProto, renamed: dict[str, str]) -> None:
    """Rule 4 (in place; a subgraph that defines a name itself keeps reading its own)."""
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
        for sub in _subgraphs(node):
            defined = {i.name for i in sub.input} | {t.name for t in sub.initializer} | {
                o for n in sub.node for o in n.output}
            inner = {k: v for k, v in renamed.items() if k not in defined}
            if inner:
                rename_reads(sub, inner)
                for out in sub.output:
                    if out.name in inner:
                        out.name = inner[out.name]


def set_static_batch(graph: onnx.GraphProto, batch: int, skip: set[str]) -> None:
    """Rule 5 (inputs named in ``skip``, e.g. initializers, are left alone)."""
    for value in graph.input:
        if value.name in skip:
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_value = batch
