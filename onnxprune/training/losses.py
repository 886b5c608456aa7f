"""Training losses as an ONNX subgraph, the per-batch inputs they read, and a numpy twin.

Loss kinds (``loss=``):

1. ``distill`` (default): every float output of the model is compared with the
   teacher's output on the same batch. An output shaped ``[N, K]`` (K > 1, logits)
   uses ``T^2 * KL(softmax(teacher / T) || softmax(student / T))`` averaged over the
   batch; any other float output uses the mean squared error divided by the
   teacher output's variance on the first batch (so outputs of different scales
   weigh alike). Terms are averaged over outputs, or weighted by ``weights``.
2. ``ce``: cross-entropy of the first ``[N, K]`` output against integer ``labels``.
3. ``mse``: mean squared error of the first float output against ``labels`` used as
   regression targets (same shape as the output).

:func:`append_loss` adds the subgraph (the model's outputs are replaced by the
scalar ``onnxprune_loss``); :meth:`LossPlan.feeds` computes its extra inputs for a
batch; :meth:`LossPlan.value` computes the same loss in numpy from model outputs,
which is how exported models are checked against the training graph.
"""

from __future__ import annotations

__all__ = ["LOSS", "LossPlan", "LossTerm", "append_loss", "plan_loss"]

import dataclasses

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxprune.errors import DataError, UsageError

LOSS = "onnxprune_loss"
LOSSES = ("distill", "ce", "mse")


@dataclasses.dataclass
class LossTerm:
    """One output's contribution: ``kind`` in ``kl``, ``mse``, ``ce``."""

    output: str
    position: int
    kind: str
    weight: float
    shape: tuple[int, ...]
    scale: float = 1.0  # mse: 1 / teacher variance (distill) or 1

    @property
    def inputs(self) -> list[str]:
        base = f"onnxprune_{self.position}"
        if self.kind == "kl":
            return [f"{base}_teacher_p", f"{base}_teacher_logp"]
        return [f"{base}_target"]


