"""Canonical form of a loaded graph: constant subexpressions folded, dead nodes removed.

Exporters hide weights behind small constant computations (Paddle2ONNX writes every
conv bias as ``Add(conv, Reshape(bias, [1, C, 1, 1]))``, the dynamo exporter feeds an
LSTM's W/R/B through ``Slice``/``Concat`` of initializers, old converters build
weights with ``ConstantOfShape`` and arithmetic). The analysis only sees plain
initializers, so every model is brought into one form first, with onnxscript's
constant folder (:class:`onnxscript.optimizer.FoldConstantsPass`) and onnx-ir's
dead-code pass.

Rules:

1. A main-graph node whose inputs are all constants (initializers) is evaluated and
   replaced by one initializer named like its output: Reshape, Unsqueeze, Squeeze,
   Transpose, Slice, Concat, Gather, Cast, arithmetic, Identity, and
   ``ConstantOfShape``, provided that
   a. no input is a graph input, none of its outputs is a graph output (the
      signature stays as it was);
   b. no input lives in external data (folding would load it: the bounded-memory
      path of large models stays intact);
   c. its inputs (for ``ConstantOfShape``: its output) hold at most
      :data:`FOLD_BYTES`, and its output at most :data:`FOLD_BYTES` / 4 elements;
   d. it is no control-flow node and no node inside a subgraph;
   e. it is no (De)QuantizeLinear: ``DequantizeLinear(int8 weight)`` is how a QDQ
      model stores its weights, and folding it would turn them back into floats.
   Nodes with several outputs (``Split`` of a weight into gate blocks), which
   onnxscript's folder leaves alone, are evaluated with ONNX's reference
   implementation under the same conditions, each output becoming an initializer.
2. Static shape computations (``Shape``, ``Size`` of a tensor whose shape is
   proved static) fold too. The proof comes from node-by-node shape inference
   from the graph inputs only: shapes the file declares for intermediate values are
   set aside while folding (and restored after), and input dims that are unknown,
   ``<= 0`` or ``'?'`` count as dynamic, so nothing that depends on a dynamic input
   dim is ever folded.
3. Nodes none of whose outputs reach a graph output are removed, and so are
   initializers nothing reads.
4. Decomposed LayerNorm chains are fused into ``LayerNormalization`` at opset >= 17
   (:mod:`onnxprune.graph.norms`); RMSNorm chains and older opsets keep the chain,
   which the analysis recognises as one pattern.
5. Graph inputs and outputs keep their names, dtypes and declared shapes (dynamic
   axes included).

:func:`canonicalize` returns a :class:`Canonicalization` with what it did; its
``notes()`` are the lines shown by ``analyze`` and written to the report.
"""

from __future__ import annotations

__all__ = ["FOLD_BYTES", "Canonicalization", "canonicalize"]

import collections
import contextlib
import dataclasses
import logging

import onnx_ir as ir
from onnx_ir.passes.common import LiftConstantsToInitializersPass, RemoveUnusedNodesPass

from onnxprune.graph.norms import fuse_layer_norms

logger = logging.getLogger(__name__)

FOLD_BYTES = 64 * 2**20
_FOLDED_FROM = "pkg.onnxscript.optimizer.folded_from"
_FUSED_OP = {"LayerNorm": "LayerNormalization"}
_KEEP = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})  # rule 1e


@dataclasses.dataclass
class Canonicalization:
    """What canonicalization changed: folded op types, dead nodes, fused norms."""

    folded: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    removed: int = 0
    fused: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    @property
    def modified(self) -> bool:
        return bool(self.folded or self.removed or self.fused)

    def notes(self) -> list[str]:
        notes = []
        if self.folded:
            kinds = ", ".join(f"{op} x{n}" for op, n in self.folded.most_common())
            notes.append(f"folded {sum(self.folded.values())} constant subexpressions ({kinds})")
        if self.removed:
            notes.append(f"removed {self.removed} dead nodes")
        for kind, count in sorted(self.fused.items()):
            notes.append(f"fused {count} decomposed {kind} chain(s) into {_FUSED_OP[kind]}")
        return notes

    def to_dict(self) -> dict:
        return {"folded": dict(self.folded), "removed": self.removed, "fused": dict(self.fused)}


def canonicalize(model: ir.Model) -> Canonicalization:
    """Apply rules 1-5 to ``model`` in place; return what changed."""
    done = Canonicalization()
    signature = _Signature(model.graph)
    declared = _set_aside_declared_shapes(model.graph)
    try:
        done.folded = _fold(model)
    finally:
        _restore_declared_shapes(declared)
        signature.restore()
    fused = fuse_layer_norms(model, _opset(model))
    if fused:
        done.fused["LayerNorm"] = fused
    done.removed = _remove_dead(model)
    _drop_folding_metadata(model.graph)
    return done


def _fold(model: ir.Model) -> collections.Counter:
    """Rules 1-2: fold until nothing changes (at most three sweeps)."""
    before = list(model.graph)  # held, so no id of a replaced node is reused
    with _quiet_folder():
        _sweep(model)
    after = {id(node) for node in model.graph}
    return collections.Counter(node.op_type for node in before if id(node) not in after)


def _sweep(model: ir.Model) -> None:
    from onnxscript.optimizer import fold_constants

    for _ in range(3):
        result = fold_constants(model, onnx_shape_inference=True,
                                input_size_limit=FOLD_BYTES, output_size_limit=FOLD_BYTES // 4,
                                should_fold=lambda node: _should_fold(node, model.graph))
        LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)
        split = _fold_multi_output(model)
        if not (result.modified or split):
            break


