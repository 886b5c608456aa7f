"""The part of a masked model that one group's masks can change, as a model of its own.

Rules:

1. The *suffix* of a set of changed names (a group's mask inputs) is every node of the
   main graph that reads, directly or through the outer-scope reads of its If/Loop/Scan
   bodies (:func:`onnxprune.graph.protos.node_reads`), a changed name or the output of
   a suffix node. Nodes are kept in graph (topological) order.
2. The suffix's *frontier* is every name its nodes read that no suffix node produces
   and that is not an initializer: graph inputs, mask inputs, and intermediate tensors
   of the unchanged prefix. The prefix computes those exactly as the unmasked baseline
   does, so they are read once per batch from the baseline run (extra outputs) and fed
   to the suffix.
3. The suffix model's outputs are the graph outputs its nodes produce; every other
   graph output equals the baseline's. Its initializers are those its nodes read.
   Inputs keep the graph input's declared type; a cached intermediate is declared with
   the element type and rank of its cached array (dims left to the runtime).
4. ``full=True`` keeps every node (the frontier is the graph inputs and masks): the
   full evaluation, same code path, for the equality test and the benchmark.
"""

from __future__ import annotations

__all__ = ["SuffixSpec", "suffix_model", "suffix_spec"]

import dataclasses
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import helper

from onnxprune.graph.protos import node_reads


@dataclasses.dataclass(frozen=True)
class SuffixSpec:
    """Which nodes form the suffix and what it reads and writes (rules 1-3)."""

    nodes: tuple[int, ...]
    cached: tuple[str, ...]  # frontier names the baseline run provides
    masks: tuple[str, ...]  # frontier names that are mask inputs
    outputs: tuple[str, ...]

    @property
    def frontier(self) -> tuple[str, ...]:
        return self.cached + self.masks


def suffix_spec(graph: onnx.GraphProto, changed: Iterable[str], masks: Iterable[str], *,
                full: bool = False) -> SuffixSpec:
    """Rules 1-4 for the names in ``changed`` (``masks``: every mask input's name)."""
    dirty = set(changed)
    kept: list[int] = []
    for index, node in enumerate(graph.node):
        if full or any(name in dirty for name in node_reads(node)):
            kept.append(index)
            dirty.update(o for o in node.output if o)
    produced = {o for i in kept for o in graph.node[i].output if o}
    constants = {t.name for t in graph.initializer} | {
        t.values.name for t in graph.sparse_initializer}
    reads = [name for i in kept for name in node_reads(graph.node[i])]
    frontier = [n for n in dict.fromkeys(reads) if n not in produced and n not in constants]
    outputs = [o.name for o in graph.output if o.name in produced]
    masks = set(masks)
    return SuffixSpec(tuple(kept), tuple(n for n in frontier if n not in masks),
                      tuple(n for n in frontier if n in masks), tuple(outputs))


def suffix_model(proto: onnx.ModelProto, spec: SuffixSpec,
                 examples: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The model of rule 3 (``examples``: one cached array per frontier intermediate)."""
    graph = proto.graph
    nodes = [graph.node[i] for i in spec.nodes]
    reads = {name for node in nodes for name in node_reads(node)}
    declared = {i.name: i for i in graph.input}
    inputs = []
    for name in spec.frontier:
        if name in declared:
            inputs.append(declared[name])
        else:
            example = np.asarray(examples[name])
            elem = helper.np_dtype_to_tensor_dtype(example.dtype)
            inputs.append(helper.make_tensor_value_info(name, elem, [None] * example.ndim))
    outputs = [o for o in graph.output if o.name in spec.outputs]
    sub = helper.make_graph(nodes, f"{graph.name}_suffix", inputs, outputs,
                            [t for t in graph.initializer if t.name in reads])
    sub.sparse_initializer.extend(t for t in graph.sparse_initializer
                                  if t.values.name in reads)
    produced = {o for node in nodes for o in node.output}
    sub.value_info.extend(v for v in graph.value_info if v.name in produced)
    model = onnx.ModelProto(ir_version=proto.ir_version, producer_name=proto.producer_name,
                            producer_version=proto.producer_version)
    model.opset_import.extend(proto.opset_import)
    model.functions.extend(proto.functions)
    model.graph.CopyFrom(sub)
    return model
