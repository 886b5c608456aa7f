"""Rewrite a model into a form ONNX Runtime 1.19 (CPU) can differentiate, exactly.

ORT's training graph builder lacks gradients for some inference ops, and computes
wrong gradients for ``Conv`` with ``auto_pad=SAME_*`` (see
docs/finetune.md). :func:`legalize` returns a copy in which:

0. A model below opset :data:`TRAINING_OPSET` is converted up to it first
   (``onnx.version_converter``): ORT 1.19's gradient builders emit nodes that older
   opsets lack (``LessOrEqual`` for Clip before opset 12, ``Gemm`` without ``C`` before
   opset 11), so such a training graph does not build at all. The conversion is used
   only when it runs and equals the model on the probe batch; else the model keeps its
   opset (and the ``Clip`` rule of :mod:`legal_pointwise` still makes Clip train). The
   exported inference model keeps the original opset (only weights map back). An IR < 4
   model (initializers listed as graph inputs) becomes IR 7 without those inputs.
1. Every graph input has the static shape of the probe batch: the training batch
   and every other dim (a symbolic width or sequence length too), and ``value_info``
   is dropped. ORT 1.19's pool gradients (``MaxPoolGrad``, ``AveragePoolGrad``) take
   their output shape from the graph's static shapes when the kernel is created, so a
   symbolic dim becomes 0 there: SIGFPE in AveragePool, or a ``Broadcaster`` error
   ("Can broadcast 0 by 0 or 1") in the gradient after a MaxPool. The rewritten graph
   is specialized to the probed shapes anyway (rule 3, unrolled recurrences), and
   training batches all have one shape (they are concatenated).
2. Each node whose op has a rule in :data:`RULES` (:mod:`legal_pointwise`,
   :mod:`legal_spatial`) is replaced by the rule's differentiable nodes computing the
   same outputs. Rules keep the original initializers as inputs (names unchanged), so
   trained values map back onto the original graph one to one; weight transforms are
   graph ops.
3. Shape-dependent replacements (explicit pads, reshapes, interpolation matrices)
   use shapes and small values probed with one ONNX Runtime run on a real batch, and
   are checked locally: the replacement and the original node run on the probed
   inputs and must agree to ``1e-5`` relative, else the node is frozen instead.
4. A node that has no gradient and no rule, or whose rule declines (returns a
   reason), or that ORT rejects when the training model is built (``extra_frozen``,
   retried by :mod:`onnxprune.training.trainer`), is *frozen*: every initializer it
   depends on is excluded from training, so no gradient has to flow through it. The
   reason is recorded and logged as a warning naming the node.
5. Nodes that no longer reach a graph output (e.g. the shape arithmetic of a
   replaced Resize) are removed.

The result (:class:`Legalized`) runs as an inference model at the training batch
and equals the original there; :mod:`onnxprune.training.trainer` checks this on a
batch before training.
"""

from __future__ import annotations

__all__ = ["NO_GRADIENT", "TRAINING_OPSET", "Legalized", "NodeBuilder", "legalize",
           "max_relative_diff", "rule"]

import dataclasses
import logging
import math
from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxprune.graph.protos import ancestors, graph_reads, set_static_batch

logger = logging.getLogger(__name__)

# ops ONNX Runtime 1.19 (CPU) cannot differentiate and no rule handles (rule 4);
# ops with a rule are tried first. Probed on this runtime, see docs/finetune.md.
NO_GRADIENT = frozenset({
    "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceLogSum", "ReduceSumSquare",
    "GlobalLpPool", "LpPool", "LpNormalization", "Einsum", "Upsample", "Round", "Floor",
    "Ceil", "Mod", "Hardmax", "Shrink", "LRN", "MeanVarianceNormalization", "GridSample",
    "RoiAlign", "CumSum", "ReverseSequence", "Col2Im", "ConvInteger", "DeformConv",
    "ConvTranspose", "Resize", "Pad", "DepthToSpace", "SpaceToDepth", "GlobalMaxPool",
    "InstanceNormalization", "GroupNormalization", "HardSigmoid", "HardSwish", "Elu", "Selu",
    "Celu", "Softplus", "Softsign", "PRelu", "Mish", "ThresholdedRelu", "Sum", "Mean",
})

