"""Tiny builder for test graphs: random initializers, readable op chains."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class GraphBuilder:
    def __init__(self, opset: int = 17, seed: int = 0) -> None:
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def input(self, shape, name: str = "x", dtype=TensorProto.FLOAT) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, dtype, list(shape)))
        return name

    def init(self, value, name: str | None = None) -> str:
        name = name or self.name("w")
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(self, *shape: int, scale: float = 0.5) -> str:
        return self.init(self.rng.standard_normal(shape).astype(np.float32) * scale)

    def positive(self, *shape: int) -> str:
        return self.init((np.abs(self.rng.standard_normal(shape)) + 0.5).astype(np.float32))

    def ints(self, values) -> str:
        return self.init(np.asarray(values, dtype=np.int64))

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, name: str | None = None,
           domain: str = "", **attrs) -> str | list[str]:
        name = name or self.name(op_type.lower())
        outs = [f"{name}_out{i}" if n_out > 1 else f"{name}_out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, domain=domain,
                                           **attrs))
        return outs if n_out > 1 else outs[0]

    # common blocks -----------------------------------------------------------
    def conv(self, x: str, c_in: int, c_out: int, k: int = 3, group: int = 1,
             bias: bool = True, name: str | None = None, **attrs) -> str:
        w = self.weight(c_out, c_in // group, k, k)
        inputs = [x, w] + ([self.weight(c_out)] if bias else [])
        return self.op("Conv", inputs, name=name, pads=[k // 2] * 4, group=group, **attrs)

    def bn(self, x: str, c: int) -> str:
        return self.op("BatchNormalization", [x, self.positive(c), self.weight(c),
                                              self.weight(c), self.positive(c)])

    def output(self, name: str, dtype=TensorProto.FLOAT, shape=None) -> None:
        self.outputs.append(helper.make_tensor_value_info(name, dtype, shape))

    def model(self, ir_version: int = 8) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "test", self.inputs, self.outputs, self.inits)
        opsets = [helper.make_opsetid("", self.opset)]
        domains = {n.domain for n in self.nodes if n.domain}
        opsets += [helper.make_opsetid(d, 1) for d in sorted(domains)]
        model = helper.make_model(graph, opset_imports=opsets)
        model.ir_version = ir_version
        return _with_output_shapes(model)


def _with_output_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give graph outputs the types shape inference finds (the checker wants a shape)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # leave the model as built; tests of broken models want that
        return model
    known = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.output]}
    for out in model.graph.output:
        info = known.get(out.name)
        if info is not None and info.type.tensor_type.HasField("shape"):
            out.type.CopyFrom(info.type)
    return model
