"""Synthetic one-layer graphs timed to build a latency table, and the run's input shapes.

Rules:

1. ``slice_model(spec, c_in, c_out)`` is a graph of the layer alone, with random
   weights: the layer's op with its attributes at ``c_in`` input and ``c_out`` output
   channels (a depthwise conv: ``group = c_in``), its bias, and the activation that
   the runtime would fuse into it. Its input has the layer's input shape with the
   channel axis set to ``c_in``.
2. ``default_input_shapes`` gives every graph input a concrete shape: static
   dimensions as they are; a symbolic first dimension is 1 (batch 1); the symbolic
   spatial dimensions of a rank-4 image input are 224. Any other symbolic dimension
   is a :class:`UsageError` asking for the shape. Inside a compress run the run's
   resolved input shapes (``--input-shape``, data, metadata, probed) are used instead.
3. ``value_shapes`` runs ONNX shape inference with the inputs set to those shapes and
   returns every value's concrete shape by name.
"""

from __future__ import annotations

__all__ = ["default_input_shapes", "slice_model", "value_shapes"]

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxprune.errors import UsageError
from onnxprune.planning.latency_model import LayerSpec

_OPSET = 17
_IMAGE = 224


def _weight_shape(spec: LayerSpec, c_in: int, c_out: int) -> tuple[int, ...]:
    if spec.op_type == "Conv":
        group = c_in if spec.depthwise else spec.groups
        return (c_out, c_in // group, *spec.weight_shape[2:])
    if spec.op_type == "Gemm" and dict(spec.attrs).get("transB", 0):
        return (c_out, c_in)
    return (c_in, c_out)


def _attributes(spec: LayerSpec, c_in: int) -> dict:
    attrs = dict(spec.attrs)
    if spec.op_type == "Conv" and spec.depthwise:
        attrs["group"] = c_in
    return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items()}


def slice_model(spec: LayerSpec, c_in: int, c_out: int, seed: int = 0) -> onnx.ModelProto:
    """The layer alone at ``c_in``/``c_out`` channels (rule 1)."""
    rng = np.random.default_rng(seed)
    in_shape = list(spec.in_shape)
    in_shape[spec.in_axis] = c_in
    weight = rng.standard_normal(_weight_shape(spec, c_in, c_out)).astype(np.float32) * 0.05
    inits = [numpy_helper.from_array(weight, "W")]
    inputs = ["x", "W"]
    if spec.bias:
        inits.append(numpy_helper.from_array(np.zeros(c_out, np.float32), "B"))
        inputs.append("B")
    nodes = [helper.make_node(spec.op_type, inputs, ["y0"], **_attributes(spec, c_in))]
    last = "y0"
    if spec.activation is not None:
        op, attrs, consts = spec.activation
        names = ["y0"]
        for i, const in enumerate(consts):
            if not const:
                names.append("")
                continue
            dtype, values = const
            array = np.asarray(values, dtype=dtype).reshape(() if len(values) == 1 else -1)
            inits.append(numpy_helper.from_array(array, f"act{i}"))
            names.append(f"act{i}")
        nodes.append(helper.make_node(op, names, ["y1"],
                                      **{k: list(v) if isinstance(v, tuple) else v
                                         for k, v in attrs}))
        last = "y1"
    graph = helper.make_graph(
        nodes, "slice", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(last, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = 8
    return model


def _dim(dim) -> int | None:
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None


def default_input_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """A concrete shape for every graph input (rule 2); inside a run, its resolved
    input shapes at batch 1 (``onnxprune.graph.input_shapes``) come first."""
    from onnxprune.graph import input_shapes

    resolved = input_shapes.current()
    if resolved is not None:
        return resolved.concrete(1)
    initializers = {init.name for init in model.graph.initializer}
    shapes = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = [_dim(d) for d in value.type.tensor_type.shape.dim]
        spatial = _spatial_axes(dims)
        concrete = []
        for axis, dim in enumerate(dims):
            if dim is not None:
                concrete.append(dim)
            elif axis == 0:
                concrete.append(1)
            elif axis in spatial:
                concrete.append(_IMAGE)
            else:
                raise UsageError(
                    f"input {value.name!r} has a symbolic dimension at axis {axis}; give the "
                    "input shapes the latency is measured at (e.g. input_shapes="
                    f"{{{value.name!r}: (1, 3, 224, 224)}})")
        shapes[value.name] = tuple(concrete)
    return shapes


def _spatial_axes(dims: list[int | None]) -> set[int]:
    if len(dims) != 4:
        return set()
    if dims[3] is not None and dims[3] <= 4 and dims[1] is None:  # NHWC image
        return {1, 2}
    return {2, 3}


def value_shapes(model: onnx.ModelProto, inputs: dict[str, tuple[int, ...]]
                 ) -> dict[str, tuple[int, ...]]:
    """Every value's concrete shape at ``inputs`` (rule 3)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for value in model.graph.input:
        if value.name in inputs:
            shape = value.type.tensor_type.shape
            del shape.dim[:]
            for d in inputs[value.name]:
                shape.dim.add().dim_value = int(d)
    del model.graph.value_info[:]
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # onnx raises InferenceError and friends
        raise UsageError(f"shape inference failed at input shapes {inputs}: {exc}") from exc
    shapes = dict(inputs)
    for value in (*model.graph.value_info, *model.graph.output):
        dims = [_dim(d) for d in value.type.tensor_type.shape.dim]
        if value.type.tensor_type.HasField("shape") and all(d is not None for d in dims):
            shapes[value.name] = tuple(dims)
    return shapes
