"""Tiny models around one op, and gradients from the legalized training graph."""

from __future__ import annotations

import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxprune.graph import runtime
from onnxprune.training.legalize import legalize
from onnxprune.training.ort import build_artifacts, import_training
from tests.builders import GraphBuilder

BATCH = 3


def op_model(op: str, *, opset: int = 17, shape=(3, 6, 6), extra=(), n_inputs: int = 1,
             channels: int = 4, flatten: bool = True, **attrs) -> onnx.ModelProto:
    """x[N, *shape] -> Conv 'w0' (3x3, pads 1) -> op(h, *extra) -> Flatten -> output.

    ``extra`` are initializer arrays appended as the op's further inputs; with
    ``n_inputs > 1`` the op reads ``h``, ``Relu(h)``, ``Sigmoid(h)``... instead.
    """
    b = GraphBuilder(opset=opset, seed=1)
    x = b.input(["N", *shape], name="input")
    w = b.init(b.rng.standard_normal((channels, shape[0], 3, 3)).astype(np.float32) * 0.5,
               name="w0")
    h = b.op("Conv", [x, w, b.weight(channels)], name="conv0", pads=[1, 1, 1, 1])
    inputs = [h]
    for kind in ("Relu", "Sigmoid", "Tanh")[: n_inputs - 1]:
        inputs.append(b.op(kind, [h]))
    inputs += [b.init(np.asarray(e)) if not isinstance(e, str) else e for e in extra]
    y = b.op(op, inputs, name="target", **attrs)
    b.output(b.op("Flatten", [y]) if flatten else y)
    return b.model()


def feeds_for(model: onnx.ModelProto, batch: int = BATCH, seed: int = 0) -> dict:
    session = runtime.make_session(model)
    return runtime.dummy_inputs(session, seed=seed, dynamic_dim=batch)


def outputs(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    return runtime.make_session(model, optimize=False).run(None, feeds)


def with_projection_loss(model: onnx.ModelProto, projection: np.ndarray) -> onnx.ModelProto:
    """Scalar loss ``sum(output0 * projection)``."""
    proto = onnx.ModelProto()
    proto.CopyFrom(model)
    graph = proto.graph
    graph.initializer.append(numpy_helper.from_array(projection.astype(np.float32), "proj"))
    graph.node.extend([
        helper.make_node("Mul", [graph.output[0].name, "proj"], ["projected"]),
        helper.make_node("ReduceSum", ["projected"], ["loss"], keepdims=0)])
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("loss", TensorProto.FLOAT, []))
    return proto


def ort_gradient(model: onnx.ModelProto, feeds: dict, param: str,
                 projection: np.ndarray) -> np.ndarray:
    """d sum(output * projection) / d param from ORT training on the legalized model."""
    _, api = import_training()
    batch = len(next(iter(feeds.values())))
    legal = legalize(model, batch, feeds)
    assert not legal.frozen_nodes, legal.frozen_nodes
    with tempfile.TemporaryDirectory() as folder:
        art = build_artifacts(with_projection_loss(legal.model, projection), [param], [],
                              folder)
        state = api.CheckpointState.load_checkpoint(art.checkpoint)
        module = api.Module(art.training_model, state, art.eval_model)
        module.train()
        module.lazy_reset_grad()
        module(*[feeds[n] for n in module.input_names()])
        return np.array(state.parameters[param].grad)


