"""Per-sample gradients of a loss with respect to channel gates, from ORT training.

Method (the "gate" formulation of Molchanov et al. 2019 / Fisher pruning, Theis et
al. 2018): every probe tensor ``a`` is multiplied by a trainable gate ``g`` of shape
``[B, ..., C, ...]`` (batch and the probe's channel axis; ones), the only
trainable parameters. Then ``dL/dg[n, p] = sum over the other axes of a * dL/da``
for sample ``n`` and position ``p``: the first-order change of the loss when that
position is zeroed, which is what removing its unit does (masked equivalence).
ORT 1.19 returns gradients for initializers only, hence gates rather than
activations as inputs.

Loss cases:

1. Classifier (first output ``[N, K]`` logits): cross-entropy against labels
   *sampled* from the model's own softmax, summed over the batch (the true Fisher
   information; a distillation loss against the original's distribution). With
   ``use_labels=True`` and labels in the data, the given labels are used instead
   (the empirical Fisher). On the digits CNN, which fits its training data
   perfectly, the given labels carry almost no gradient and rank channels worse
   (docs/calibration.md), hence the default.
2. Other outputs: ``sum_o r_o * y_o`` with ``r_o ~ N(0, 1/var(y_o))``: the gradient
   of an MSE distillation loss against the original outputs plus Gaussian noise
   (the Fisher of a Gaussian output model), normalised per output.

A plain distillation loss (KL or MSE against the original outputs) is useless: the
gated model *is* the original at ``g = 1``, so its gradient is exactly zero.

Batches are padded to the fixed gate batch ``B``; padded rows carry zero loss weight
and are discarded.

Rows: a probe's axis 0 holds ``R = k * B`` rows (``k = 1`` for batch-first tensors;
transformers flatten batch and sequence into the rows a ``Gemm`` reads). The gate is
``[R, ..., C, ...]`` and the rows of a sample are summed. Which rows belong to which
sample is measured, not assumed (:func:`row_layouts`): running the model on the batch
rolled by one sample must roll the probe's rows by ``k`` (sample-major, ``(B, k)``) or
roll them within blocks of ``B`` (sample-minor, ``(k, B)``, sequence-first layouts).
A probe that fits neither makes the model unsupported for gradients (``auto`` then
falls back to ``activation``).

The model is first legalized for ORT training exactly as for fine-tuning
(:func:`onnxprune.training.legalize.legalize` with ``bn="frozen"``: inference-exact
differentiable forms of BatchNormalization, Dropout, HardSwish, ConvTranspose, Resize,
...); the artifacts are built by :func:`onnxprune.training.ort.build_artifacts`
(ORT's INFO lines go to a log file, IR and opset lowered for the runtime).
"""

from __future__ import annotations

__all__ = ["GateGradients"]

import logging
import re
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxprune.calibration.graph_edit import multiply_tensors
from onnxprune.calibration.probes import Probe
from onnxprune.calibration.tap import quiet_session
from onnxprune.data import DataSource
from onnxprune.errors import DataError, RuntimeMissingError, UnsupportedModelError
from onnxprune.graph import runtime
from onnxprune.graph.protos import ancestors
from onnxprune.training.legalize import legalize, max_relative_diff
from onnxprune.training.ort import build_artifacts
from onnxprune.training.ort import import_training as _import_training

logger = logging.getLogger(__name__)

_LOSS = "onnxprune_loss"
MISSING = ("gradients need the ONNX Runtime training build: pip install 'onnxprune[train]' "
           "(onnxruntime-training-cpu 1.19.2); or use --criterion activation, which needs "
           "only inference")


def import_training() -> tuple[Any, Any]:
    """``(artifacts, api)`` of ``onnxruntime.training``; the error names the fallback."""
    try:
        return _import_training()
    except RuntimeMissingError as exc:
        raise RuntimeMissingError(MISSING) from exc


def _gate_name(index: int) -> str:
    return f"onnxprune_gate_{index}"


def _explain(exc: Exception) -> str:
    """The useful part of an ORT training error (its C++ location stripped)."""
    text = " ".join(str(exc).split())
    op = re.search(r"has not been registered: (\w+)", text)
    if op:
        return f"no gradient for op {op.group(1)}"
    kernel = re.search(r"Could not find an implementation for (\w+)", text)
    if kernel:
        return f"no CPU kernel for {kernel.group(1)}"
    for marker in (" : FAIL : ", "was false. ", "] : "):
        if marker in text:
            text = text.rsplit(marker, 1)[1]
            break
    return text[:240]


