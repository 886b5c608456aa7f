"""The masked-equivalence oracle.

Rule: pruning a unit must give the same outputs as keeping the graph whole and
multiplying every tracked tensor by a 0/1 mask that zeroes the unit's positions.
Channel-mixing ops (Conv, Gemm, ...) then never see the removed channels, and
channel-wise ops cannot leak them into kept ones, so the masked model computes
exactly what the pruned one does. ``channel_masks`` records the masks by value name
before the rewrite; ``masked_model`` builds the masked twin of the original.

Normalisations over a masked axis (only analysed as prunable with ``prune_hidden``)
compute their statistics over the kept channels in the pruned model, so the twin
does the same: a ReduceMean over that axis is rescaled by ``C / C_kept`` (its masked
input is zero at removed positions) and a LayerNormalization over it is replaced
by the same normalisation written out with the mask.

Boolean tracked tensors (a comparison of channels, read by ``Where``) are masked with
``And`` (a removed position is ``False``), numeric ones with ``Mul``.

Quantized tensors (outputs of QuantizeLinear) are not masked: the float tensor
entering QuantizeLinear is, and a zero quantizes to the zero point, which
DequantizeLinear maps back to exactly zero.
"""

from __future__ import annotations

__all__ = ["channel_masks", "masked_model"]

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxprune.analysis.groups import Analysis
from onnxprune.analysis.keep import KeepView


def channel_masks(analysis: Analysis, removed_units: np.ndarray,
                  ) -> dict[str, tuple[int, int, np.ndarray]]:
    """value name -> (axis, rank, keep mask) for every tracked value that loses positions."""
    view = KeepView(analysis, removed_units)
    masks = {}
    for value, layout in analysis.ctx.layouts.items():
        keep = view.keep_ids(layout.ids)
        rank = view.rank(value)
        if value.name and rank is not None and not keep.all():
            masks[value.name] = (layout.axis, rank, keep)
    return masks


def masked_model(original: onnx.ModelProto, masks: dict[str, tuple[int, int, np.ndarray]],
                 ) -> onnx.ModelProto:
    """Copy of ``original`` whose tracked tensors are multiplied by their keep masks."""
    model = onnx.ModelProto()
    model.CopyFrom(original)
    graph = model.graph
    dtypes = _elem_types(model, set(masks))
    quantized = {out for node in graph.node if node.op_type == "QuantizeLinear"
                 for out in node.output}
    masks = {name: mask for name, mask in masks.items() if name not in quantized}
    renames = {name: f"{name}__masked" for name in masks}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]
    new_nodes = []
    for name, (axis, rank, keep) in masks.items():
        shape = [1] * rank
        shape[axis] = len(keep)
        elem = dtypes.get(name, onnx.TensorProto.FLOAT)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)
        mask = numpy_helper.from_array(keep.astype(dtype).reshape(shape), f"{name}__mask")
        graph.initializer.append(mask)
        op = "And" if elem == onnx.TensorProto.BOOL else "Mul"  # Mul has no bool kernel
        new_nodes.append(helper.make_node(op, [name, mask.name], [renames[name]]))
    _insert_after_producers(graph, new_nodes)
    _kept_channel_norms(model, masks)
    return model


