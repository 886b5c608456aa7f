"""BatchNormalization running statistics that match fine-tuned weights.

The training graph normalises with batch statistics; the stored running mean and
variance describe the *original* weights. After training:

1. A statistics model is built from the trained model: every inference-form
   ``BatchNormalization`` (one output, initializer parameters) normalises with the
   statistics of its input over the batch (mean and biased variance over all axes
   but 1, as the training graph does) and exposes them as extra outputs.
2. It runs on training batches (the training batch size); the running mean and
   variance become the averages of the per-batch statistics, i.e. what the layer
   saw while it was trained (PyTorch's ``update_bn`` with the training graph's
   biased variance).
3. :func:`statistics_mismatch` says whether training with batch statistics suits the
   data at all: the relative L2 distance between the model's float outputs with batch
   statistics and with its stored ones on one batch. Data the statistics were
   collected on gives a few percent; other data (or never-trained statistics) much more.
"""

from __future__ import annotations

__all__ = ["batch_statistics_model", "batchnorm_stats", "recalibrate", "statistics_mismatch"]

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.graph import runtime
from onnxprune.training.legalize import NodeBuilder
from onnxprune.training.ort import runtime_ready


def _bn_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    inits = {t.name for t in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "BatchNormalization"
            and n.domain in ("", "ai.onnx") and len([o for o in n.output if o]) == 1
            and all(i in inits for i in n.input[1:5])]


def batchnorm_stats(model: onnx.ModelProto) -> list[str]:
    """Names of the running mean/variance initializers of the model's BN layers."""
    return [name for n in _bn_nodes(model) for name in n.input[3:5]]


def batch_statistics_model(model: onnx.ModelProto, ranks: dict[str, int],
                           ) -> tuple[onnx.ModelProto, list[tuple[str, str, str, str]]]:
    """Rule 1: the model normalising by batch statistics, with them as extra outputs.

    ``ranks`` gives the rank of every BN input; returns the model and, per BN,
    ``(batch mean output, batch variance output, running mean init, running var init)``.
    """
    proto = onnx.ModelProto()
    proto.CopyFrom(model)
    graph = proto.graph
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    targets = {n.output[0] for n in _bn_nodes(proto)}
    nodes, exposed = [], []
    for index, node in enumerate(graph.node):
        if node.output[0] not in targets:
            nodes.append(node)
            continue
        b = NodeBuilder(node, index, opset, {}, {})
        rank = ranks[node.input[0]]
        axes = [0, *range(2, rank)]
        mean = b.reduce_mean(b.x, axes)
        centered = b.op("Sub", [b.x, mean])
        var = b.reduce_mean(b.op("Mul", [centered, centered]), axes)
        eps = b.const(float(b.attr("epsilon", 1e-5)))
        y = b.op("Div", [centered, b.op("Sqrt", [b.op("Add", [var, eps])])])
        shape = [-1] + [1] * (rank - 2)
        y = b.op("Mul", [y, b.reshape(node.input[1], shape)])
        b.op("Add", [y, b.reshape(node.input[2], shape)], b.out)
        nodes.extend(b.done())
        graph.initializer.extend(b.new_inits)
        exposed.append((mean, var, node.input[3], node.input[4]))
    del graph.node[:]
    graph.node.extend(nodes)
    for mean, var, _, _ in exposed:
        graph.output.extend([onnx.ValueInfoProto(name=mean), onnx.ValueInfoProto(name=var)])
    return proto, exposed


def recalibrate(model: onnx.ModelProto, batches: Iterable[dict[str, np.ndarray]],
                ) -> dict[str, np.ndarray]:
    """New running statistics ``{initializer name: array}`` for ``model``'s BN layers."""
    from onnxprune.training.probe import probe_values

    nodes = _bn_nodes(model)
    if not nodes:
        return {}
    iterator = iter(batches)
    first = next(iterator, None)
    if first is None:
        return {}
    probed = probe_values(model, first, [n.input[0] for n in nodes])
    stats, exposed = batch_statistics_model(model, {k: v.ndim for k, v in probed.items()})
    session = runtime.make_session(runtime_ready(stats), optimize=False)
    wanted = [n for pair in exposed for n in pair[:2]]
    inputs = {i.name for i in session.get_inputs()}
    sums = dict.fromkeys(wanted, 0.0)
    count = 0
    for feeds in [first, *iterator]:
        values = dict(zip(wanted, session.run(wanted, {k: v for k, v in feeds.items()
                                                       if k in inputs})))
        for name in wanted:
            sums[name] = sums[name] + np.asarray(values[name], np.float64)
        count += 1
    inits = {t.name: t for t in model.graph.initializer}
    result = {}
    for mean, var, mean_init, var_init in exposed:
        dtype = numpy_helper.to_array(inits[mean_init]).dtype
        result[mean_init] = (sums[mean] / count).reshape(-1).astype(dtype)
        result[var_init] = (sums[var] / count).reshape(-1).astype(dtype)
    return result


def statistics_mismatch(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> float:
    """Rule 3: ``||y_batch_stats - y_stored|| / ||y_stored||`` over float outputs."""
    from onnxprune.training.probe import probe_values

    nodes = _bn_nodes(model)
    if not nodes:
        return 0.0
    probed = probe_values(model, feeds, [n.input[0] for n in nodes])
    stats, _ = batch_statistics_model(model, {k: v.ndim for k, v in probed.items()})
    del stats.graph.output[len(model.graph.output):]
    session = runtime.make_session(runtime_ready(stats), optimize=False)
    inputs = {i.name for i in session.get_inputs()}
    batch = session.run(None, {k: v for k, v in feeds.items() if k in inputs})
    stored = runtime.make_session(runtime_ready(model), optimize=False).run(None, feeds)
    num = den = 0.0
    for a, b in zip(batch, stored):
        if np.issubdtype(np.asarray(b).dtype, np.floating):
            num += float(np.sum((np.asarray(a, np.float64) - b) ** 2))
            den += float(np.sum(np.asarray(b, np.float64) ** 2))
    return float(np.sqrt(num / den)) if den > 0 else 0.0
