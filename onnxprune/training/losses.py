"""Training losses as an ONNX subgraph, the per-batch inputs they read, and a numpy twin.

Every term reads the tensor :func:`onnxprune.graph.outputs.output_heads` names for its
output: the *logits* (pre-activation input) of an output that ends in ``Softmax``,
``LogSoftmax`` or ``Sigmoid``, else the output itself. A loss on probabilities is
nearly flat (both distributions squashed), so it would hardly train. Loss kinds
(``loss=``):

1. ``distill`` (default): every float output is compared with the teacher's on the
   same batch.

   a. Softmax/LogSoftmax head: ``T^2 * KL(softmax(t / T) || softmax(s / T))`` on the
      logits over the head's softmax axis (opset < 13 coerced heads: every axis from
      ``axis`` on, flattened), averaged over the distributions (rows).
   b. Sigmoid head: binary cross-entropy with logits against the teacher's
      ``sigmoid(t)``, averaged over the elements.
   c. A plain output shaped ``[N, K]`` (K > 1) is taken as logits: as (a) on axis 1.
   d. Any other float output: the mean squared error divided by the teacher output's
      variance on the first batch (outputs of different scales weigh alike).

   Terms are averaged over outputs, or weighted by ``weights``.
2. ``ce``: labels against the first classifying output: cross-entropy on the logits
   of a Softmax/LogSoftmax head (integer class ids, one per row), else BCE with logits
   on a Sigmoid head (labels of the output's shape holding 0/1 or probabilities), else
   cross-entropy on a plain ``[N, K]`` output.
3. ``mse``: mean squared error of the first float output against ``labels`` used as
   regression targets (same shape as the output).
4. ``feature`` terms (:func:`add_feature_term`, distillation with ``distill_features``):
   MSE between the student's last feature map and the teacher's matched channels there
   (:mod:`onnxprune.training.features`), divided by their variance.

:func:`append_loss` adds the subgraph (the model's outputs are replaced by the
scalar ``onnxprune_loss``); :meth:`LossPlan.feeds` computes its extra inputs for a
batch; :meth:`LossPlan.value` computes the same loss in numpy from the tensors a
model run gives (outputs and logits by name), which is how exported models are
checked against the training graph. :meth:`LossPlan.to_dict` records, per term, the
tensor it reads and why.
"""

from __future__ import annotations

__all__ = ["LOSS", "LossPlan", "LossTerm", "add_feature_term", "append_loss", "plan_loss"]

import dataclasses

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxprune.errors import UnsupportedModelError, UsageError
from onnxprune.graph.outputs import OutputHead
from onnxprune.training.loss_rows import (
    bce_with_logits,
    class_targets,
    classes_view,
    log_softmax,
    regression_targets,
)

LOSS = "onnxprune_loss"
LOSSES = ("distill", "ce", "mse")


@dataclasses.dataclass
class LossTerm:
    """One output's contribution: ``kind`` in ``kl``, ``ce``, ``bce``, ``mse``.

    ``reads`` is the student tensor the term reads and ``teacher`` the teacher's tensor
    (distillation); ``shape`` is the shape of the loss view of ``reads``: ``[rows, K]``
    for a coerced softmax head, else the tensor's own shape (classes on ``axis``).
    """

    output: str
    position: int
    kind: str
    weight: float
    shape: tuple[int, ...]
    reads: str
    reason: str
    teacher: str = ""
    scale: float = 1.0  # mse: 1 / teacher variance (distill) or 1
    axis: int = -1  # kl/ce: class axis of the view
    flatten: int | None = None  # coerced head: the view is ``reads`` flattened from here
    channels: np.ndarray | None = None  # feature: the teacher channels (axis 1) matched

    @property
    def inputs(self) -> list[str]:
        base = f"onnxprune_{self.position}"
        if self.kind == "kl":
            return [f"{base}_teacher_p", f"{base}_teacher_logp"]
        return [f"{base}_target"]

    @property
    def rows(self) -> int:
        """Number of distributions (kl/ce) the term averages over."""
        return int(np.prod(self.shape)) // self.shape[self.axis]

    def view(self, value: np.ndarray) -> np.ndarray:
        return value if self.flatten is None else classes_view(value, self.flatten)

    def to_dict(self) -> dict:
        return {"output": self.output, "reads": self.reads, "kind": self.kind,
                "reason": self.reason, "weight": round(self.weight, 6)}

    def target(self, teacher: dict[str, np.ndarray]) -> np.ndarray:
        """The teacher tensor a ``feature``/``mse`` term compares with."""
        value = np.asarray(teacher[self.teacher], np.float32)
        return value if self.channels is None else np.take(value, self.channels, axis=1)


