"""The latency model: which layers are timed, at which channel counts, and interpolation.

Rules:

1. A *modelled layer* is a Conv (plain, grouped or depthwise), a Gemm, or a MatMul
   with a constant 2-D weight whose input and output shapes are known at the given
   input shapes. Its :class:`LayerSpec` holds what a synthetic one-op graph of the
   same op needs: input shape, weight shape, attributes, bias, and the activation
   that follows it (directly or behind a BatchNormalization, which ONNX Runtime
   folds), since the runtime fuses it into the layer's kernel.
2. ``grid_counts`` gives the channel counts a layer is timed at: for an axis that
   pruning can change, the fractions ``GRID_FRACTIONS`` of its width rounded to
   multiples of ``GRID_STEP`` (and of the conv's group count), plus the full width;
   for an axis pruning cannot change, the full width only. Depthwise convs have one
   axis (input and output channels are the same).
3. :class:`LatencyTable` holds the measured milliseconds per layer on that grid and
   the whole model's latency. A layer's latency at any counts is the bilinear
   interpolation of its grid (below the grid, the line through its first two points,
   never below 0; above it, the last point). ``nodes`` holds the non-modelled nodes'
   milliseconds in the whole model's runs (their kernels' median share of a run times
   the whole latency) and the width of the channel axis their time follows
   (:mod:`onnxprune.planning.latency_nodes`; ``None``: not attributed). The prediction
   for a model is ``fixed_ms + scale * sum(layer ms) + sum(node ms * kept fraction)``
   (a node that is not attributed counts at full time):

   1. with ``context_fraction`` (the share of the whole model's run time its
      Conv/Gemm/MatMul kernels took, from the whole model's own profile, i.e. in the
      same runs), ``scale`` makes the layers' full-width sum equal to that share: the
      one-layer graphs then give the shape of each curve, the model gives the
      proportions, and load that slowed the whole model's runs cannot leak into the
      fixed part; ``fixed_ms`` is the rest of the whole latency less the nodes' time
      (session and call overhead, layout reorders, gaps between kernels);
   2. without it, ``fixed_ms`` is the whole model's latency minus the modelled layers
      at full width (what pruning does not change); when they sum to more than the
      whole model, ``fixed_ms`` is 0 and ``scale`` shrinks the sum to it.
"""

from __future__ import annotations

__all__ = ["GRID_FRACTIONS", "GRID_STEP", "LatencyTable", "LayerSpec", "grid_counts",
           "layer_specs"]

import dataclasses
import json
import math
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxprune.graph.shapes import dims
from onnxprune.planning.latency_nodes import kept_fraction

GRID_FRACTIONS = (0.125, 0.25, 0.5, 0.75, 1.0)
GRID_STEP = 8
_ACTIVATIONS = {"Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
                "Elu", "Selu", "Softplus", "Gelu"}


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One modelled layer (rule 1); ``name`` is its first output's name."""

    name: str
    op_type: str
    in_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    attrs: tuple[tuple[str, Any], ...] = ()
    bias: bool = False
    in_axis: int = 1     # axis of input 0 holding the input channels
    out_axis: int = 1    # axis of output 0 holding the output channels
    groups: int = 1
    depthwise: bool = False
    activation: tuple[str, tuple[tuple[str, Any], ...], tuple[tuple, ...]] | None = None
    prunable_in: bool = True
    prunable_out: bool = True

    @property
    def c_in(self) -> int:
        return int(self.in_shape[self.in_axis])

    @property
    def c_out(self) -> int:
        if self.op_type == "Conv":
            return int(self.weight_shape[0])
        transposed = self.op_type == "Gemm" and dict(self.attrs).get("transB", 0)
        return int(self.weight_shape[0] if transposed else self.weight_shape[1])

    def signature(self) -> str:
        """Everything but the name: layers with equal signatures are timed once."""
        data = dataclasses.asdict(self)
        del data["name"]
        return json.dumps(data, sort_keys=True, default=list)


def _attr_value(attr: ir.Attr) -> Any:
    value = attr.value
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return value


def _attrs(node: ir.Node) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((name, _attr_value(attr)) for name, attr in node.attributes.items()
                        if isinstance(_attr_value(attr), (int, float, str, tuple))))


def _single_consumer(value: ir.Value) -> ir.Node | None:
    uses = list(value.uses())
    return uses[0][0] if len(uses) == 1 and not value.is_graph_output() else None