def _kept_channel_norms(model: onnx.ModelProto, masks: dict) -> None:
    """Rewrite ReduceMean / LayerNormalization over a masked axis (module docstring)."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    inits = {t.name: t for t in model.graph.initializer}
    ordered = []
    for node in model.graph.node:
        source = node.input[0].removesuffix("__masked") if node.input else ""
        mask = masks.get(source) if node.input and node.input[0].endswith("__masked") else None
        if mask is not None and node.op_type == "ReduceMean":
            ordered.extend(_rescaled_mean(model, node, mask, opset, inits))
        elif mask is not None and node.op_type == "LayerNormalization":
            ordered.extend(_masked_layer_norm(model, node, source, mask, opset))
        else:
            ordered.append(node)
    del model.graph.node[:]
    model.graph.node.extend(ordered)


def _rescaled_mean(model, node, mask, opset, inits) -> list[onnx.NodeProto]:
    axis, rank, keep = mask
    if opset >= 18:
        name = node.input[1] if len(node.input) > 1 else ""
        axes = numpy_helper.to_array(inits[name]).tolist() if name in inits else []
    else:
        axes = next((list(a.ints) for a in node.attribute if a.name == "axes"), [])
    axes = [a + rank if a < 0 else a for a in axes] or list(range(rank))
    if axis not in axes or keep.all():
        return [node]
    factor = numpy_helper.from_array(np.array(len(keep) / keep.sum(), dtype=np.float32),
                                     f"{node.output[0]}__kept_scale")
    model.graph.initializer.append(factor)
    out = node.output[0]
    node.output[0] = f"{out}__all_channels"
    return [node, helper.make_node("Mul", [node.output[0], factor.name], [out])]


def _masked_layer_norm(model, node, source, mask, opset) -> list[onnx.NodeProto]:
    axis, rank, keep = mask
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    norm_axis = attrs.get("axis", -1)
    if (norm_axis + rank if norm_axis < 0 else norm_axis) != rank - 1 or axis != rank - 1:
        return [node]
    prefix = f"{node.output[0]}__kept"
    shape = [1] * rank
    shape[-1] = len(keep)
    consts = {
        "mask": keep.astype(np.float32).reshape(shape),
        "count": np.array(keep.sum(), dtype=np.float32),
        "eps": np.array(attrs.get("epsilon", 1e-5), dtype=np.float32),
        "axes": np.array([-1], dtype=np.int64),
    }
    for key, array in consts.items():
        model.graph.initializer.append(numpy_helper.from_array(array, f"{prefix}_{key}"))

    def reduce_sum(x: str, out: str) -> onnx.NodeProto:
        if opset >= 13:
            return helper.make_node("ReduceSum", [x, f"{prefix}_axes"], [out], keepdims=1)
        return helper.make_node("ReduceSum", [x], [out], axes=[-1], keepdims=1)

    x, p = node.input[0], prefix
    nodes = [
        reduce_sum(x, f"{p}_sum"),
        helper.make_node("Div", [f"{p}_sum", f"{p}_count"], [f"{p}_mean"]),
        helper.make_node("Sub", [x, f"{p}_mean"], [f"{p}_centered_all"]),
        helper.make_node("Mul", [f"{p}_centered_all", f"{p}_mask"], [f"{p}_centered"]),
        helper.make_node("Mul", [f"{p}_centered", f"{p}_centered"], [f"{p}_square"]),
        reduce_sum(f"{p}_square", f"{p}_sqsum"),
        helper.make_node("Div", [f"{p}_sqsum", f"{p}_count"], [f"{p}_var"]),
        helper.make_node("Add", [f"{p}_var", f"{p}_eps"], [f"{p}_var_eps"]),
        helper.make_node("Sqrt", [f"{p}_var_eps"], [f"{p}_std"]),
        helper.make_node("Div", [f"{p}_centered", f"{p}_std"], [f"{p}_normed"]),
    ]
    scaled = f"{p}_normed"
    if len(node.input) > 1 and node.input[1]:
        nodes.append(helper.make_node("Mul", [scaled, node.input[1]], [f"{p}_scaled"]))
        scaled = f"{p}_scaled"
    if len(node.input) > 2 and node.input[2]:
        nodes.append(helper.make_node("Add", [scaled, node.input[2]], [node.output[0]]))
    else:
        nodes.append(helper.make_node("Identity", [scaled], [node.output[0]]))
    del source
    return nodes


def _elem_types(model: onnx.ModelProto, wanted: set[str] | None = None) -> dict[str, int]:
    """Element types by value name; names in ``wanted`` the model does not declare are
    inferred on a weightless copy (initializers as typed inputs)."""
    types = {}
    for info in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        if info.type.HasField("tensor_type"):
            types[info.name] = info.type.tensor_type.elem_type
    if wanted and not wanted <= types.keys():
        light = onnx.ModelProto(ir_version=model.ir_version)
        light.opset_import.extend(model.opset_import)
        light.functions.extend(model.functions)
        light.graph.node.extend(model.graph.node)
        light.graph.input.extend(model.graph.input)
        light.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, t.dims)
                                 for t in model.graph.initializer if t.name not in types)
        light.graph.output.extend(model.graph.output)
        try:
            inferred = onnx.shape_inference.infer_shapes(light).graph.value_info
        except Exception:  # an uninferable graph keeps the float default
            inferred = []
        for info in inferred:
            if info.type.HasField("tensor_type") and info.name not in types:
                types[info.name] = info.type.tensor_type.elem_type
    return types


def _insert_after_producers(graph: onnx.GraphProto, extra: list[onnx.NodeProto]) -> None:
    by_input = {n.input[0]: n for n in extra}
    ordered = []
    produced_now = set(i.name for i in graph.input) | set(i.name for i in graph.initializer)
    for name in list(by_input):
        if name in produced_now:
            ordered.append(by_input.pop(name))
    for node in graph.node:
        ordered.append(node)
        for out in node.output:
            if out in by_input:
                ordered.append(by_input.pop(out))
    del graph.node[:]
    graph.node.extend(ordered)