def _rows_match(base: np.ndarray, rolled: np.ndarray, batch: int, layout: str) -> bool:
    """Whether ``rolled`` is ``base`` with every sample moved one position on."""
    rows = base.shape[0]
    k = rows // batch
    shape = (batch, k, -1) if layout == "major" else (k, batch, -1)
    expected = np.roll(base.reshape(shape), 1, axis=0 if layout == "major" else 1)
    scale = max(float(np.abs(base).max(initial=0.0)), 1e-6)
    return bool(np.abs(expected - rolled.reshape(shape)).max(initial=0.0) <= 1e-4 * scale)


def row_layouts(model: onnx.ModelProto, probes: list[Probe], feeds: dict[str, np.ndarray],
                batch: int) -> dict[str, tuple[str, int]]:
    """Per probe, ``(layout, rows)``: how its axis-0 rows map to the ``batch`` samples.

    ``layout`` is ``"major"`` (rows ``[i*k, (i+1)*k)`` are sample ``i``) or
    ``"minor"`` (rows ``i, i+B, i+2B, ...``); raises :class:`UnsupportedModelError`
    for a probe whose rows follow neither (see the module docstring).
    """
    from onnxprune.calibration.tap import Tap

    tap = Tap(model, [p.name for p in probes])
    base = tap.run(feeds)
    rolled = tap.run({name: np.roll(value, 1, axis=0) for name, value in feeds.items()})
    layouts = {}
    for probe in probes:
        a, b = np.asarray(base[probe.name]), np.asarray(rolled[probe.name])
        rows = a.shape[0] if a.ndim else 0
        if rows and rows % batch == 0 and (batch == 1 or _rows_match(a, b, batch, "major")):
            layouts[probe.name] = ("major", rows)
        elif rows and rows % batch == 0 and _rows_match(a, b, batch, "minor"):
            layouts[probe.name] = ("minor", rows)
        else:
            raise UnsupportedModelError(
                f"tensor '{probe.name}' (shape {list(a.shape)}) does not keep the samples of "
                f"a batch of {batch} in separate rows, so per-sample gradients cannot be read "
                "there; use --criterion activation")
    return layouts


def _root_gates(proto: onnx.ModelProto) -> list[str]:
    """Multiply every float graph input by a trainable scalar 1 (returned names).

    ORT's gradient builder then needs the gradient of every tensor between the inputs
    and the loss. Without that, a tensor upstream of all gates that several Concats
    read (DenseNet) gets its gradient defined once per Concat and the build fails with
    "Duplicate definition"; the extra input gradients cost little.
    """
    graph = proto.graph
    floats = [i.name for i in graph.input if i.type.tensor_type.elem_type == TensorProto.FLOAT
              and i.name not in {t.name for t in graph.initializer}]
    names = {name: f"onnxprune_root_gate_{index}" for index, name in enumerate(floats)}
    for gate in names.values():
        graph.initializer.append(numpy_helper.from_array(np.ones((), np.float32), gate))
    multiply_tensors(graph, names, "rooted")
    return list(names.values())


def _reaching_outputs(model: onnx.ModelProto, probes: list[Probe]) -> list[Probe]:
    """The probes from which some graph output can be reached (others get no gradient)."""
    needed = ancestors(model.graph, [o.name for o in model.graph.output])
    return [p for p in probes if p.name in needed]


def _refuse_native_crashes(model: onnx.ModelProto, probes: list[Probe]) -> None:
    """ORT training 1.19 kills the process on some graphs: its gradient builder aborts on
    If/Loop/Scan nodes, and running the gradient of a GRU segfaults. Refuse those first
    (control flow anywhere; a recurrent node downstream of a probe), so ``auto`` falls
    back to activations instead of the CLI dying."""
    flows = [n.name or n.op_type for n in model.graph.node
             if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                    for a in n.attribute)]
    if flows:
        raise UnsupportedModelError(
            f"ONNX Runtime training cannot differentiate through control flow "
            f"({', '.join(flows[:3])}); use --criterion activation")
    names = {p.name for p in probes}
    for node in model.graph.node:
        if node.op_type in ("LSTM", "GRU", "RNN") and names & ancestors(model.graph,
                                                                         node.input):
            raise UnsupportedModelError(
                f"ONNX Runtime training cannot differentiate through {node.op_type} "
                f"'{node.name}' (channels before it are scored through it); use "
                "--criterion activation")


