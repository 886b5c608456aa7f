"""Decomposed LayerNorm / RMSNorm chains: found as one pattern, fused where ONNX can.

Exporters and hand-written models spell normalisations out op by op. Found patterns
(``x`` any tensor, reductions over the last axis with ``keepdims=1``, ``eps`` a
constant scalar, every intermediate read only inside the chain):

1. LayerNorm: ``d = Sub(x, ReduceMean(x))``; ``Pow(d, 2)`` or ``Mul(d, d)``;
   ``ReduceMean``; ``Add(·, eps)``; ``Sqrt``; then ``Div(d, ·)`` or
   ``Mul(d, Reciprocal(·))``.
2. RMSNorm: ``Pow(x, 2)`` or ``Mul(x, x)``; ``ReduceMean``; ``Add(·, eps)``; ``Sqrt``;
   then ``Div(x, ·)`` or ``Mul(x, Reciprocal(·))``.
3. Either is followed optionally by ``Mul`` with a constant scale (gamma) and, then,
   ``Add`` of a constant bias (beta).

:func:`fuse_layer_norms` replaces every case-1 chain by one ``LayerNormalization``
(``axis=-1``, same epsilon) when the model's opset is 17 or newer and gamma/beta
broadcast to the last dim. onnxscript's own LayerNorm rule is not used: it matches
only ``ReduceMean`` with axes as an input (opset 18+) written as ``[-1]``; RMSNorm has
no ONNX op below opset 23, newer than the runtime reads, so case-2 chains stay as
they are. :func:`find_norm_chains` is also what the analysis uses to recognise a
transformer-like model (the ``--prune-hidden`` hint).
"""

from __future__ import annotations

__all__ = ["NormChain", "find_norm_chains", "fuse_layer_norms"]

import dataclasses
import logging

import numpy as np
import onnx_ir as ir

logger = logging.getLogger(__name__)

_FUSE_OPSET = 17
_FLOATS = (ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16, ir.DataType.BFLOAT16)


@dataclasses.dataclass
class NormChain:
    kind: str  # "LayerNorm" or "RMSNorm"
    x: ir.Value
    epsilon: float
    nodes: list[ir.Node]
    scale: ir.Value | None = None
    bias: ir.Value | None = None

    @property
    def output(self) -> ir.Value:
        return self.nodes[-1].outputs[0]


def find_norm_chains(graph: ir.Graph, opset: int) -> list[NormChain]:
    """Every chain of cases 1-3 in ``graph`` (main graph only)."""
    chains, used = [], set()
    for kind, match in (("LayerNorm", _match_layer_norm), ("RMSNorm", _match_rms_norm)):
        for node in graph:
            if id(node) in used or not _is(node, "ReduceMean"):
                continue
            chain = match(node, opset)
            if chain is None or any(id(n) in used for n in chain.nodes):
                continue
            chain.kind = kind
            _affine(chain)
            chains.append(chain)
            used.update(id(n) for n in chain.nodes)
    return chains


def fuse_layer_norms(model: ir.Model, opset: int) -> int:
    """Replace case-1 chains by ``LayerNormalization`` (opset >= 17); return the count."""
    if opset < _FUSE_OPSET:
        return 0
    fused = 0
    for chain in find_norm_chains(model.graph, opset):
        if chain.kind == "LayerNorm" and _fuse(model.graph, chain):
            fused += 1
    return fused


# -- matching ---------------------------------------------------------------------------

def _is(node: ir.Node | None, op: str) -> bool:
    return node is not None and node.op_type == op and node.domain in ("", "ai.onnx")


def _only_user(value: ir.Value, op: str) -> ir.Node | None:
    users = {id(n): n for n, _ in value.uses()}
    if len(users) != 1 or value.is_graph_output():
        return None
    node = next(iter(users.values()))
    return node if _is(node, op) else None


def _users(value: ir.Value, op: str) -> list[ir.Node]:
    return [n for n, _ in value.uses() if _is(n, op)]


def _last_axis_mean(node: ir.Node, opset: int) -> bool:
    if node.attributes.get("keepdims") is not None and node.attributes["keepdims"].as_int() != 1:
        return False
    if opset >= 18:
        axes_value = node.inputs[1] if len(node.inputs) > 1 else None
        axes = None if axes_value is None or axes_value.const_value is None \
            else axes_value.const_value.numpy().reshape(-1).tolist()
    else:
        attr = node.attributes.get("axes")
        axes = list(attr.as_ints()) if attr is not None else None
    if axes is None or len(axes) != 1:
        return False
    shape = node.inputs[0].shape
    return axes[0] == -1 or (shape is not None and axes[0] == len(shape) - 1)


def _scalar(value: ir.Value | None) -> float | None:
    if value is None or value.const_value is None or value.const_value.size != 1:
        return None
    return float(value.const_value.numpy().reshape(-1)[0])


def _other(node: ir.Node, value: ir.Value) -> ir.Value | None:
    inputs = list(node.inputs)
    if len(inputs) != 2 or value not in inputs:
        return None
    return inputs[1] if inputs[0] is value else inputs[0]