def _activation(node: ir.Node) -> tuple | None:
    """The activation fused into ``node``'s kernel: directly after it or after a BN."""
    nxt = _single_consumer(node.outputs[0])
    if nxt is not None and nxt.op_type == "BatchNormalization":
        nxt = _single_consumer(nxt.outputs[0])
    if nxt is None or nxt.op_type not in _ACTIVATIONS:
        return None
    consts = []
    for value in nxt.inputs[1:]:
        if value is None:
            consts.append(())
        elif value.const_value is None:
            return None
        else:
            array = value.const_value.numpy()
            consts.append((str(array.dtype), tuple(array.reshape(-1).tolist())))
    return nxt.op_type, _attrs(nxt), tuple(consts)


def _concrete(value: ir.Value | None, shapes: dict[str, tuple[int, ...]]
              ) -> tuple[int, ...] | None:
    if value is None:
        return None
    shape = shapes.get(value.name) if value.name else None
    if shape is None:
        shape = dims(value)
    if shape is None or any(d is None or d < 1 for d in shape):
        return None
    return tuple(int(d) for d in shape)


def _spec(node: ir.Node, shapes: dict[str, tuple[int, ...]], prunable) -> LayerSpec | None:
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    if weight is None or weight.const_value is None or not node.outputs[0].name:
        return None
    in_shape = _concrete(node.inputs[0], shapes)
    out_shape = _concrete(node.outputs[0], shapes)
    w_shape = tuple(int(d) for d in weight.const_value.shape)
    if in_shape is None or out_shape is None:
        return None
    bias = len(node.inputs) > 2 and node.inputs[2] is not None
    attrs = _attrs(node)
    if node.op_type == "Conv":
        groups = int(dict(attrs).get("group", 1))
        in_axis, out_axis = 1, 1
        depthwise = groups > 1 and groups == in_shape[1] == w_shape[0]
    elif node.op_type == "Gemm" and len(w_shape) == 2 and len(in_shape) == 2:
        groups, depthwise, out_axis = 1, False, 1
        in_axis = 0 if dict(attrs).get("transA", 0) else 1
    elif node.op_type == "MatMul" and len(w_shape) == 2 and len(in_shape) >= 2:
        groups, depthwise = 1, False
        in_axis, out_axis = len(in_shape) - 1, len(out_shape) - 1
    else:
        return None
    return LayerSpec(node.outputs[0].name, node.op_type, in_shape, w_shape, attrs, bias,
                     in_axis, out_axis, groups, depthwise, _activation(node),
                     prunable(node.inputs[0], in_axis), prunable(node.outputs[0], out_axis))


def layer_specs(analysis, shapes: dict[str, tuple[int, ...]]) -> list[LayerSpec]:
    """Every modelled layer of ``analysis.model`` (rule 1); ``shapes`` maps value names
    to concrete shapes (from shape inference at the run's input shapes)."""
    prunable_groups = {g.index for g in analysis.prunable_groups}

    def prunable(value: ir.Value, axis: int) -> bool:
        layout = analysis.ctx.layout(value)
        if layout is None or layout.axis != axis:
            return False
        ids = layout.ids[layout.ids >= 0]
        groups = analysis.unit_group[analysis.element_unit[ids]]
        return bool(np.isin(groups, list(prunable_groups)).any())

    specs = []
    for node in analysis.model.graph:
        if node.op_type in ("Conv", "Gemm", "MatMul") and node.domain in ("", "ai.onnx"):
            spec = _spec(node, shapes, prunable)
            if spec is not None:
                specs.append(spec)
    return specs


def _axis_counts(width: int, step: int, prunable: bool) -> list[int]:
    if not prunable or width <= step:
        return [width]
    counts = {width}
    for fraction in GRID_FRACTIONS:
        counts.add(min(width, max(step, round(fraction * width / step) * step)))
    return sorted(counts)


def grid_counts(spec: LayerSpec) -> tuple[list[int], list[int]]:
    """Input and output channel counts the layer is timed at (rule 2); a depthwise
    layer's two lists are the same and are timed pairwise."""
    step = GRID_STEP * spec.groups // math.gcd(GRID_STEP, spec.groups) \
        if spec.groups > 1 and not spec.depthwise else GRID_STEP
    if spec.depthwise:
        both = _axis_counts(spec.c_in, step, spec.prunable_in or spec.prunable_out)
        return both, both
    return (_axis_counts(spec.c_in, step, spec.prunable_in),
            _axis_counts(spec.c_out, step, spec.prunable_out))


