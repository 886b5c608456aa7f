"""Legalization rules that need no shapes: activations, n-ary ops, norms, Dropout.

Each rule computes exactly the op's function with ops ONNX Runtime 1.19 (CPU)
differentiates (Relu, Exp, Log, Abs, Tanh, Clip, Where, Mul, ...). Cases:

1. ``HardSigmoid(x) = Clip(alpha*x + beta, 0, 1)``; ``HardSwish(x) = x*Clip(x+3, 0, 6)/6``.
2. ``PRelu(x, s) = Where(x < 0, x*s, x)`` (the slope stays a trainable initializer).
3. ``Elu``/``Selu``/``Celu``: ``Where(x > 0, x, alpha*(Exp(min(x, 0)/a) - 1))`` with
   ``min(x, 0) = x - Relu(x)`` so the unused branch never overflows.
4. ``Softplus(x) = Relu(x) + Log(1 + Exp(-|x|))`` (stable); ``Mish(x) = x*Tanh(Softplus(x))``;
   ``Softsign(x) = x/(1 + |x|)``; ``ThresholdedRelu(x) = x*(x > alpha)``.
5. ``Sum``/``Mean`` become chains of ``Add`` (times ``1/n`` for Mean).
6. ``LayerNormalization`` declares its ``Mean`` and ``InvStdDev`` outputs (ORT's gradient
   needs them); ``Dropout`` becomes ``Identity`` (inference semantics: fine-tuning does
   not drop), with an all-true mask when the mask output is named.
7. ``Pad`` in ``constant`` mode is kept; other modes have no gradient (frozen).
8. ``Relu(x) = x * Cast(x > 0)`` for speed: ORT 1.19's CPU ``ReluGrad`` took 14% of a
   ResNet-like training step, the ``Mul`` gradient a fraction of it (docs/finetune.md);
   the gradient is the same, 0 at ``x = 0`` (``Clip(x, 0)`` would pass it there).
9. ``Clip`` before opset 12 becomes ``Min(Max(x, low), high)``: ORT 1.19's Clip gradient
   emits ``LessOrEqual``, which opset 11 lacks, and the attribute form (opset < 11) has
   no gradient. Bounds may be attributes, constant or computed inputs, and either may be
   missing (that side is then unbounded; no bound at all is ``Identity``). From opset 12
   on, Clip is kept (ORT trains it). The Clips that rules 1 emit follow the same rule.
"""

from __future__ import annotations

__all__: list[str] = []

import onnx
from onnx import TensorProto, helper

from onnxprune.training.legalize import NodeBuilder, rule

CLIP_GRADIENT_OPSET = 12  # ORT's Clip gradient needs LessOrEqual (opset 12)


def _bounded(b: NodeBuilder, x: str, low: str, high: str, out: str | None = None) -> str:
    """``Clip(x, low, high)`` in a form ORT differentiates at the model's opset (rule 9);
    an empty bound name means that side is unbounded."""
    if b.opset >= CLIP_GRADIENT_OPSET:
        inputs = [x, low, high]
        while inputs[-1] == "":
            inputs.pop()
        return b.op("Clip", inputs, out)
    if not low and not high:
        return b.op("Identity", [x], out)
    if low:
        x = b.op("Max", [x, low], None if high else out)
    if high:
        x = b.op("Min", [x, high], out)
    return x


@rule("Clip")
def clip(b: NodeBuilder) -> list[onnx.NodeProto] | str | None:
    if b.opset >= CLIP_GRADIENT_OPSET:
        return None
    if b.opset < 8:
        return f"Clip at opset {b.opset}: Max/Min without broadcasting cannot express it"
    if b.opset < 11:  # bounds are attributes (defaults: unbounded)
        low = b.const(float(b.attr("min"))) if "min" in b.attrs else ""
        high = b.const(float(b.attr("max"))) if "max" in b.attrs else ""
    else:
        low, high = b.input(1), b.input(2)
    _bounded(b, b.x, low, high, b.out)
    return b.done()


@rule("HardSigmoid")
def hard_sigmoid(b: NodeBuilder) -> list[onnx.NodeProto]:
    scaled = b.op("Mul", [b.x, b.const(float(b.attr("alpha", 0.2)))])
    shifted = b.op("Add", [scaled, b.const(float(b.attr("beta", 0.5)))])
    _bounded(b, shifted, b.const(0.0), b.const(1.0), b.out)
    return b.done()


@rule("HardSwish")
def hard_swish(b: NodeBuilder) -> list[onnx.NodeProto]:
    gate = _bounded(b, b.op("Add", [b.x, b.const(3.0)]), b.const(0.0), b.const(6.0))
    b.op("Div", [b.op("Mul", [b.x, gate]), b.const(6.0)], b.out)
    return b.done()


@rule("PRelu")
def prelu(b: NodeBuilder) -> list[onnx.NodeProto]:
    negative = b.op("Less", [b.x, b.const(0.0)])
    b.op("Where", [negative, b.op("Mul", [b.x, b.input(1)]), b.x], b.out)
    return b.done()