@dataclasses.dataclass
class LossPlan:
    kind: str
    temperature: float
    terms: list[LossTerm]

    @property
    def inputs(self) -> list[str]:
        return [name for term in self.terms for name in term.inputs]

    @property
    def tensors(self) -> list[str]:
        """Student tensors the terms read (outputs or logits), in term order."""
        return list(dict.fromkeys(t.reads for t in self.terms))

    def to_dict(self) -> dict:
        return {"loss": self.kind, "temperature": self.temperature,
                "terms": [t.to_dict() for t in self.terms]}

    # -- per-batch inputs ------------------------------------------------------------
    def feeds(self, teacher: dict[str, np.ndarray] | None, labels: np.ndarray | None,
              ) -> dict[str, np.ndarray]:
        """The loss inputs for one batch, from the teacher's tensors or the labels."""
        feeds = {}
        for term in self.terms:
            names = term.inputs
            if term.kind == "kl":
                t = term.view(np.asarray(teacher[term.teacher], np.float64))
                logp = log_softmax(t / self.temperature, term.axis)
                feeds[names[0]] = np.exp(logp).astype(np.float32)
                feeds[names[1]] = logp.astype(np.float32)
            elif term.kind == "ce":
                feeds[names[0]] = class_targets(labels, term.shape, term.axis)
            elif term.kind == "bce" and self.kind == "distill":
                t = np.asarray(teacher[term.teacher], np.float64)
                feeds[names[0]] = (1.0 / (1.0 + np.exp(-t))).astype(np.float32)
            elif term.kind == "bce":
                feeds[names[0]] = regression_targets(labels, term.shape, "ce", (0.0, 1.0))
            elif self.kind == "mse":
                feeds[names[0]] = regression_targets(labels, term.shape, "mse")
            else:
                feeds[names[0]] = term.target(teacher)
        return feeds

    def value(self, tensors: dict[str, np.ndarray], feeds: dict[str, np.ndarray]) -> float:
        """The loss of a model run (``tensors`` by name, with every ``reads``) in numpy."""
        total = 0.0
        for term in self.terms:
            y = term.view(np.asarray(tensors[term.reads], np.float64))
            target = [np.asarray(feeds[n], np.float64) for n in term.inputs]
            if term.kind == "kl":
                p, logp = target
                logq = log_softmax(y / self.temperature, term.axis)
                value = self.temperature ** 2 * float((p * (logp - logq)).sum()) / term.rows
            elif term.kind == "ce":
                value = -float((target[0] * log_softmax(y, term.axis)).sum()) / term.rows
            elif term.kind == "bce":
                value = float(bce_with_logits(y, target[0]).mean())
            else:
                value = term.scale * float(((y - target[0]) ** 2).mean())
            total += term.weight * value
        return total


def _classifier(shape: tuple[int, ...]) -> bool:
    return len(shape) == 2 and shape[1] > 1


