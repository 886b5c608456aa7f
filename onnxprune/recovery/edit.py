"""Read and replace a pruned consumer's weight and per-output bias.

Cases for writing the effective ``y = x @ W + b`` (conv: per output channel):

1. Conv: ``W`` is written as is; ``b`` becomes input 2 (added when absent).
2. Gemm: ``B = W / alpha`` (transposed back when ``transB``); ``C = b / beta``
   (added when absent; a scalar ``C`` is expanded to a vector).
3. MatMul: ``W`` as is; ``b`` goes to a new ``Add`` after the MatMul, which takes
   over every reader of its output. A MatMul whose output is a graph output gets
   no bias (its name must stay).

Every write creates a fresh initializer; tensors other nodes read are never changed.
"""

from __future__ import annotations

__all__ = ["can_write_bias", "current_bias", "current_weight", "fit_target", "write_bias",
           "write_weight"]

import numpy as np
import onnx_ir as ir

from onnxprune.analysis.rules.common import attr_int
from onnxprune.recovery.consumers import Consumer
from onnxprune.rewrite.context import RewriteContext


def _float_attr(node: ir.Node, name: str) -> float:
    attr = node.attributes.get(name)
    return 1.0 if attr is None else float(attr.value)


def current_weight(consumer: Consumer) -> np.ndarray:
    w = consumer.node.inputs[1].const_value.numpy().astype(np.float64)
    if consumer.kind == "gemm":
        w = w.T if attr_int(consumer.node, "transB", 0) else w
        return w * _float_attr(consumer.node, "alpha")
    return w


def _bias_add(consumer: Consumer) -> tuple[ir.Node, int] | None:
    """The ``Add`` holding a MatMul's bias and the index of its constant input.

    Cases: the Add written by recovery in this run; else an Add that is the MatMul
    output's only reader and adds a constant 1-D vector over the output features (how
    exporters write a Linear layer on 3-D inputs, and what an earlier onnxprune run
    wrote), so a second recovery updates that bias instead of chaining another Add.
    """
    meta = consumer.node.meta.get("onnxprune.bias_add")
    if isinstance(meta, ir.Node):
        return meta, 1
    out = consumer.output
    uses = list(out.uses())
    if len(uses) != 1 or out.is_graph_output():
        return None
    node, index = uses[0]
    weight = consumer.node.inputs[1].const_value
    if node.op_type != "Add" or node.domain not in ("", "ai.onnx") or weight is None \
            or len(node.inputs) != 2:
        return None
    other = node.inputs[1 - index]
    if other is None or other.const_value is None or not other.is_initializer():
        return None
    if tuple(other.const_value.shape) != (weight.shape[-1],):
        return None
    return node, 1 - index


def fit_target(consumer: Consumer) -> ir.Value:
    """The tensor a refit must reproduce: the output of the MatMul's bias ``Add`` when it
    has one in the graph (its constant is then the bias being fitted), else the
    consumer's output."""
    found = None
    if consumer.kind == "matmul" and "onnxprune.bias_add" not in consumer.node.meta:
        found = _bias_add(consumer)
    return found[0].outputs[0] if found is not None else consumer.output


def current_bias(consumer: Consumer, n_out: int) -> np.ndarray:
    node = consumer.node
    if consumer.kind == "matmul":
        found = _bias_add(consumer)
        if found is None:
            return np.zeros(n_out)
        add, index = found
        return add.inputs[index].const_value.numpy().astype(np.float64)
    if len(node.inputs) < 3 or node.inputs[2] is None:
        return np.zeros(n_out)
    b = np.broadcast_to(node.inputs[2].const_value.numpy().reshape(-1), (n_out,))
    scale = _float_attr(node, "beta") if consumer.kind == "gemm" else 1.0
    return b.astype(np.float64) * scale


def can_write_bias(consumer: Consumer) -> bool:
    return consumer.kind != "matmul" or not consumer.output.is_graph_output()


def write_weight(ctx: RewriteContext, consumer: Consumer, weight: np.ndarray) -> None:
    node = consumer.node
    dtype = node.inputs[1].const_value.numpy().dtype
    if consumer.kind == "gemm":
        weight = weight / _float_attr(node, "alpha")
        weight = weight.T if attr_int(node, "transB", 0) else weight
    ctx.set_const_input(node, 1, np.ascontiguousarray(weight.astype(dtype)))


def write_bias(ctx: RewriteContext, consumer: Consumer, bias: np.ndarray) -> bool:
    """Make the consumer's per-output bias ``bias``; False when it cannot (case 3)."""
    node = consumer.node
    dtype = node.inputs[1].const_value.numpy().dtype
    if consumer.kind == "matmul":
        return _write_matmul_bias(ctx, consumer, bias.astype(dtype))
    if consumer.kind == "gemm":
        bias = bias / _float_attr(node, "beta")
    if len(node.inputs) < 3:
        node.resize_inputs(3)
    ctx.set_const_input(node, 2, np.ascontiguousarray(bias.astype(dtype)))
    return True


def _write_matmul_bias(ctx: RewriteContext, consumer: Consumer, bias: np.ndarray) -> bool:
    found = _bias_add(consumer)
    if found is not None:
        ctx.set_const_input(found[0], found[1], bias)
        return True
    if not can_write_bias(consumer):
        return False
    out = consumer.output
    name = ctx.fresh_name(f"{out.name}_recovered")
    result = ir.Value(name=name, shape=out.shape, type=out.type)
    out.replace_all_uses_with(result)
    bias_name = ctx.fresh_name(f"{out.name}_bias")
    const = ir.Value(name=bias_name, shape=ir.Shape(bias.shape),
                     type=ir.TensorType(ir.DataType.from_numpy(bias.dtype)),
                     const_value=ir.tensor(bias, name=bias_name))
    ctx.graph.register_initializer(const)
    add = ir.Node("", "Add", [out, const], outputs=[result],
                  name=ctx.fresh_name(f"{consumer.node.name or 'MatMul'}_bias"))
    ctx.graph.insert_after(consumer.node, add)
    consumer.node.meta["onnxprune.bias_add"] = add
    return True
