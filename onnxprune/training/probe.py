"""Run a model or a fragment of it in ONNX Runtime to read intermediate values.

1. :func:`probe_values` runs the whole model once on real feeds with the named
   intermediate tensors added as outputs, and returns them by name.
2. :func:`run_fragment` runs a few nodes alone: every input they read is an
   initializer (weights, constants) or a graph input fed with its probed value.
"""

from __future__ import annotations

__all__ = ["probe_values", "run_fragment"]

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxprune.graph import runtime
from onnxprune.graph.protos import node_reads
from onnxprune.training.ort import runtime_ready

_NP_TO_ONNX = {np.dtype(k): v for k, v in {
    np.float32: onnx.TensorProto.FLOAT, np.float64: onnx.TensorProto.DOUBLE,
    np.float16: onnx.TensorProto.FLOAT16, np.int64: onnx.TensorProto.INT64,
    np.int32: onnx.TensorProto.INT32, np.int8: onnx.TensorProto.INT8,
    np.uint8: onnx.TensorProto.UINT8, np.bool_: onnx.TensorProto.BOOL}.items()}


def probe_values(model: onnx.ModelProto, feeds: dict[str, np.ndarray],
                 names: list[str]) -> dict[str, np.ndarray]:
    """Values of ``names`` when ``model`` runs on ``feeds`` (rule 1)."""
    proto = runtime_ready(model)
    known = {o.name for o in proto.graph.output}
    for name in dict.fromkeys(names):
        if name not in known:
            proto.graph.output.append(onnx.ValueInfoProto(name=name))
    session = runtime.make_session(proto, optimize=False)
    wanted = [o.name for o in session.get_outputs()]
    inputs = {i.name for i in session.get_inputs()}
    values = session.run(None, {k: v for k, v in feeds.items() if k in inputs})
    result = dict(zip(wanted, values))
    return {n: np.asarray(result[n]) for n in names if n in result}


def run_fragment(model: onnx.ModelProto, nodes: list[onnx.NodeProto],
                 new_inits: list[onnx.TensorProto], outputs: list[str],
                 probed: dict[str, np.ndarray], inits: dict[str, np.ndarray],
                 ) -> list[np.ndarray]:
    """Outputs of ``nodes`` run alone (rule 2)."""
    produced = {o for n in nodes for o in n.output}
    own = {t.name for t in new_inits}
    needed = [i for n in nodes for i in node_reads(n) if i not in produced and i not in own]
    initializers = list(new_inits)
    graph_inputs, feeds = [], {}
    for name in dict.fromkeys(needed):
        if name in inits:
            initializers.append(numpy_helper.from_array(inits[name], name))
        elif name in probed:
            value = np.asarray(probed[name])
            graph_inputs.append(helper.make_tensor_value_info(
                name, _NP_TO_ONNX[value.dtype], list(value.shape)))
            feeds[name] = value
        else:
            raise KeyError(f"no probed value for '{name}'")
    graph = helper.make_graph(list(nodes), "fragment", graph_inputs,
                              [onnx.ValueInfoProto(name=o) for o in outputs], initializers)
    fragment = helper.make_model(graph, opset_imports=list(model.opset_import))
    fragment.ir_version = model.ir_version
    session = runtime.make_session(runtime_ready(fragment), optimize=False)
    return session.run(None, feeds)
