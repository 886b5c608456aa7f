"""Legalization rules that need probed shapes (checked locally by the legalize pass).

Cases:

1. ``Conv``/``AveragePool``/``MaxPool``/``LpPool`` with ``auto_pad`` ``SAME_UPPER``,
   ``SAME_LOWER`` or ``VALID`` get the equivalent explicit ``pads`` (ORT computes wrong
   Conv gradients for ``SAME_*``).
2. ``ConvTranspose`` (no CPU gradient kernel) becomes a ``Conv`` on the zero-inserted
   input: ``x`` is reshaped to ``[N, C, H, 1, W, 1]``, padded with ``stride - 1`` zeros
   and reshaped to ``[N, C, H*s, W*s]``; the kernel ``W[Cin, Cout/g, k...]`` becomes
   ``W'[Cout, Cin/g, k...]`` (group-wise transpose) flipped on every spatial axis
   (``Gather`` with reversed indices), all as graph ops on the original initializer;
   the ``Conv`` pads are ``d*(k-1) - pad`` (begin) and ``d*(k-1) - pad + output_padding
   - (s-1)`` (end), with a ``Slice`` where negative.
3. ``GlobalMaxPool`` becomes ``MaxPool`` with the whole spatial extent as kernel.
4. ``InstanceNormalization`` and ``GroupNormalization`` (opset 18: per-group scale,
   21: per-channel) are written with ``ReduceMean``.
5. ``Resize``: each resized axis' interpolation matrix is read by running the same
   ``Resize`` on a basis; when every matrix repeats each input ``r`` times (nearest,
   integer factor) the node becomes ``Reshape -> Expand -> Reshape``, otherwise, when
   only the last two axes change, ``MatMul`` with the matrices (any mode).
   ``tf_crop_and_resize``, the ``axes`` attribute and aspect-ratio policies decline.
6. ``DepthToSpace``/``SpaceToDepth`` become ``Reshape -> Transpose -> Reshape``.
7. With ``bn="frozen"``, an inference-form ``BatchNormalization`` becomes
   ``x * s + t`` with ``s = scale / Sqrt(var + eps)`` and ``t = B - mean * s`` computed
   in the graph from its initializers (scale and B stay trainable, the statistics fixed).
"""

from __future__ import annotations

__all__: list[str] = []

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxprune.graph import runtime
from onnxprune.training.legalize import NodeBuilder, rule
from onnxprune.training.ort import runtime_ready


def _same_pads(sizes, kernel, strides, dilations, mode: str) -> list[int]:
    begins, ends = [], []
    for i, k, s, d in zip(sizes, kernel, strides, dilations):
        if mode == "VALID":
            begins.append(0)
            ends.append(0)
            continue
        total = max((math.ceil(i / s) - 1) * s + (k - 1) * d + 1 - i, 0)
        small, large = total // 2, total - total // 2
        begin, end = (small, large) if mode == "SAME_UPPER" else (large, small)
        begins.append(begin)
        ends.append(end)
    return begins + ends


def _with_attrs(node: onnx.NodeProto, drop: tuple[str, ...], **attrs) -> onnx.NodeProto:
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    kept = [a for a in copy.attribute if a.name not in drop and a.name not in attrs]
    del copy.attribute[:]
    copy.attribute.extend(kept)
    copy.attribute.extend(helper.make_attribute(k, v) for k, v in attrs.items())
    return copy


def _auto_pad(node: onnx.NodeProto, options: dict) -> bool:
    return any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET") for a in node.attribute)


@rule("Conv", "AveragePool", "MaxPool", "LpPool", shapes=True, when=_auto_pad)
def explicit_pads(b: NodeBuilder) -> list[onnx.NodeProto] | None:
    mode = b.attr("auto_pad", "NOTSET")
    if mode == "NOTSET":
        return None
    shape = b.shape(b.x)
    if shape is None:
        return "input shape unknown"
    kernel = b.attr("kernel_shape") or list(b.shape(b.input(1))[2:])
    rank = len(kernel)
    strides = b.attr("strides") or [1] * rank
    dilations = b.attr("dilations") or [1] * rank
    pads = _same_pads(shape[2:], kernel, strides, dilations, mode)
    return [_with_attrs(b.node, ("auto_pad",), pads=pads)]