def _square_of(node: ir.Node, base: ir.Value) -> bool:
    if _is(node, "Pow"):
        return node.inputs[0] is base and _scalar(node.inputs[1]) == 2.0
    return _is(node, "Mul") and node.inputs[0] is base and node.inputs[1] is base


def _tail(mean: ir.Node, opset: int, base: ir.Value) -> tuple[list[ir.Node], float] | None:
    """``mean -> Add(eps) -> Sqrt -> Div(base, ·) | Mul(base, Reciprocal(·))``."""
    if not _last_axis_mean(mean, opset):
        return None
    add = _only_user(mean.outputs[0], "Add")
    eps = _scalar(_other(add, mean.outputs[0])) if add is not None else None
    sqrt = _only_user(add.outputs[0], "Sqrt") if eps is not None else None
    if sqrt is None:
        return None
    std = sqrt.outputs[0]
    div = _only_user(std, "Div")
    if div is not None and div.inputs[0] is base and div.inputs[1] is std:
        return [mean, add, sqrt, div], eps
    recip = _only_user(std, "Reciprocal")
    mul = _only_user(recip.outputs[0], "Mul") if recip is not None else None
    if mul is not None and _other(mul, recip.outputs[0]) is base:
        return [mean, add, sqrt, recip, mul], eps
    return None


def _match_layer_norm(mean: ir.Node, opset: int) -> NormChain | None:
    x = mean.inputs[0]
    if not _last_axis_mean(mean, opset):
        return None
    sub = _only_user(mean.outputs[0], "Sub")
    if sub is None or sub.inputs[0] is not x or sub.inputs[1] is not mean.outputs[0]:
        return None
    d = sub.outputs[0]
    squares = [n for n, _ in d.uses() if _square_of(n, d)]
    if len(squares) != 1:
        return None
    variance = _only_user(squares[0].outputs[0], "ReduceMean")
    tail = _tail(variance, opset, d) if variance is not None else None
    if tail is None or {id(n) for n, _ in d.uses()} != {id(squares[0]), id(tail[0][-1])}:
        return None
    return NormChain("LayerNorm", x, tail[1], [mean, sub, squares[0], *tail[0]])


def _match_rms_norm(mean: ir.Node, opset: int) -> NormChain | None:
    square = mean.inputs[0].producer()
    if square is None or not (_is(square, "Pow") or _is(square, "Mul")):
        return None
    x = square.inputs[0]
    if not _square_of(square, x) or _only_user(square.outputs[0], "ReduceMean") is not mean:
        return None
    tail = _tail(mean, opset, x)
    if tail is None:
        return None
    return NormChain("RMSNorm", x, tail[1], [square, *tail[0]])


def _affine(chain: NormChain) -> None:
    """Case 3: absorb ``Mul(gamma)`` then ``Add(beta)`` with constant operands."""
    for op, field in (("Mul", "scale"), ("Add", "bias")):
        out = chain.output
        node = _only_user(out, op)
        other = _other(node, out) if node is not None else None
        if other is None or other.const_value is None:
            return
        setattr(chain, field, other)
        chain.nodes.append(node)


# -- fusion -----------------------------------------------------------------------------

def _vector(value: ir.Value | None, width: int | None, dtype: ir.DataType) -> np.ndarray | None:
    """``value`` as a 1-D array of ``width`` (broadcast from size 1), or None."""
    array = value.const_value.numpy()
    if array.ndim and any(d != 1 for d in array.shape[:-1]):
        return None
    flat = array.reshape(-1)
    if width is None:
        width = flat.size
    if flat.size == 1:
        flat = np.full(width, flat[0])
    return flat.astype(dtype.numpy()) if flat.size == width else None


def _fuse(graph: ir.Graph, chain: NormChain) -> bool:
    x, last = chain.x, chain.nodes[-1]
    if x.dtype not in _FLOATS or chain.output.is_graph_output():
        return False
    shape = x.shape
    width = shape[-1] if shape is not None and isinstance(shape[-1], int) else None
    if chain.scale is None and width is None:
        return False
    scale = _vector(chain.scale, width, x.dtype) if chain.scale is not None \
        else np.ones(width, x.dtype.numpy())
    bias = _vector(chain.bias, scale.size if scale is not None else None, x.dtype) \
        if chain.bias is not None else None
    if scale is None or (chain.bias is not None and bias is None):
        return False
    inputs = [x, _initializer(graph, f"{last.name}.scale", scale)]
    if bias is not None:
        inputs.append(_initializer(graph, f"{last.name}.bias", bias))
    node = ir.node("LayerNormalization", inputs,
                   attributes={"axis": -1, "epsilon": chain.epsilon}, name=f"{last.name}.fused")
    graph.insert_after(last, node)
    node.outputs[0].shape, node.outputs[0].type = chain.output.shape, chain.output.type
    chain.output.replace_all_uses_with(node.outputs[0])
    graph.remove(list(reversed(chain.nodes)), safe=True)
    return True


def _initializer(graph: ir.Graph, name: str, array: np.ndarray) -> ir.Value:
    while name in graph.initializers:
        name += "_"
    value = ir.Value(name=name, shape=ir.Shape(array.shape),
                     type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
                     const_value=ir.tensor(array, name=name))
    graph.register_initializer(value)
    return value