def numeric_gradient(model: onnx.ModelProto, feeds: dict, param: str, projection: np.ndarray,
                     count: int = 6, eps: float = 1e-2, seed: int = 0,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Central differences of the same loss on the *original* model at ``count`` entries."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    base = inits[param].astype(np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.choice(base.size, size=min(count, base.size), replace=False)
    values = []
    for flat in picks:
        losses = []
        for sign in (1, -1):
            changed = base.copy().reshape(-1)
            changed[flat] += sign * eps
            proto = onnx.ModelProto()
            proto.CopyFrom(model)
            index = next(i for i, t in enumerate(proto.graph.initializer) if t.name == param)
            proto.graph.initializer[index].CopyFrom(numpy_helper.from_array(
                changed.reshape(base.shape).astype(np.float32), param))
            y = outputs(proto, feeds)[0].astype(np.float64)
            losses.append(float((y * projection).sum()))
        values.append((losses[0] - losses[1]) / (2 * eps))
    return picks, np.array(values)


# -- functions run in the fine-tuning child process by the isolation tests -------------
def crash_with_sigfpe(report=None) -> None:
    import os
    import signal

    os.kill(os.getpid(), signal.SIGFPE)


def raise_data_error(message: str, report=None) -> None:
    from onnxprune.errors import DataError

    raise DataError(message)


def raise_value_error(report=None) -> None:
    raise ValueError("plain failure")


def report_and_return(values: list, report=None) -> int:
    import logging

    logging.getLogger("onnxprune.training.test").warning("working on %d values", len(values))
    for value in values:
        report("progress", {"value": value})
    return sum(values)


def _clip_bound(b: GraphBuilder, value: float | None, form: str) -> str:
    """A Clip bound as an input: a ``Constant`` node, an initializer, or computed."""
    if value is None:
        return ""
    if form == "constant":
        return b.op("Constant", [], value=numpy_helper.from_array(np.array(value, np.float32)))
    if form == "computed":
        return b.op("Add", [b.init(np.array(value - 1.0, np.float32)),
                            b.init(np.array(1.0, np.float32))])
    return b.init(np.array(value, np.float32))


def _clip(b: GraphBuilder, x: str, low: float | None, high: float | None, form: str) -> str:
    if form == "attributes":
        attrs = {k: v for k, v in (("min", low), ("max", high)) if v is not None}
        return b.op("Clip", [x], **attrs)
    inputs = [x, _clip_bound(b, low, form), _clip_bound(b, high, form)]
    while inputs[-1] == "":
        inputs.pop()
    return b.op("Clip", inputs)


def hardswish_se_model(opset: int = 11, form: str = "constant", channels: int = 8,
                       classes: int = 10, seed: int = 0) -> onnx.ModelProto:
    """A Paddle2ONNX-style classifier: Conv+BN, hardswish as ``x*Clip(x+3, 0, 6)/6`` with
    the bounds in ``form`` (constant, initializer, computed; ``attributes`` before opset
    11), an SE block with a hard-sigmoid gate ``Clip(x/6 + 0.5, 0, 1)``, global pooling,
    Gemm and Softmax at the end. Input ``[N, 1, 8, 8]``."""
    b = GraphBuilder(opset=opset, seed=seed)
    x = b.input(["N", 1, 8, 8], name="image")
    h = x
    for index, (c_in, c_out, stride) in enumerate([(1, channels, 1), (channels, channels, 2)]):
        h = b.bn(b.conv(h, c_in, c_out, strides=[stride, stride]), c_out)
        gate = _clip(b, b.op("Add", [h, b.init(np.array(3.0, np.float32))]), 0.0, 6.0, form)
        h = b.op("Div", [b.op("Mul", [h, gate]), b.init(np.array(6.0, np.float32))])
        if index == 1:  # squeeze-and-excitation
            s = b.op("GlobalAveragePool", [h])
            s = b.op("Relu", [b.conv(s, channels, channels // 2, k=1)])
            s = b.conv(s, channels // 2, channels, k=1)
            s = b.op("Add", [b.op("Mul", [s, b.init(np.array(1 / 6, np.float32))]),
                             b.init(np.array(0.5, np.float32))])
            h = b.op("Mul", [h, _clip(b, s, 0.0, 1.0, form)])
    pooled = b.op("Flatten", [b.op("GlobalAveragePool", [h])])
    logits = b.op("Gemm", [pooled, b.weight(classes, channels), b.weight(classes)], transB=1)
    b.output(b.op("Softmax", [logits], name="softmax", axis=1))
    return b.model(ir_version=7 if opset <= 12 else 8)