def _term(head: OutputHead, kind: str, values: dict[str, np.ndarray],
          teacher: OutputHead | None) -> LossTerm:
    """The term of ``kind`` for ``head`` (rules 1-3 pick the kind)."""
    value = np.asarray(values[head.logits])
    common = {"output": head.output, "position": head.position, "kind": kind, "weight": 1.0,
              "teacher": teacher.logits if teacher else ""}
    if kind in ("kl", "ce") and head.kind in ("softmax", "log_softmax"):
        axis = head.axis if head.axis >= 0 else head.axis + value.ndim
        if head.coerced:
            return LossTerm(**common, shape=classes_view(value, axis).shape, reads=head.logits,
                            reason=head.reason, axis=1, flatten=axis)
        return LossTerm(**common, shape=value.shape, reads=head.logits, reason=head.reason,
                        axis=axis)
    if kind in ("kl", "ce"):
        return LossTerm(**common, shape=value.shape, reads=head.output, axis=1,
                        reason="plain [N, K] output: taken as logits (no activation before it)")
    if kind == "bce":
        return LossTerm(**common, shape=value.shape, reads=head.logits, reason=head.reason)
    return LossTerm(**common, shape=value.shape, reads=head.output,
                    reason="plain output: mean squared error" if head.kind == "plain"
                    else f"{head.kind} output compared as values (--loss mse)")


def _distill_kind(head: OutputHead, values: dict[str, np.ndarray]) -> str:
    if head.kind in ("softmax", "log_softmax"):
        return "kl"
    if head.kind == "sigmoid":
        return "bce"
    return "kl" if _classifier(np.shape(values[head.output])) else "mse"


def _ce_head(heads: list[OutputHead], values: dict[str, np.ndarray]) -> tuple[OutputHead, str]:
    for wanted in (("softmax", "log_softmax"), ("sigmoid",)):
        head = next((h for h in heads if h.kind in wanted), None)
        if head is not None:
            return head, "ce" if wanted[0] == "softmax" else "bce"
    head = next((h for h in heads if h.kind == "plain"
                 and _classifier(np.shape(values[h.output]))), None)
    if head is None:
        raise UsageError("--loss ce needs a classifying output (one ending in Softmax, "
                         "LogSoftmax or Sigmoid, or shaped [N, classes]); use --loss distill "
                         "or mse")
    return head, "ce"


def plan_loss(kind: str, heads: list[OutputHead], values: dict[str, np.ndarray],
              teacher: dict[str, np.ndarray] | None = None, temperature: float = 4.0,
              weights: list[float] | None = None,
              teacher_heads: list[OutputHead] | None = None) -> LossPlan:
    """The loss for a model whose tensors on the first batch are ``values`` (by name:
    every output and every head's logits); ``teacher`` likewise for the teacher, whose
    heads (``teacher_heads``, default ``heads``) match by output position."""
    if kind not in LOSSES:
        raise UsageError(f"unknown loss {kind!r} (allowed: {', '.join(LOSSES)})")
    floats = [h for h in heads if h.kind != "ignored"
              and np.asarray(values[h.output]).dtype == np.float32]
    if not floats:
        raise UsageError("fine-tuning needs a float32 model output")
    by_position = {h.position: h for h in (teacher_heads or heads)}
    terms = []
    if kind == "distill":
        for head in floats:
            term = _term(head, _distill_kind(head, values), values, by_position[head.position])
            if term.kind == "mse":
                term.teacher = by_position[head.position].output
                var = float(np.var(np.asarray(teacher[term.teacher], np.float64)))
                term.scale = 1.0 / var if var > 1e-12 else 1.0
                term.reason += ", divided by the teacher's variance"
            terms.append(term)
    elif kind == "ce":
        head, term_kind = _ce_head(floats, values)
        terms.append(_term(head, term_kind, values, None))
    else:
        terms.append(_term(floats[0], "mse", values, None))
    if weights is not None:
        if len(weights) != len(terms):
            raise UsageError(f"{len(weights)} loss weights for {len(terms)} float outputs")
        for term, weight in zip(terms, weights):
            term.weight = float(weight)
    else:
        for term in terms:
            term.weight = 1.0 / len(terms)
    return LossPlan(kind, float(temperature), terms)