TRAINING_OPSET = 13  # rule 0: the lowest opset the training graph is built at

Rule = Callable[["NodeBuilder"], "list[onnx.NodeProto] | str | None"]


@dataclasses.dataclass(frozen=True)
class _Entry:
    func: Rule
    shapes: bool
    when: Callable[[onnx.NodeProto, dict], bool] | None

    def probes(self, node: onnx.NodeProto, options: dict) -> bool:
        return self.shapes and (self.when is None or self.when(node, options))


RULES: dict[str, _Entry] = {}


def rule(*op_types: str, shapes: bool = False,
         when: Callable[[onnx.NodeProto, dict], bool] | None = None,
         ) -> Callable[[Rule], Rule]:
    """Register a legalization rule; ``shapes=True``: it needs probed shapes (rule 3),
    for the nodes ``when(node, options)`` accepts (all by default).

    A rule returns the replacement nodes, ``None`` (keep the node), or a string: the
    reason it cannot rewrite this node (the node is then frozen).
    """

    def register(func: Rule) -> Rule:
        for op_type in op_types:
            RULES[op_type] = _Entry(func, shapes, when)
        return func

    return register


class NodeBuilder:
    """What a rule sees: the node, its attributes, probed facts, and node factories."""

    def __init__(self, node: onnx.NodeProto, index: int, opset: int,
                 inits: dict[str, np.ndarray], probed: dict[str, np.ndarray],
                 options: dict | None = None) -> None:
        self.node, self.opset, self.inits, self.probed = node, opset, inits, probed
        self.options = options or {}
        self.attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        self.prefix = f"onnxprune_lg{index}"
        self.nodes: list[onnx.NodeProto] = []
        self.new_inits: list[onnx.TensorProto] = []
        self._count = 0

    # -- facts -------------------------------------------------------------------------
    @property
    def x(self) -> str:
        return self.node.input[0]

    @property
    def out(self) -> str:
        return self.node.output[0]

    def input(self, index: int) -> str:
        return self.node.input[index] if len(self.node.input) > index else ""

    def attr(self, name: str, default=None):
        value = self.attrs.get(name, default)
        return value.decode() if isinstance(value, bytes) else value

    def shape(self, name: str) -> tuple[int, ...] | None:
        value = self.value(name)
        return None if value is None else tuple(value.shape)

    def value(self, name: str) -> np.ndarray | None:
        """A constant or probed value (initializer, or the probe run's result)."""
        if name in self.inits:
            return self.inits[name]
        return self.probed.get(name)

    # -- factories ---------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}_{hint}{self._count}"

    def const(self, value, dtype=np.float32, hint: str = "c") -> str:
        name = self.fresh(hint)
        self.new_inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def ints(self, values) -> str:
        return self.const(np.asarray(values, dtype=np.int64), np.int64, "i")

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        out = out or self.fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"{out}_node", **attrs))
        return out

    def reduce_mean(self, x: str, axes: list[int], out: str | None = None) -> str:
        if self.opset >= 18:
            return self.op("ReduceMean", [x, self.ints(axes)], out, keepdims=1)
        return self.op("ReduceMean", [x], out, axes=axes, keepdims=1)

    def reshape(self, x: str, shape, out: str | None = None) -> str:
        return self.op("Reshape", [x, self.ints(list(shape))], out)

    def done(self) -> list[onnx.NodeProto]:
        return self.nodes


@dataclasses.dataclass
class Legalized:
    """The rewritten model, what was rewritten, and what is frozen and why."""

    model: onnx.ModelProto
    rewritten: dict[str, int]
    frozen_nodes: dict[str, str]  # node name (or op type + output) -> reason
    frozen_params: set[str]

    def notes(self) -> list[str]:
        notes = [f"{count} {op} rewritten for training" for op, count in
                 sorted(self.rewritten.items())]
        notes += [f"frozen {node}: {reason}" for node, reason in self.frozen_nodes.items()]
        return notes


