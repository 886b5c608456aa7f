"""Make a model differentiable by ONNX Runtime training 1.19 (CPU), exactly.

ORT's gradient builder treats some inference ops differently or not at all (see
docs/calibration.md). On a copy of the model, cases:

1. ``BatchNormalization`` (inference form) becomes ``x * s + t`` with
   ``s = gamma / sqrt(var + eps)``, ``t = beta - mean * s`` (ORT would otherwise
   train it with batch statistics).
2. ``Dropout`` becomes ``Identity`` (inference semantics).
3. ``LayerNormalization`` with one output gets its Mean/InvStdDev outputs declared
   (ORT's gradient needs them).
4. ``HardSigmoid(x)`` becomes ``Clip(alpha * x + beta, 0, 1)`` and ``HardSwish(x)``
   becomes ``x * Clip(x / 6 + 1/2, 0, 1)`` (no gradient builders for them).
5. ``value_info`` and initializers no node reads any more are dropped, and every graph
   input gets the static batch size, so shapes re-infer consistently for the
   fixed-batch gradient model.

All rewrites compute the same function as the original in inference mode (cases 1-5).
"""

from __future__ import annotations

__all__ = ["differentiable_copy", "import_training"]

import importlib
import pathlib
import sys
import types
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxprune.errors import RuntimeMissingError
from onnxprune.graph.protos import set_static_batch

_MISSING = ("gradients need the ONNX Runtime training build: pip install 'onnxprune[train]' "
            "(onnxruntime-training-cpu 1.19.2); or use --criterion activation, which needs "
            "only inference")


def import_training() -> tuple[Any, Any]:
    """``(artifacts, api)`` of ``onnxruntime.training`` without importing torch.

    ``onnxruntime/training/__init__.py`` imports torch-based helpers; registering a
    bare package module with the real ``__path__`` first lets the torch-free
    submodules load. Raises :class:`RuntimeMissingError` when they are absent.
    """
    try:
        import onnxruntime
    except ImportError as exc:
        raise RuntimeMissingError(_MISSING) from exc
    folder = pathlib.Path(onnxruntime.__file__).parent / "training"
    if not (folder / "artifacts.py").is_file():
        raise RuntimeMissingError(_MISSING)
    if "onnxruntime.training" not in sys.modules:
        package = types.ModuleType("onnxruntime.training")
        package.__path__ = [str(folder)]
        sys.modules["onnxruntime.training"] = package
    try:
        artifacts = importlib.import_module("onnxruntime.training.artifacts")
        api = importlib.import_module("onnxruntime.training.api")
    except ImportError as exc:
        raise RuntimeMissingError(f"{_MISSING} ({exc})") from exc
    return artifacts, api


def _const(graph: onnx.GraphProto, name: str, array: np.ndarray) -> str:
    graph.initializer.append(numpy_helper.from_array(array, name))
    return name


def differentiable_copy(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """A copy of ``model`` rewritten by cases 1-5."""
    try:
        proto = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shapes only help find BN ranks; fall back to the plain copy
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
    graph = proto.graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = []
    for index, node in enumerate(graph.node):
        nodes.extend(_rewrite(node, graph, inits, f"onnxprune_t{index}"))
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    set_static_batch(graph, batch, set(inits))
    return proto


def _rewrite(node: onnx.NodeProto, graph: onnx.GraphProto, inits: dict[str, np.ndarray],
             prefix: str) -> list[onnx.NodeProto]:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "BatchNormalization" and node.domain in ("", "ai.onnx") \
            and all(name in inits for name in node.input[1:5]) and len(node.output) == 1:
        gamma, beta, mean, var = (inits[n].astype(np.float64) for n in node.input[1:5])
        scale = gamma / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
        shift = beta - mean * scale
        dtype = inits[node.input[1]].dtype
        shape = (len(scale),) + (1,) * _rank_pad(graph, node.input[0])
        s = _const(graph, f"{prefix}_scale", scale.astype(dtype).reshape(shape))
        t = _const(graph, f"{prefix}_shift", shift.astype(dtype).reshape(shape))
        return [helper.make_node("Mul", [node.input[0], s], [f"{prefix}_mul"]),
                helper.make_node("Add", [f"{prefix}_mul", t], [node.output[0]])]
    if node.op_type == "LayerNormalization" and len(node.output) == 1:
        extra = helper.make_node(node.op_type, node.input,
                                 [node.output[0], f"{prefix}_mean", f"{prefix}_invstd"],
                                 name=node.name, domain=node.domain)
        extra.attribute.extend(node.attribute)
        return [extra]
    if node.op_type == "Dropout" and (len(node.output) == 1 or not node.output[1]):
        return [helper.make_node("Identity", [node.input[0]], [node.output[0]])]
    if node.op_type in ("HardSigmoid", "HardSwish"):
        alpha = float(attrs.get("alpha", 0.2 if node.op_type == "HardSigmoid" else 1 / 6))
        beta = float(attrs.get("beta", 0.5))
        x = node.input[0]
        a = _const(graph, f"{prefix}_alpha", np.array(alpha, np.float32))
        b = _const(graph, f"{prefix}_beta", np.array(beta, np.float32))
        lo = _const(graph, f"{prefix}_lo", np.array(0.0, np.float32))
        hi = _const(graph, f"{prefix}_hi", np.array(1.0, np.float32))
        gate = f"{prefix}_gate" if node.op_type == "HardSwish" else node.output[0]
        out = [helper.make_node("Mul", [x, a], [f"{prefix}_ax"]),
               helper.make_node("Add", [f"{prefix}_ax", b], [f"{prefix}_axb"]),
               helper.make_node("Clip", [f"{prefix}_axb", lo, hi], [gate])]
        if node.op_type == "HardSwish":
            out.append(helper.make_node("Mul", [x, gate], [node.output[0]]))
        return out
    return [node]


def _rank_pad(graph: onnx.GraphProto, name: str) -> int:
    """Trailing singleton axes for a per-channel constant on axis 1 of ``name``."""
    for info in [*graph.value_info, *graph.input, *graph.output]:
        if info.name == name and info.type.tensor_type.HasField("shape"):
            return max(len(info.type.tensor_type.shape.dim) - 2, 0)
    return 2