def _flipped_kernel(b: NodeBuilder, w: str, w_shape: tuple[int, ...], group: int) -> str:
    c_in, c_out_g, *kernel = w_shape
    rank = len(kernel)
    if group == 1:
        w = b.op("Transpose", [w], perm=[1, 0, *range(2, 2 + rank)])
    else:
        w = b.reshape(w, [group, c_in // group, c_out_g, *kernel])
        w = b.op("Transpose", [w], perm=[0, 2, 1, *range(3, 3 + rank)])
        w = b.reshape(w, [group * c_out_g, c_in // group, *kernel])
    for axis, k in enumerate(kernel, start=2):
        if k > 1:
            w = b.op("Gather", [w, b.ints(list(range(k - 1, -1, -1)))], axis=axis)
    return w


def _zero_insert(b: NodeBuilder, x: str, shape: tuple[int, ...], strides: list[int]) -> str:
    n, c, *spatial = shape
    split = [n, c] + [v for size in spatial for v in (size, 1)]
    x = b.reshape(x, split)
    pads = [0] * len(split) * 2
    for axis, s in enumerate(strides):
        pads[len(split) + 3 + 2 * axis] = s - 1
    x = b.op("Pad", [x, b.ints(pads)], mode="constant")
    return b.reshape(x, [n, c] + [size * s for size, s in zip(spatial, strides)])


@rule("ConvTranspose", shapes=True)
def conv_transpose(b: NodeBuilder) -> list[onnx.NodeProto] | str:
    x_shape, w_shape, y_shape = b.shape(b.x), b.shape(b.input(1)), b.shape(b.out)
    if x_shape is None or w_shape is None or y_shape is None:
        return "shapes unknown"
    kernel = list(w_shape[2:])
    rank = len(kernel)
    strides = b.attr("strides") or [1] * rank
    dilations = b.attr("dilations") or [1] * rank
    out_pad = b.attr("output_padding") or [0] * rank
    group = int(b.attr("group", 1))
    mode = b.attr("auto_pad", "NOTSET")
    if mode == "NOTSET" and not b.attr("output_shape"):
        pads = list(b.attr("pads") or [0] * 2 * rank)
    else:  # total padding from the probed output size (ONNX spec split)
        total = [s * (i - 1) + op + (k - 1) * d + 1 - o for s, i, op, k, d, o in
                 zip(strides, x_shape[2:], out_pad, kernel, dilations, y_shape[2:])]
        first = [t // 2 if mode == "SAME_UPPER" else t - t // 2 for t in total]
        pads = first + [t - f for t, f in zip(total, first)]
    x = _zero_insert(b, b.x, x_shape, strides) if any(s > 1 for s in strides) else b.x
    begin = [d * (k - 1) - p for d, k, p in zip(dilations, kernel, pads[:rank])]
    end = [d * (k - 1) - p + op - (s - 1) for d, k, p, op, s in
           zip(dilations, kernel, pads[rank:], out_pad, strides)]
    if min(begin + end) < 0:
        starts = [max(-v, 0) for v in begin]
        ends = [-max(-v, 0) if v < 0 else np.iinfo(np.int64).max for v in end]
        x = b.op("Slice", [x, b.ints(starts), b.ints(ends), b.ints(list(range(2, 2 + rank)))])
        begin, end = [max(v, 0) for v in begin], [max(v, 0) for v in end]
    w = _flipped_kernel(b, b.input(1), w_shape, group)
    inputs = [x, w] + ([b.input(2)] if b.input(2) else [])
    b.op("Conv", inputs, b.out, pads=begin + end, dilations=dilations, group=group,
         strides=[1] * rank, kernel_shape=kernel)
    return b.done()


@rule("GlobalMaxPool", shapes=True)
def global_max_pool(b: NodeBuilder) -> list[onnx.NodeProto] | str:
    shape = b.shape(b.x)
    if shape is None:
        return "input shape unknown"
    b.op("MaxPool", [b.x], b.out, kernel_shape=list(shape[2:]))
    return b.done()


def _affine(b: NodeBuilder, y: str, rank: int, channels: int, out: str,
            per_group: int = 0) -> str:
    scale, bias = b.input(1), b.input(2)
    if per_group:  # opset-18 GroupNormalization: one value per group
        index = b.ints(np.arange(channels) // (channels // per_group))
        scale = b.op("Gather", [scale, index], axis=0)
        bias = b.op("Gather", [bias, index], axis=0)
    shape = [channels] + [1] * (rank - 2)
    y = b.op("Mul", [y, b.reshape(scale, shape)])
    return b.op("Add", [y, b.reshape(bias, shape)], out)


def _normalize(b: NodeBuilder, x: str, axes: list[int]) -> str:
    centered = b.op("Sub", [x, b.reduce_mean(x, axes)])
    var = b.reduce_mean(b.op("Mul", [centered, centered]), axes)
    eps = b.const(float(b.attr("epsilon", 1e-5)))
    return b.op("Div", [centered, b.op("Sqrt", [b.op("Add", [var, eps])])])


@rule("InstanceNormalization", shapes=True)
def instance_norm(b: NodeBuilder) -> list[onnx.NodeProto] | str:
    shape = b.shape(b.x)
    if shape is None:
        return "input shape unknown"
    y = _normalize(b, b.x, list(range(2, len(shape))))
    _affine(b, y, len(shape), shape[1], b.out)
    return b.done()


@rule("GroupNormalization", shapes=True)
def group_norm(b: NodeBuilder) -> list[onnx.NodeProto] | str:
    shape = b.shape(b.x)
    scale = b.value(b.input(1))
    if shape is None or scale is None:
        return "input shape unknown"
    groups = int(b.attr("num_groups"))
    grouped = b.reshape(b.x, [shape[0], groups, -1])
    y = b.reshape(_normalize(b, grouped, [2]), list(shape))
    per_group = groups if scale.size == groups and groups != shape[1] else 0
    _affine(b, y, len(shape), shape[1], b.out, per_group)
    return b.done()


def _run_resize(b: NodeBuilder, basis: np.ndarray, scales: np.ndarray | None,
                sizes: np.ndarray | None) -> np.ndarray:
    inputs = ["x", "", "scales" if scales is not None else "",
              "sizes" if sizes is not None else ""]
    while inputs and not inputs[-1]:
        inputs.pop()
    inits = [numpy_helper.from_array(v, n) for n, v in
             (("scales", scales), ("sizes", sizes)) if v is not None]
    node = helper.make_node("Resize", inputs, ["y"], **b.attrs)
    graph = helper.make_graph([node], "resize", [helper.make_tensor_value_info(
        "x", onnx.TensorProto.FLOAT, list(basis.shape))], [onnx.ValueInfoProto(name="y")],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", b.opset)])
    model.ir_version = 8
    return runtime.make_session(runtime_ready(model), optimize=False).run(
        None, {"x": basis})[0]


def _axis_matrix(b: NodeBuilder, axis: int, rank: int, size: int, out: int) -> np.ndarray:
    """``M[i, j]``: weight of input ``i`` in output ``j`` along ``axis`` (case 5)."""
    shape = [size] + [1] * (rank - 1)
    shape[axis] = size
    basis = np.eye(size, dtype=np.float32).reshape(shape)
    scales_value = b.value(b.input(2)) if b.input(2) else None
    if scales_value is not None and scales_value.size:
        scales = np.ones(rank, np.float32)
        scales[axis] = float(scales_value[axis])
        result = _run_resize(b, basis, scales, None)
    else:
        sizes = np.array(shape, np.int64)
        sizes[axis] = out
        result = _run_resize(b, basis, None, sizes)
    return np.moveaxis(result, axis, -1).reshape(size, out)


@rule("Resize", shapes=True)
def resize(b: NodeBuilder) -> list[onnx.NodeProto] | str:
    x_shape, y_shape = b.shape(b.x), b.shape(b.out)
    if x_shape is None or y_shape is None:
        return "shapes unknown"
    if b.attr("coordinate_transformation_mode") == "tf_crop_and_resize" or b.attr("axes") \
            or b.attr("keep_aspect_ratio_policy", "stretch") != "stretch":
        return "Resize with crop, axes or aspect-ratio policy has no exact rewrite"
    rank = len(x_shape)
    axes = [a for a in range(rank) if x_shape[a] != y_shape[a]]
    if not axes:
        b.op("Identity", [b.x], b.out)
        return b.done()
    if 0 in axes:
        return "Resize along the batch axis"
    matrices = {a: _axis_matrix(b, a, rank, x_shape[a], y_shape[a]) for a in axes}
    if all(_is_repeat(m) for m in matrices.values()):
        split = [v for a, size in enumerate(x_shape) for v in (size, 1)]
        wide = [v for a, size in enumerate(x_shape)
                for v in (size, y_shape[a] // size if a in matrices else 1)]
        x = b.op("Expand", [b.reshape(b.x, split), b.ints(wide)])
        b.reshape(x, list(y_shape), b.out)
        return b.done()
    if not set(axes) <= {rank - 2, rank - 1}:
        return "non-nearest Resize of more than the last two axes"
    x = b.x
    if rank - 1 in matrices:
        x = b.op("MatMul", [x, b.const(matrices[rank - 1])],
                 None if rank - 2 in matrices else b.out)
    if rank - 2 in matrices:
        x = b.op("MatMul", [b.const(matrices[rank - 2].T), x], b.out)
    return b.done()


def _is_repeat(matrix: np.ndarray) -> bool:
    size, out = matrix.shape
    if out % size:
        return False
    expected = np.repeat(np.eye(size, dtype=matrix.dtype), out // size, axis=1)
    return bool(np.array_equal(matrix, expected))


@rule("DepthToSpace", "SpaceToDepth", shapes=True)
def depth_space(b: NodeBuilder) -> list[onnx.NodeProto] | str:
    shape = b.shape(b.x)
    if shape is None or len(shape) != 4:
        return "input shape unknown or not 4-D"
    n, c, h, w = shape
    k = int(b.attr("blocksize"))
    if b.node.op_type == "DepthToSpace":
        if b.attr("mode", "DCR") == "DCR":
            x = b.reshape(b.x, [n, k, k, c // (k * k), h, w])
            perm = [0, 3, 4, 1, 5, 2]
        else:
            x = b.reshape(b.x, [n, c // (k * k), k, k, h, w])
            perm = [0, 1, 4, 2, 5, 3]
        b.reshape(b.op("Transpose", [x], perm=perm), [n, c // (k * k), h * k, w * k], b.out)
    else:
        x = b.reshape(b.x, [n, c, h // k, k, w // k, k])
        x = b.op("Transpose", [x], perm=[0, 3, 5, 1, 2, 4])
        b.reshape(x, [n, c * k * k, h // k, w // k], b.out)
    return b.done()


def _frozen_bn(node: onnx.NodeProto, options: dict) -> bool:
    return options.get("bn") == "frozen"


@rule("BatchNormalization", shapes=True, when=_frozen_bn)
def frozen_batchnorm(b: NodeBuilder) -> list[onnx.NodeProto] | None:
    if b.options.get("bn") != "frozen" or len([o for o in b.node.output if o]) != 1:
        return None
    shape = b.shape(b.x)
    if shape is None:
        return "input shape unknown"
    eps = b.const(float(b.attr("epsilon", 1e-5)))
    scale = b.op("Div", [b.input(1), b.op("Sqrt", [b.op("Add", [b.input(4), eps])])])
    shift = b.op("Sub", [b.input(2), b.op("Mul", [b.input(3), scale])])
    per_channel = [-1] + [1] * (len(shape) - 2)
    y = b.op("Mul", [b.x, b.reshape(scale, per_channel)])
    b.op("Add", [y, b.reshape(shift, per_channel)], b.out)
    return b.done()