def node_label(node: onnx.NodeProto) -> str:
    return f"{node.op_type} '{node.name or node.output[0]}'"


def legalize(model: onnx.ModelProto, batch: int, feeds: dict[str, np.ndarray],
             extra_frozen: dict[str, str] | None = None, *, bn: str = "batch",
             warn: bool = True) -> Legalized:
    """A copy of ``model`` rewritten by rules 1-5, probed on ``feeds`` (one real batch).

    ``extra_frozen`` maps ``op:TYPE`` or ``node:NAME`` to a reason: those nodes are
    frozen without trying their rules (used when ORT rejects a node at build time).
    ``bn="frozen"`` also writes inference-form BatchNormalization as arithmetic on its
    (fixed) running statistics, so training keeps inference semantics; ``"batch"``
    leaves it to ORT, which trains it with batch statistics. ``warn=False`` leaves the
    frozen nodes to the caller (``Legalized.frozen_nodes``) instead of logging them.
    """
    from onnxprune.training import (  # noqa: F401  (the rules)
        legal_pointwise,
        legal_recurrent,
        legal_spatial,
        legal_window,
    )
    from onnxprune.training.probe import probe_values

    proto = _training_opset(model, feeds)
    graph = proto.graph
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    extra_frozen = extra_frozen or {}
    options = {"bn": bn}
    wanted = [n for node in graph.node if node.op_type in RULES
              and RULES[node.op_type].probes(node, options)
              for n in [*node.input, *node.output] if n and n not in inits]
    probed = probe_values(proto, feeds, wanted) if wanted else {}
    nodes, rewritten, frozen, frozen_outputs = [], {}, {}, set()
    for index, node in enumerate(graph.node):
        reason = extra_frozen.get(f"op:{node.op_type}") or extra_frozen.get(f"node:{node.name}")
        replacement = None
        entry = RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if entry is not None and entry.when is not None and not entry.when(node, options):
            entry = None
        if reason is None and entry is not None:
            builder = NodeBuilder(node, index, opset, inits, probed, options)
            result = entry.func(builder)
            if isinstance(result, str):
                reason = result
            elif result is not None:
                replacement = result
                if entry.shapes:
                    reason = _local_check(node, result, builder.new_inits, proto, probed, inits)
                    replacement = None if reason else replacement
                if replacement is not None:
                    graph.initializer.extend(builder.new_inits)
        elif reason is None and node.op_type in NO_GRADIENT and node.domain in ("", "ai.onnx"):
            reason = "no gradient in ONNX Runtime 1.19 training and no exact rewrite"
        if reason is not None:
            frozen[node_label(node)] = reason
            frozen_outputs.add(node.output[0])
            nodes.append(node)
        elif replacement is not None:
            rewritten[node.op_type] = rewritten.get(node.op_type, 0) + 1
            nodes.extend(replacement)
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    set_static_batch(graph, batch, set(inits))
    _static_inputs(graph, feeds)
    del graph.value_info[:]
    _remove_dead(graph)
    frozen_params = _frozen_params(graph, frozen_outputs, set(inits))
    for label, reason in frozen.items() if warn else ():
        logger.warning("%s is frozen for fine-tuning (%s); the weights it depends on are not "
                       "trained", label, reason)
    return Legalized(proto, rewritten, frozen, frozen_params)


def _static_inputs(graph: onnx.GraphProto, feeds: dict[str, np.ndarray]) -> None:
    """Rule 1: every dim of a fed graph input becomes the probe batch's (static) dim."""
    for value in graph.input:
        feed = feeds.get(value.name)
        dims = value.type.tensor_type.shape.dim
        if feed is None or len(dims) != feed.ndim:
            continue
        for dim, size in zip(dims, feed.shape):
            dim.Clear()
            dim.dim_value = int(size)


