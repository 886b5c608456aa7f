"""State shared by the per-op rules while channel layouts are propagated.

Vocabulary:

- An *element* is one channel produced by a *source* (a Conv's output channel, a
  Gemm's output feature ...). Elements are numbered globally; ``-1`` marks a
  position that can never be removed (a channel of a graph input, say).
- A *layout* says which element sits at each position of one axis of a tensor:
  ``Layout(axis=1, ids=[...])``. Flatten repeats ids, Concat concatenates them,
  Split slices them, Transpose moves the axis.
- A *union* says two layouts must lose the same channels (residual Add).
- A *coupling* ties an axis of an initializer to a layout: slicing the layout
  slices the initializer.
- A *block* marks elements that must not be removed, with the reason.
- An *equal-blocks constraint* (grouped conv) says each of several element sets
  must lose the same number of channels.
- A *non-empty set* (a source's channels, a Split/Slice part) must keep at least one
  of its channels: no layer is left with zero-sized tensors.
- A *unit note* describes what the units holding some elements are ("attention
  heads of 64"); reports read them.
- ``prune_hidden`` (an analysis option): the residual-stream width of transformers
  may be pruned; normalisations over it then use the kept channels only.
"""

from __future__ import annotations

__all__ = ["AnalysisContext", "Coupling", "EqualBlocks", "Layout", "Source", "UnitNote"]

import ast
import dataclasses

import numpy as np
import onnx_ir as ir

from onnxprune.graph.shapes import dims, probe_static_dims


@dataclasses.dataclass(frozen=True)
class Layout:
    axis: int
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


@dataclasses.dataclass(frozen=True)
class Source:
    node: str
    value: str
    kind: str
    start: int
    size: int
    scope: str = ""  # module path, e.g. "bert.encoder.layer.0.attention.self.query"


def node_scope(node: ir.Node) -> str:
    """The dotted module path of a node: the dynamo exporter's ``name_scopes``
    metadata, else the node name without its last component (TorchScript's
    ``/a/b/MatMul`` gives ``a.b``)."""
    scopes = node.metadata_props.get("pkg.torch.onnx.name_scopes")
    if scopes:
        try:
            paths = [str(e) for e in ast.literal_eval(scopes) if "." in str(e)]
        except (ValueError, SyntaxError):
            paths = []
        if paths:  # module paths are dotted; the last entries may be fx node names
            return paths[-1]
    name = (node.name or "").strip("/")
    return name.rsplit("/", 1)[0].replace("/", ".") if "/" in name else ""


@dataclasses.dataclass(frozen=True)
class Coupling:
    """Initializer ``value`` (input ``input_index`` of ``node``) sliced along ``axis`` by ``ids``.

    ``groups > 1`` means the axis is the per-group input axis of a grouped conv:
    row block ``k`` of axis 0 reads ids ``[k*n:(k+1)*n]`` where ``n = len(ids)//groups``.
    """

    node: ir.Node
    input_index: int
    value: ir.Value
    axis: int
    ids: np.ndarray
    groups: int = 1
    role: str = "const"

    @property
    def label(self) -> str:
        return f"{self.value.name}[axis {self.axis}]"


@dataclasses.dataclass(frozen=True)
class EqualBlocks:
    blocks: tuple[np.ndarray, ...]
    reason: str


@dataclasses.dataclass(frozen=True)
class UnitNote:
    """The units holding ``ids`` are ``kind`` (e.g. "attention heads"), ``size`` wide."""

    ids: np.ndarray
    kind: str
    size: int