def _negative_part(b: NodeBuilder) -> str:
    """``min(x, 0)`` as ``x - Relu(x)``: exact, and finite wherever x is."""
    return b.op("Sub", [b.x, b.op("Relu", [b.x])])


def _exp_branch(b: NodeBuilder, alpha: float, divisor: float = 1.0, out: str | None = None,
                ) -> str:
    negative = _negative_part(b)
    if divisor != 1.0:
        negative = b.op("Div", [negative, b.const(divisor)])
    expm1 = b.op("Sub", [b.op("Exp", [negative]), b.const(1.0)])
    positive = b.op("Greater", [b.x, b.const(0.0)])
    return b.op("Where", [positive, b.x, b.op("Mul", [expm1, b.const(alpha)])], out)


@rule("Elu")
def elu(b: NodeBuilder) -> list[onnx.NodeProto]:
    _exp_branch(b, float(b.attr("alpha", 1.0)), out=b.out)
    return b.done()


@rule("Celu")
def celu(b: NodeBuilder) -> list[onnx.NodeProto]:
    alpha = float(b.attr("alpha", 1.0))
    _exp_branch(b, alpha, divisor=alpha, out=b.out)
    return b.done()


@rule("Selu")
def selu(b: NodeBuilder) -> list[onnx.NodeProto]:
    inner = _exp_branch(b, float(b.attr("alpha", 1.67326319217681884765625)))
    b.op("Mul", [inner, b.const(float(b.attr("gamma", 1.05070102214813232421875)))], b.out)
    return b.done()


def _softplus(b: NodeBuilder, out: str | None = None) -> str:
    tail = b.op("Exp", [b.op("Neg", [b.op("Abs", [b.x])])])
    log = b.op("Log", [b.op("Add", [tail, b.const(1.0)])])
    return b.op("Add", [b.op("Relu", [b.x]), log], out)


@rule("Softplus")
def softplus(b: NodeBuilder) -> list[onnx.NodeProto]:
    _softplus(b, b.out)
    return b.done()


@rule("Mish")
def mish(b: NodeBuilder) -> list[onnx.NodeProto]:
    b.op("Mul", [b.x, b.op("Tanh", [_softplus(b)])], b.out)
    return b.done()


@rule("Softsign")
def softsign(b: NodeBuilder) -> list[onnx.NodeProto]:
    b.op("Div", [b.x, b.op("Add", [b.op("Abs", [b.x]), b.const(1.0)])], b.out)
    return b.done()


@rule("ThresholdedRelu")
def thresholded_relu(b: NodeBuilder) -> list[onnx.NodeProto]:
    above = b.op("Greater", [b.x, b.const(float(b.attr("alpha", 1.0)))])
    b.op("Mul", [b.x, b.op("Cast", [above], to=TensorProto.FLOAT)], b.out)
    return b.done()


@rule("Sum", "Mean")
def add_chain(b: NodeBuilder) -> list[onnx.NodeProto]:
    inputs = [i for i in b.node.input if i]
    if len(inputs) == 1:
        b.op("Identity", inputs, b.out)
        return b.done()
    total = inputs[0]
    for index, name in enumerate(inputs[1:], start=2):
        last = index == len(inputs) and b.node.op_type == "Sum"
        total = b.op("Add", [total, name], b.out if last else None)
    if b.node.op_type == "Mean":
        b.op("Mul", [total, b.const(1.0 / len(inputs))], b.out)
    return b.done()


@rule("LayerNormalization")
def layer_norm(b: NodeBuilder) -> list[onnx.NodeProto] | None:
    outputs = list(b.node.output) + [""] * (3 - len(b.node.output))
    if all(outputs):
        return None
    outputs = [o or b.fresh(hint) for o, hint in zip(outputs, ("y", "mean", "invstd"))]
    node = onnx.NodeProto()
    node.CopyFrom(b.node)
    del node.output[:]
    node.output.extend(outputs)
    return [node]


@rule("Dropout")
def dropout(b: NodeBuilder) -> list[onnx.NodeProto]:
    b.op("Identity", [b.x], b.out)
    if len(b.node.output) > 1 and b.node.output[1]:
        true = helper.make_tensor("true", TensorProto.BOOL, [1], [True])
        b.op("ConstantOfShape", [b.op("Shape", [b.x])], b.node.output[1], value=true)
    return b.done()


@rule("Pad")
def pad(b: NodeBuilder) -> str | None:
    mode = b.attr("mode", "constant")
    if mode == "constant":
        return None
    return f"Pad mode '{mode}' has no gradient in ONNX Runtime 1.19 (constant mode only)"


@rule("Relu")
def relu(b: NodeBuilder) -> list[onnx.NodeProto]:
    positive = b.op("Greater", [b.x, b.const(0.0)])
    b.op("Mul", [b.x, b.op("Cast", [positive], to=TensorProto.FLOAT)], b.out)
    return b.done()