class GateGradients:
    """Build once, then ``stream(data)`` per-sample gate gradients batch by batch."""

    def __init__(self, model: onnx.ModelProto, probes: list[Probe], batch: int,
                 data: DataSource, seed: int = 0, use_labels: bool = False) -> None:
        self.model, self.batch, self.seed = model, batch, seed
        self.probes = _reaching_outputs(model, probes)
        self.reference = quiet_session(model)
        self.outputs = self.reference.get_outputs()
        first = self.outputs[0]
        self.classifier = (first.type == "tensor(float)" and len(first.shape) == 2
                           and isinstance(first.shape[1], int) and first.shape[1] > 1)
        self.use_labels = use_labels and data.has_labels and self.classifier
        if use_labels and data.has_labels and not self.classifier:
            logger.warning("labels are ignored for gradients: the first output is not "
                           "[N, K] logits")
        self._tmp = tempfile.TemporaryDirectory(prefix="onnxprune-grad-")
        self._build(data)

    # -- graph -----------------------------------------------------------------------
    def _build(self, data: DataSource) -> None:
        _, api = import_training()
        _refuse_native_crashes(self.model, self.probes)
        feeds = self._pad(next(data.batches(self.batch)))[0]
        shapes = {o.name: r.shape for o, r in zip(self.outputs, self.reference.run(None, feeds))}
        self.rows = row_layouts(self.model, self.probes, feeds, self.batch)
        legal = legalize(runtime.to_runtime_proto(self.model), self.batch, feeds, bn="frozen",
                         warn=False)
        self._check_equal(legal.model, feeds)
        proto = legal.model
        self._insert_gates(proto)
        names = [_gate_name(i) for i in range(len(self.probes))] + _root_gates(proto)
        self.loss_inputs = self._append_loss(proto, shapes)
        try:
            built = build_artifacts(proto, names, [], self._tmp.name, optimizer="sgd")
            self.state = api.CheckpointState.load_checkpoint(built.checkpoint)
            self.module = api.Module(built.training_model, self.state)
        except Exception as exc:
            frozen = "; ".join(f"{node}: {why}" for node, why in legal.frozen_nodes.items())
            raise UnsupportedModelError(
                f"ONNX Runtime training cannot differentiate this model ({_explain(exc)}"
                f"{'; not rewritable: ' + frozen if frozen else ''}); use --criterion "
                "activation") from exc
        self.module.train()
        self.input_order = self.module.input_names()

    def _check_equal(self, legal: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> None:
        """The differentiable form must compute what the model computes (on ``feeds``)."""
        got = runtime.make_session(legal, optimize=False).run(None, feeds)
        diff = max_relative_diff(got, self.reference.run(None, feeds))
        if diff > 1e-4:
            raise UnsupportedModelError(
                f"the differentiable form of the model differs from it by {diff:.1e} "
                "(relative); this is an onnxprune bug, please report it (use --criterion "
                "activation meanwhile)")

    def _insert_gates(self, proto: onnx.ModelProto) -> None:
        graph = proto.graph
        for index, probe in enumerate(self.probes):
            shape = [1] * probe.rank
            shape[0], shape[probe.axis] = self.rows[probe.name][1], len(probe.ids)
            graph.initializer.append(numpy_helper.from_array(
                np.ones(shape, np.float32), _gate_name(index)))
        multiply_tensors(graph, {p.name: _gate_name(i) for i, p in enumerate(self.probes)},
                         "gated")

    def _append_loss(self, proto: onnx.ModelProto, shapes: dict[str, tuple]) -> list[str]:
        graph = proto.graph
        terms, inputs = [], []
        if self.classifier:
            logits = self.outputs[0].name
            shape = list(shapes[logits])
            graph.input.append(helper.make_tensor_value_info("onnxprune_onehot",
                                                             TensorProto.FLOAT, shape))
            graph.node.extend([
                helper.make_node("LogSoftmax", [logits], ["onnxprune_logp"], axis=-1),
                helper.make_node("Mul", ["onnxprune_logp", "onnxprune_onehot"],
                                 ["onnxprune_ce_terms"]),
                helper.make_node("ReduceSum", ["onnxprune_ce_terms"], ["onnxprune_ce_sum"],
                                 keepdims=0),
                helper.make_node("Neg", ["onnxprune_ce_sum"], ["onnxprune_term0"]),
            ])
            terms.append("onnxprune_term0")
            inputs.append("onnxprune_onehot")
        else:
            for index, out in enumerate(self.outputs):
                if out.type != "tensor(float)":
                    continue
                name = f"onnxprune_proj_{index}"
                graph.input.append(helper.make_tensor_value_info(
                    name, TensorProto.FLOAT, list(shapes[out.name])))
                graph.node.extend([
                    helper.make_node("Mul", [out.name, name], [f"{name}_terms"]),
                    helper.make_node("ReduceSum", [f"{name}_terms"], [f"onnxprune_term{index}"],
                                     keepdims=0),
                ])
                terms.append(f"onnxprune_term{index}")
                inputs.append(name)
            if not terms:
                raise UnsupportedModelError("gradients need a float model output")
        total = terms[0]
        for index, term in enumerate(terms[1:]):   # Add chain: ORT has no gradient for Sum
            graph.node.append(helper.make_node("Add", [total, term], [f"onnxprune_total{index}"]))
            total = f"onnxprune_total{index}"
        graph.node.append(helper.make_node("Identity", [total], [_LOSS]))
        del graph.output[:]
        graph.output.append(helper.make_tensor_value_info(_LOSS, TensorProto.FLOAT, []))
        return inputs

    # -- running ---------------------------------------------------------------------
    def _pad(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        real = len(next(iter(feeds.values())))
        if real == self.batch:
            return feeds, real
        padded = {}
        for name, array in feeds.items():
            extra = np.zeros((self.batch - real, *array.shape[1:]), dtype=array.dtype)
            padded[name] = np.concatenate([array, extra])
        return padded, real

    def _loss_feeds(self, feeds, labels, real: int, rng) -> dict[str, np.ndarray]:
        outputs = self.reference.run(None, feeds)
        if self.classifier:
            logits = np.asarray(outputs[0], dtype=np.float64)
            k = logits.shape[1]
            if self.use_labels:
                chosen = np.asarray(labels).astype(np.int64).reshape(-1)
                if chosen.min(initial=0) < 0 or chosen.max(initial=0) >= k:
                    raise DataError(f"labels must be class ids in [0, {k}) for a model with "
                                    f"{k} outputs; got values in [{chosen.min()}, "
                                    f"{chosen.max()}]")
            else:
                p = np.exp(logits[:real] - logits[:real].max(axis=1, keepdims=True))
                p /= p.sum(axis=1, keepdims=True)
                chosen = np.array([rng.choice(k, p=row) for row in p])
            onehot = np.zeros((self.batch, k), np.float32)
            onehot[np.arange(real), chosen[:real]] = 1.0
            return {"onnxprune_onehot": onehot}
        result = {}
        for index, (_out, value) in enumerate(zip(self.outputs, outputs)):
            name = f"onnxprune_proj_{index}"
            if name not in self.loss_inputs:
                continue
            scale = float(np.std(value[:real])) or 1.0
            noise = rng.standard_normal(value.shape).astype(np.float32) / scale
            noise[real:] = 0.0
            result[name] = noise
        return result

    def stream(self, data: DataSource) -> Iterator[tuple[int, list[np.ndarray]]]:
        """``(real rows, [gate gradient per probe, shape [rows, positions]])`` per batch."""
        rng = np.random.default_rng(self.seed)
        for labels, feeds in data.labeled_batches(self.batch):
            feeds, real = self._pad(feeds)
            if labels is not None and len(labels) < self.batch:
                labels = np.concatenate([labels, np.zeros(self.batch - len(labels),
                                                          labels.dtype)])
            all_feeds = {**feeds, **self._loss_feeds(feeds, labels, real, rng)}
            self.module.lazy_reset_grad()
            self.module(*[all_feeds[name] for name in self.input_order])
            grads = []
            for index, probe in enumerate(self.probes):
                grad = self.state.parameters[_gate_name(index)].grad
                grad = np.moveaxis(np.asarray(grad, dtype=np.float64), probe.axis, -1)
                grads.append(self._per_sample(probe, grad)[:real])
            yield real, grads

    def _per_sample(self, probe: Probe, grad: np.ndarray) -> np.ndarray:
        """``[B, positions]``: the gate gradient's rows summed per sample."""
        layout, rows = self.rows[probe.name]
        flat = grad.reshape(rows, -1)
        k = rows // self.batch
        if layout == "major":
            return flat.reshape(self.batch, k, -1).sum(axis=1)
        return flat.reshape(k, self.batch, -1).sum(axis=0)

    def close(self) -> None:
        self._tmp.cleanup()