@contextlib.contextmanager
def _quiet_folder():
    """The folder's own notices ("Skipping constant folding for op Split ...") are
    details of how it decides, not warnings for the user: shown only at debug level."""
    folder = logging.getLogger("onnxscript.optimizer._constant_folding")
    level = folder.level
    if not logger.isEnabledFor(logging.DEBUG):
        folder.setLevel(logging.ERROR)
    try:
        yield
    finally:
        folder.setLevel(level)


def _opset(model: ir.Model) -> int:
    imports = model.opset_imports
    return int(imports.get("", imports.get("ai.onnx", 0)))


def _should_fold(node: ir.Node, main: ir.Graph) -> bool | None:
    """Rule 1's conditions a-d (False: keep the node; True: fold it)."""
    if node.graph is not main or any(out.is_graph_output() for out in node.outputs):
        return False
    inputs = [v for v in node.inputs if v is not None]
    if node.op_type in _KEEP or any(isinstance(v.const_value, ir.ExternalTensor) for v in inputs):
        return False
    if node.op_type == "ConstantOfShape" and node.domain in ("", "ai.onnx"):
        return _constant_of_shape_bytes(node) <= FOLD_BYTES
    nbytes = sum(v.const_value.nbytes for v in inputs if v.const_value is not None)
    return nbytes <= FOLD_BYTES


def _fold_multi_output(model: ir.Model) -> int:
    """Rule 1, nodes with several outputs: evaluate and replace by initializers."""
    graph, count = model.graph, 0
    for node in list(graph):
        if len(node.outputs) < 2 or node.domain not in ("", "ai.onnx") \
                or any(v is not None and v.const_value is None for v in node.inputs) \
                or not _should_fold(node, graph):
            continue
        arrays = _evaluate(node, _opset(model))
        if arrays is None or len(arrays) != len(node.outputs):
            continue
        for out, array in zip(node.outputs, arrays):
            value = ir.Value(name=out.name, shape=ir.Shape(array.shape), type=out.type,
                             const_value=ir.tensor(array, name=out.name))
            out.replace_all_uses_with(value)
            out.name = None
            graph.register_initializer(value)
        graph.remove(node, safe=True)
        count += 1
    return count


def _evaluate(node: ir.Node, opset: int) -> tuple | None:
    import onnx.reference.ops

    try:
        kernel = onnx.reference.ops.load_op("", node.op_type, opset)
        attrs = {name: ir.serde.serialize_tensor(a.value) if a.type == ir.AttributeType.TENSOR
                 else a.value for name, a in node.attributes.items()}
        arrays = [None if v is None else v.const_value.numpy() for v in node.inputs]
        result = kernel.eval(*arrays, **attrs)
    except Exception as exc:  # no reference kernel, or it rejects the inputs
        logger.debug("not folding %s: %s", node.name, exc)
        return None
    return tuple(result) if isinstance(result, (tuple, list)) else None


def _constant_of_shape_bytes(node: ir.Node) -> int:
    shape_value = node.inputs[0].const_value if node.inputs and node.inputs[0] else None
    if shape_value is None:
        return FOLD_BYTES + 1
    count = 1
    for dim in shape_value.numpy().reshape(-1).tolist():
        count *= max(int(dim), 0)
    value = node.attributes.get("value")
    itemsize = value.as_tensor().dtype.itemsize if value is not None else 4
    return count * itemsize


def _remove_dead(model: ir.Model) -> int:
    """Rule 3: count nodes removed (initializers dropped silently)."""
    before = len(model.graph)
    RemoveUnusedNodesPass()(model)
    return before - len(model.graph)


class _Signature:
    """Rule 5: graph inputs/outputs as declared, restored after folding.

    Input dims that are ``<= 0`` are replaced by symbolic dims while folding, so
    that shape folding treats them as dynamic (rule 2)."""

    def __init__(self, graph: ir.Graph) -> None:
        self.graph = graph
        self.inputs = [(v, v.shape, v.type) for v in graph.inputs]
        self.outputs = [(v.name, v.shape, v.type) for v in graph.outputs]
        for value in graph.inputs:
            if value.shape is not None and any(_unknown(d) for d in value.shape):
                value.shape = ir.Shape([ir.SymbolicDim(None) if _unknown(d) else d
                                        for d in value.shape])

    def restore(self) -> None:
        for value, shape, kind in self.inputs:
            value.shape, value.type = shape, kind
        for value, (name, shape, kind) in zip(self.graph.outputs, self.outputs):
            value.name = name
            value.shape, value.type = shape, kind


def _unknown(dim: object) -> bool:
    return isinstance(dim, int) and dim <= 0


def _set_aside_declared_shapes(graph: ir.Graph) -> list[tuple[ir.Value, object]]:
    """Rule 2: forget the shapes declared for intermediate values while folding."""
    kept = []
    outputs = set(graph.outputs)
    for node in graph:
        for value in node.outputs:
            if value.shape is not None and value not in outputs:
                kept.append((value, value.shape))
                value.shape = None
    return kept


def _restore_declared_shapes(kept: list[tuple[ir.Value, object]]) -> None:
    for value, shape in kept:
        if value.const_value is None and value.producer() is not None:
            value.shape = shape


def _drop_folding_metadata(graph: ir.Graph) -> None:
    for value in graph.initializers.values():
        value.metadata_props.pop(_FOLDED_FROM, None)
        value.meta.pop(_FOLDED_FROM, None)