def add_feature_term(plan: LossPlan, student: str, teacher: str, channels: np.ndarray,
                     student_value: np.ndarray, teacher_value: np.ndarray) -> LossTerm:
    """Kind 4: append the feature-map term to ``plan`` (weighted like the mean term)."""
    term = LossTerm("(feature map)", len(plan.terms) + 1000, "feature", 0.0,
                    tuple(np.shape(student_value)), student,
                    f"last feature map before the head ('{student}', {len(channels)} of "
                    f"{np.shape(teacher_value)[1]} teacher channels matched)",
                    teacher=teacher, channels=np.asarray(channels, np.int64))
    var = float(np.var(term.target({teacher: teacher_value}).astype(np.float64)))
    term.scale = 1.0 / var if var > 1e-12 else 1.0
    term.weight = float(np.mean([t.weight for t in plan.terms]))
    plan.terms.append(term)
    return term


def append_loss(model: onnx.ModelProto, plan: LossPlan) -> onnx.ModelProto:
    """A copy of ``model`` whose only output is the scalar loss of ``plan``; every term
    reads its ``reads`` tensor (the logits of an activated output) from the graph."""
    proto = onnx.ModelProto()
    proto.CopyFrom(model)
    graph = proto.graph
    known = {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    parts = []

    def const(name: str, value: float) -> str:
        graph.initializer.append(numpy_helper.from_array(np.array(value, np.float32), name))
        return name

    def node(op: str, inputs: list[str], out: str, **attrs) -> str:
        graph.node.append(helper.make_node(op, inputs, [out], name=f"{out}_node", **attrs))
        return out

    for term in plan.terms:
        if term.reads not in known:
            raise UnsupportedModelError(f"the training graph lacks the tensor '{term.reads}' "
                                        "the loss reads; this is an onnxprune bug")
        p = f"onnxprune_{term.position}"
        for name in term.inputs:
            graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                             list(term.shape)))
        y = term.reads if term.flatten is None else \
            node("Flatten", [term.reads], f"{p}_rows", axis=term.flatten)
        if term.kind == "kl":
            scaled = node("Div", [y, const(f"{p}_t", plan.temperature)], f"{p}_scaled")
            logq = node("LogSoftmax", [scaled], f"{p}_logq", axis=term.axis)
            diff = node("Sub", [term.inputs[1], logq], f"{p}_diff")
            terms = node("Mul", [term.inputs[0], diff], f"{p}_terms")
            factor = term.weight * plan.temperature ** 2 / term.rows
        elif term.kind == "ce":
            logq = node("LogSoftmax", [y], f"{p}_logq", axis=term.axis)
            terms = node("Mul", [term.inputs[0], logq], f"{p}_terms")
            factor = -term.weight / term.rows
        elif term.kind == "bce":  # softplus(y) - t*y, softplus written stably
            tail = node("Exp", [node("Neg", [node("Abs", [y], f"{p}_abs")], f"{p}_neg")],
                        f"{p}_exp")
            log = node("Log", [node("Add", [tail, const(f"{p}_one", 1.0)], f"{p}_1p")],
                       f"{p}_log")
            softplus = node("Add", [node("Relu", [y], f"{p}_relu"), log], f"{p}_softplus")
            terms = node("Sub", [softplus, node("Mul", [term.inputs[0], y], f"{p}_ty")],
                         f"{p}_terms")
            factor = term.weight / float(np.prod(term.shape))
        else:
            diff = node("Sub", [y, term.inputs[0]], f"{p}_diff")
            terms = node("Mul", [diff, diff], f"{p}_sq")
            factor = term.weight * term.scale / float(np.prod(term.shape))
        total = node("ReduceSum", [terms], f"{p}_sum", keepdims=0)
        parts.append(node("Mul", [total, const(f"{p}_factor", factor)], f"{p}_loss"))
    total = parts[0]
    for index, part in enumerate(parts[1:]):
        total = node("Add", [total, part], f"onnxprune_loss_sum{index}")
    node("Identity", [total], LOSS)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(LOSS, TensorProto.FLOAT, []))
    return proto