class AnalysisContext:
    """Collects layouts, sources, unions, couplings and blocks for one graph."""

    def __init__(self, model: ir.Model, *, prune_hidden: bool = False) -> None:
        self.model = model
        self.prune_hidden = prune_hidden
        self.notes: list[UnitNote] = []
        self._refined: dict[str, tuple[int | None, ...]] | None = None
        self.opset = int(model.opset_imports.get("", model.opset_imports.get("ai.onnx", 0)))
        self.num_elements = 0
        self.sources: list[Source] = []
        self.layouts: dict[ir.Value, Layout] = {}
        self.unions: list[tuple[np.ndarray, np.ndarray]] = []
        self.couplings: list[Coupling] = []
        self.blocks: list[tuple[np.ndarray, str]] = []
        self.constraints: list[EqualBlocks] = []
        self.nonempty: list[np.ndarray] = []
        self.subgraph_captures: set[ir.Value] = set()

    # -- reading ---------------------------------------------------------------
    def layout(self, value: ir.Value | None) -> Layout | None:
        return None if value is None else self.layouts.get(value)

    def shape(self, value: ir.Value | None) -> tuple[int | None, ...] | None:
        return dims(value)

    def rank(self, value: ir.Value | None) -> int | None:
        shape = dims(value)
        return None if shape is None else len(shape)

    def refined_shape(self, value: ir.Value | None) -> tuple[int | None, ...] | None:
        """``shape`` with unknown dimensions that are static filled in by a runtime probe.

        The probe (two runs, see ``graph.shapes.probe_static_dims``) happens once per
        analysis, the first time a rule asks about a value with an unknown dimension.
        """
        shape = dims(value)
        if shape is None or all(d is not None for d in shape) or not value.name:
            return shape
        if self._refined is None:
            wanted = [out for node in self.model.graph for out in node.outputs
                      if out.name and (d := dims(out)) is not None and None in d]
            self._refined = probe_static_dims(self.model, wanted)
        refined = self._refined.get(value.name)
        if refined is None or len(refined) != len(shape):
            return shape
        return tuple(s if s is not None else r for s, r in zip(shape, refined))

    def const(self, value: ir.Value | None) -> np.ndarray | None:
        """The constant array behind ``value`` (initializer), else ``None``."""
        if value is None or value.const_value is None:
            return None
        return value.const_value.numpy()

    def is_param(self, value: ir.Value | None) -> bool:
        return value is not None and value.is_initializer() and value.const_value is not None

    # -- writing ---------------------------------------------------------------
    def new_source(self, node: ir.Node, value: ir.Value, axis: int, size: int,
                   kind: str) -> np.ndarray:
        start = self.num_elements
        self.num_elements += size
        self.sources.append(Source(node.name or node.op_type, value.name or "", kind, start, size,
                                   node_scope(node)))
        ids = np.arange(start, start + size, dtype=np.int64)
        self.set_layout(value, axis, ids)
        self.require_nonempty(ids)
        return ids

    def set_layout(self, value: ir.Value, axis: int, ids: np.ndarray) -> None:
        self.layouts[value] = Layout(int(axis), np.asarray(ids, dtype=np.int64))

    def union(self, a: np.ndarray, b: np.ndarray, reason: str) -> None:
        """Both layouts lose the same channels; a real id tied to -1 is blocked."""
        if len(a) != len(b):
            self.block(a, reason + " (length mismatch)")
            self.block(b, reason + " (length mismatch)")
            return
        fixed_a, fixed_b = a < 0, b < 0
        self.block(a[fixed_b & ~fixed_a], reason + ": tied to channels that cannot be removed")
        self.block(b[fixed_a & ~fixed_b], reason + ": tied to channels that cannot be removed")
        both = ~fixed_a & ~fixed_b
        if both.any():
            self.unions.append((a[both], b[both]))

    def block(self, ids: np.ndarray, reason: str) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        ids = ids[ids >= 0]
        if ids.size:
            self.blocks.append((ids, reason))

    def block_layout(self, value: ir.Value | None, reason: str) -> None:
        layout = self.layout(value)
        if layout is not None:
            self.block(layout.ids, reason)

    def block_inputs(self, node: ir.Node, reason: str) -> None:
        for value in node.inputs:
            self.block_layout(value, reason)

    def couple(self, node: ir.Node, input_index: int, axis: int, ids: np.ndarray,
               groups: int = 1, role: str = "const") -> None:
        """Tie ``axis`` of initializer input ``input_index`` to ``ids``.

        ``role`` tells importance criteria what the tensor is: ``out``/``in`` (weight
        axes of a layer), ``bias``, ``bn_scale``, ``norm`` or ``const``.
        """
        value = node.inputs[input_index]
        if value is None:
            return
        self.couplings.append(
            Coupling(node, input_index, value, axis, np.asarray(ids), groups, role))

    def note_units(self, ids: np.ndarray, kind: str, size: int) -> None:
        self.notes.append(UnitNote(np.asarray(ids, dtype=np.int64), kind, int(size)))

    def equal_blocks(self, ids: np.ndarray, count: int, reason: str) -> None:
        self.constraints.append(EqualBlocks(tuple(np.split(np.asarray(ids), count)), reason))

    def require_nonempty(self, ids: np.ndarray) -> None:
        """At least one of these positions must survive (a Split/Slice part: an empty
        tensor would leave its consumers with zero-sized inputs)."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids >= 0).all():
            self.nonempty.append(ids)

    def pass_through(self, node: ir.Node, source: int = 0, output: int = 0) -> None:
        layout = self.layout(node.inputs[source])
        if layout is not None and len(node.outputs) > output:
            self.set_layout(node.outputs[output], layout.axis, layout.ids)


def describe(node: ir.Node) -> str:
    return f"{node.op_type} '{node.name}'" if node.name else node.op_type