def _training_opset(model: onnx.ModelProto, feeds: dict[str, np.ndarray],
                    ) -> onnx.ModelProto:
    """A copy of ``model`` at opset >= :data:`TRAINING_OPSET` when that converts exactly
    (rule 0), else a plain copy."""
    from onnxprune.graph import runtime

    proto = onnx.ModelProto()
    proto.CopyFrom(model)
    if proto.ir_version < 4:  # IR 3 lists initializers as inputs; rules add initializers
        names = {t.name for t in proto.graph.initializer}
        inputs = [i for i in proto.graph.input if i.name not in names]
        del proto.graph.input[:]
        proto.graph.input.extend(inputs)
        proto.ir_version = 7
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if not 0 < opset < TRAINING_OPSET:
        return proto
    try:
        converted = onnx.version_converter.convert_version(proto, TRAINING_OPSET)
        converted.ir_version = max(converted.ir_version, proto.ir_version, 7)
        before = runtime.make_session(proto, optimize=False).run(None, feeds)
        after = runtime.make_session(converted, optimize=False).run(None, feeds)
        diff = max_relative_diff(after, before)
    except Exception as exc:  # the converter does not know every op/attribute mix
        logger.info("training graph stays at opset %d: conversion to %d failed (%s)", opset,
                    TRAINING_OPSET, str(exc)[:200])
        return proto
    if diff > 1e-5:
        logger.info("training graph stays at opset %d: opset %d differs by %.1e", opset,
                    TRAINING_OPSET, diff)
        return proto
    logger.info("training graph converted from opset %d to %d", opset, TRAINING_OPSET)
    return converted


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return math.inf
    scale = max(float(np.abs(b).max()) if b.size else 0.0, 1e-6)
    return float(np.abs(a - b).max()) / scale if a.size else 0.0


def max_relative_diff(first: list[np.ndarray], second: list[np.ndarray]) -> float:
    """Largest max-abs difference over the float outputs, relative to ``second``'s scale
    (inf on a shape mismatch): how legalized and exported models are compared."""
    return max((_relative(a, b) for a, b in zip(first, second)
                if np.issubdtype(np.asarray(b).dtype, np.floating)), default=0.0)


def _remove_dead(graph: onnx.GraphProto) -> None:
    """Drop nodes and initializers no graph output depends on (rule 5)."""
    needed = ancestors(graph, [o.name for o in graph.output])
    kept = [n for n in graph.node if any(out in needed for out in n.output)]
    del graph.node[:]
    graph.node.extend(kept)
    used = graph_reads(graph)  # with the outer-scope reads of If/Loop bodies
    inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def _frozen_params(graph: onnx.GraphProto, frozen_outputs: set[str],
                   init_names: set[str]) -> set[str]:
    """Initializers any frozen node (known by its first output) depends on (rule 4)."""
    producers = {out: node for node in graph.node for out in node.output if out}
    result, seen = set(), set()
    frontier = [i for n in graph.node if n.output and n.output[0] in frozen_outputs
                for i in n.input if i]
    while frontier:
        name = frontier.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in init_names:
            result.add(name)
        node = producers.get(name)
        if node is not None:
            frontier.extend(i for i in node.input if i)
    return result


def _local_check(node: onnx.NodeProto, replacement: list[onnx.NodeProto],
                 new_inits: list[onnx.TensorProto], model: onnx.ModelProto,
                 probed: dict[str, np.ndarray], inits: dict[str, np.ndarray]) -> str | None:
    """``None`` when the replacement equals the node on the probed inputs (rule 3)."""
    from onnxprune.training.probe import run_fragment

    try:
        expected = run_fragment(model, [node], [], node.output[:1], probed, inits)
        got = run_fragment(model, replacement, new_inits, node.output[:1], probed, inits)
    except Exception as exc:  # a replacement ORT rejects is not exact either
        return f"rewrite does not run ({type(exc).__name__}: {str(exc)[:120]})"
    a, b = np.asarray(expected[0], np.float64), np.asarray(got[0], np.float64)
    if a.shape != b.shape:
        return f"rewrite changes the shape {a.shape} -> {b.shape}"
    scale = max(float(np.abs(a).max()) if a.size else 0.0, 1e-6)
    diff = float(np.abs(a - b).max()) / scale if a.size else 0.0
    if diff > 1e-5:
        return f"rewrite is not exact here (relative difference {diff:.1e})"
    return None