def _interp(x: float, xs, ys) -> float:
    """Linear between grid points, extrapolated below the first two (never below 0),
    held at the last above the grid."""
    if len(xs) >= 2 and x < xs[0]:
        slope = (ys[1] - ys[0]) / (xs[1] - xs[0])
        return max(0.0, float(ys[0] + (x - xs[0]) * slope))
    return float(np.interp(x, xs, ys))


@dataclasses.dataclass
class LatencyTable:
    """Measured layer latencies on their grids and the whole model's latency (rule 3).

    ``layers`` maps a layer name to ``{"c_in": [...], "c_out": [...], "ms": [[...]]}``
    (``ms[i][j]`` at ``c_in[i]``, ``c_out[j]``; depthwise: ``ms`` is one row along
    ``c_in`` and ``c_out`` equals it)."""

    layers: dict[str, dict]
    whole_ms: float
    provider: str = "cpu"
    threads: int = 1
    input_shapes: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    depthwise: tuple[str, ...] = ()
    meta: dict = dataclasses.field(default_factory=dict)
    context_fraction: float | None = None  # rule 3.1
    nodes: dict[str, dict] = dataclasses.field(default_factory=dict)  # {"ms", "width"}

    def layer_ms(self, name: str, c_in: int, c_out: int) -> float:
        entry = self.layers[name]
        ms = np.asarray(entry["ms"], dtype=np.float64)
        if name in self.depthwise:
            return _interp(c_in, entry["c_in"], ms[0])
        rows = [_interp(c_out, entry["c_out"], row) for row in ms]
        return _interp(c_in, entry["c_in"], rows)

    def full_ms(self, name: str) -> float:
        entry = self.layers[name]
        return self.layer_ms(name, entry["c_in"][-1], entry["c_out"][-1])

    @property
    def modelled_ms(self) -> float:
        return float(sum(self.full_ms(name) for name in self.layers))

    @property
    def scale(self) -> float:
        modelled = self.modelled_ms
        if self.context_fraction is not None and modelled > 0:
            return self.whole_ms * self.context_fraction / modelled
        return self.whole_ms / modelled if modelled > self.whole_ms > 0 else 1.0

    @property
    def nodes_ms(self) -> float:
        """The nodes' time at full width."""
        return float(sum(entry["ms"] for entry in self.nodes.values()))

    @property
    def fixed_ms(self) -> float:
        if self.context_fraction is not None and self.modelled_ms > 0:
            return max(0.0, self.whole_ms * (1.0 - self.context_fraction) - self.nodes_ms)
        return max(0.0, self.whole_ms - self.modelled_ms)

    def node_ms(self, name: str, kept: int | None = None) -> float:
        """A node's time with ``kept`` channels on its carrier (``None``: all)."""
        entry = self.nodes[name]
        if kept is None or not entry.get("width"):
            return float(entry["ms"])
        return float(entry["ms"]) * kept_fraction(kept, int(entry["width"]))

    def predict(self, layer_ms_sum: float, node_ms_sum: float | None = None) -> float:
        """Model latency when the modelled layers take ``layer_ms_sum`` and the nodes
        ``node_ms_sum`` (default: their full time) in all."""
        nodes = self.nodes_ms if node_ms_sum is None else node_ms_sum
        return self.fixed_ms + self.scale * layer_ms_sum + nodes

    def to_dict(self) -> dict:
        return {"layers": self.layers, "whole_ms": self.whole_ms, "provider": self.provider,
                "threads": self.threads, "input_shapes": self.input_shapes,
                "depthwise": list(self.depthwise), "meta": self.meta,
                "context_fraction": self.context_fraction, "nodes": self.nodes}

    @classmethod
    def from_dict(cls, data: dict) -> LatencyTable:
        return cls(data["layers"], float(data["whole_ms"]), data.get("provider", "cpu"),
                   int(data.get("threads", 1)), data.get("input_shapes", {}),
                   tuple(data.get("depthwise", ())), data.get("meta", {}),
                   data.get("context_fraction"), data.get("nodes", {}))

    def summary(self) -> dict:
        """Compact view for reports: fixed part, scale and each layer's full-width ms."""
        return {"whole_ms": round(self.whole_ms, 4), "fixed_ms": round(self.fixed_ms, 4),
                "modelled_ms": round(self.modelled_ms, 4), "scale": round(self.scale, 4),
                "layers": len(self.layers), "context_fraction": self.context_fraction,
                "nodes_ms": round(self.nodes_ms, 4),
                "scaled_nodes": sum(1 for e in self.nodes.values() if e.get("width"))}