@dataclasses.dataclass
class LossPlan:
    kind: str
    temperature: float
    terms: list[LossTerm]

    @property
    def inputs(self) -> list[str]:
        return [name for term in self.terms for name in term.inputs]

    def to_dict(self) -> dict:
        return {"loss": self.kind, "temperature": self.temperature,
                "terms": [{"output": t.output, "kind": t.kind, "weight": round(t.weight, 6)}
                          for t in self.terms]}

    # -- per-batch inputs ------------------------------------------------------------
    def feeds(self, teacher: list[np.ndarray] | None, labels: np.ndarray | None,
              ) -> dict[str, np.ndarray]:
        """The loss inputs for one batch, from the teacher's outputs or the labels."""
        feeds = {}
        for term in self.terms:
            names = term.inputs
            if term.kind == "kl":
                logp = _log_softmax(np.asarray(teacher[term.position], np.float64)
                                    / self.temperature)
                feeds[names[0]] = np.exp(logp).astype(np.float32)
                feeds[names[1]] = logp.astype(np.float32)
            elif term.kind == "ce":
                feeds[names[0]] = _onehot(labels, term.shape)
            elif self.kind == "mse":
                feeds[names[0]] = _targets(labels, term.shape)
            else:
                feeds[names[0]] = np.asarray(teacher[term.position], np.float32)
        return feeds

    def value(self, outputs: list[np.ndarray], feeds: dict[str, np.ndarray]) -> float:
        """The loss of ``outputs`` (the model's, in order) in numpy (module docstring)."""
        total = 0.0
        for term in self.terms:
            y = np.asarray(outputs[term.position], np.float64)
            names = term.inputs
            if term.kind == "kl":
                p, logp = (np.asarray(feeds[n], np.float64) for n in names)
                logq = _log_softmax(y / self.temperature)
                value = self.temperature ** 2 * float((p * (logp - logq)).sum()) / len(y)
            elif term.kind == "ce":
                value = -float((feeds[names[0]] * _log_softmax(y)).sum()) / len(y)
            else:
                value = term.scale * float(((y - feeds[names[0]]) ** 2).mean())
            total += term.weight * value
        return total


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _onehot(labels: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if labels is None:
        raise DataError("--loss ce needs labels: add a 'labels' array to --data")
    ids = np.asarray(labels).reshape(-1)
    k = shape[1]
    if not np.issubdtype(ids.dtype, np.integer):
        if not np.all(ids == np.round(ids)):
            raise DataError("--loss ce needs integer class labels; use --loss mse for "
                            "regression targets")
        ids = ids.astype(np.int64)
    if ids.min(initial=0) < 0 or ids.max(initial=0) >= k:
        raise DataError(f"labels must be class ids in [0, {k}) for a model with {k} outputs; "
                        f"got values in [{ids.min()}, {ids.max()}]")
    onehot = np.zeros((len(ids), k), np.float32)
    onehot[np.arange(len(ids)), ids] = 1.0
    return onehot


def _targets(labels: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if labels is None:
        raise DataError("--loss mse needs targets: add a 'labels' array (the regression "
                        "targets) to --data")
    target = np.asarray(labels, np.float32)
    if target.size == int(np.prod(shape)) and target.shape != shape:
        target = target.reshape(shape)
    if target.shape != shape:
        raise DataError(f"--loss mse: labels of shape {list(target.shape)} do not match the "
                        f"model output {list(shape)}")
    return target


def _classifier(shape: tuple[int, ...]) -> bool:
    return len(shape) == 2 and shape[1] > 1


def plan_loss(kind: str, names: list[str], outputs: list[np.ndarray],
              teacher: list[np.ndarray] | None, temperature: float = 4.0,
              weights: list[float] | None = None) -> LossPlan:
    """The loss for a model whose outputs on the first batch are ``outputs``."""
    if kind not in LOSSES:
        raise UsageError(f"unknown loss {kind!r} (allowed: {', '.join(LOSSES)})")
    floats = [i for i, y in enumerate(outputs) if np.asarray(y).dtype == np.float32]
    if not floats:
        raise UsageError("fine-tuning needs a float32 model output")
    terms = []
    if kind == "distill":
        for i in floats:
            shape = tuple(np.shape(outputs[i]))
            if _classifier(shape):
                terms.append(LossTerm(names[i], i, "kl", 1.0, shape))
            else:
                var = float(np.var(np.asarray(teacher[i], np.float64)))
                terms.append(LossTerm(names[i], i, "mse", 1.0, shape,
                                      1.0 / var if var > 1e-12 else 1.0))
    elif kind == "ce":
        first = next((i for i in floats if _classifier(tuple(np.shape(outputs[i])))), None)
        if first is None:
            raise UsageError("--loss ce needs a model output shaped [N, classes]; use "
                             "--loss distill or mse")
        terms.append(LossTerm(names[first], first, "ce", 1.0, tuple(np.shape(outputs[first]))))
    else:
        first = floats[0]
        terms.append(LossTerm(names[first], first, "mse", 1.0, tuple(np.shape(outputs[first]))))
    if weights is not None:
        if len(weights) != len(terms):
            raise UsageError(f"{len(weights)} loss weights for {len(terms)} float outputs")
        for term, weight in zip(terms, weights):
            term.weight = float(weight)
    else:
        for term in terms:
            term.weight = 1.0 / len(terms)
    return LossPlan(kind, float(temperature), terms)


def append_loss(model: onnx.ModelProto, plan: LossPlan) -> onnx.ModelProto:
    """A copy of ``model`` whose only output is the scalar loss of ``plan``."""
    proto = onnx.ModelProto()
    proto.CopyFrom(model)
    graph = proto.graph
    outputs = [o.name for o in graph.output]
    parts = []

    def const(name: str, value: float) -> str:
        graph.initializer.append(numpy_helper.from_array(np.array(value, np.float32), name))
        return name

    def node(op: str, inputs: list[str], out: str, **attrs) -> str:
        graph.node.append(helper.make_node(op, inputs, [out], name=f"{out}_node", **attrs))
        return out

    for term in plan.terms:
        y, p = outputs[term.position], f"onnxprune_{term.position}"
        for name in term.inputs:
            graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                             list(term.shape)))
        batch = term.shape[0]
        if term.kind == "kl":
            scaled = node("Div", [y, const(f"{p}_t", plan.temperature)], f"{p}_scaled")
            logq = node("LogSoftmax", [scaled], f"{p}_logq", axis=-1)
            diff = node("Sub", [term.inputs[1], logq], f"{p}_diff")
            total = node("ReduceSum", [node("Mul", [term.inputs[0], diff], f"{p}_terms")],
                         f"{p}_sum", keepdims=0)
            factor = term.weight * plan.temperature ** 2 / batch
        elif term.kind == "ce":
            logq = node("LogSoftmax", [y], f"{p}_logq", axis=-1)
            total = node("ReduceSum", [node("Mul", [term.inputs[0], logq], f"{p}_terms")],
                         f"{p}_sum", keepdims=0)
            factor = -term.weight / batch
        else:
            diff = node("Sub", [y, term.inputs[0]], f"{p}_diff")
            total = node("ReduceSum", [node("Mul", [diff, diff], f"{p}_sq")], f"{p}_sum",
                         keepdims=0)
            factor = term.weight * term.scale / float(np.prod(term.shape))
        parts.append(node("Mul", [total, const(f"{p}_factor", factor)], f"{p}_loss"))
    total = parts[0]
    for index, part in enumerate(parts[1:]):
        total = node("Add", [total, part], f"onnxprune_loss_sum{index}")
    node("Identity", [total], LOSS)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(LOSS, TensorProto.FLOAT, []))
    return proto
