"""What each graph output means: probabilities, log-probabilities, gates, or plain values.

Deployed models often end in an activation: Paddle inference models and Keras models with
an activation on the last layer end in ``Softmax``, detectors in ``Sigmoid``. Losses and
fidelity metrics computed on those outputs are nearly flat (a probability vector is
already squashed), so every comparison with the original reads the *pre-activation*
tensor instead. Rules, for every float graph output:

1. Walk back from the output through layout-only ops (``Reshape``, ``Transpose``,
   ``Identity``, ``Squeeze``, ``Unsqueeze``, ``Flatten``, ``Cast``) as long as each
   tensor on the way has exactly one consumer (so the walk never claims a tensor
   that other outputs also read).
2. If the walk ends at ``Softmax``, ``LogSoftmax`` or ``Sigmoid``, the output is of that
   kind and its *logits* are the activation's input. The axis is the activation's
   ``axis`` attribute (default ``1`` before opset 13, ``-1`` from 13 on), normalised to
   be non-negative; before opset 13 Softmax/LogSoftmax flatten every axis from ``axis``
   on into one (``coerced=True``).
3. Anything else is ``plain``: its logits are the output itself (``logits == output``).
4. Non-float outputs (ids, masks) are ``ignored`` and read by no loss or metric.

The rule reads names only, so it works on the original and on a pruned model alike
(the rewrite keeps node output names).
"""

from __future__ import annotations

__all__ = [
    "LAYOUT_OPS",
    "OutputHead",
    "output_heads",
    "softmax_rows",
    "with_logit_outputs",
]

import dataclasses
import logging

import numpy as np
import onnx

logger = logging.getLogger(__name__)

LAYOUT_OPS = frozenset({"Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze",
                        "Flatten", "Cast"})
_ACTIVATIONS = {"Softmax": "softmax", "LogSoftmax": "log_softmax", "Sigmoid": "sigmoid"}
_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
           onnx.TensorProto.BFLOAT16}


@dataclasses.dataclass(frozen=True)
class OutputHead:
    """One graph output and the tensor every comparison with the original reads."""

    output: str
    position: int
    kind: str  # softmax | log_softmax | sigmoid | plain | ignored
    logits: str  # pre-activation tensor (== output for plain/ignored)
    axis: int | None = None  # softmax kinds: axis of ``logits`` (non-negative if rank known)
    coerced: bool = False  # opset < 13 softmax: axes >= axis flattened into one
    path: tuple[str, ...] = ()  # op types between activation and output, output side last
    reason: str = ""

    @property
    def activated(self) -> bool:
        return self.kind in _ACTIVATIONS.values()

    def to_dict(self) -> dict:
        return {"output": self.output, "kind": self.kind, "reads": self.logits,
                "axis": self.axis, "reason": self.reason}


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    types = {}
    for info in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        if info.type.HasField("tensor_type"):
            types[info.name] = info.type.tensor_type.elem_type
    return types


class _Ranks:
    """Ranks of the model's tensors: declared ones, then (once, only when a negative
    axis needs one) those of onnx shape inference."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self._model, self._inferred = model, False
        self._ranks = self._read(model)

    @staticmethod
    def _read(model: onnx.ModelProto) -> dict[str, int]:
        ranks = {}
        for info in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
            tensor = info.type.tensor_type
            if info.type.HasField("tensor_type") and tensor.HasField("shape"):
                ranks[info.name] = len(tensor.shape.dim)
        return ranks

    def get(self, name: str) -> int | None:
        if name not in self._ranks and not self._inferred:
            self._inferred = True
            try:
                inferred = onnx.shape_inference.infer_shapes(self._model)
            except Exception as exc:  # an unusual graph: the axis stays negative
                logger.info("shape inference for output heads failed: %s", exc)
            else:
                self._ranks.update(self._read(inferred))
        return self._ranks.get(name)


def _axis(node: onnx.NodeProto, opset: int, ranks: _Ranks) -> int:
    default = 1 if opset < 13 else -1
    axis = next((a.i for a in node.attribute if a.name == "axis"), default)
    if axis < 0:
        rank = ranks.get(node.input[0])
        if rank is not None:
            axis += rank
    return int(axis)


def output_heads(model: onnx.ModelProto) -> list[OutputHead]:
    """One :class:`OutputHead` per graph output, in output order (rules 1-4)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    outputs = {o.name for o in model.graph.output}
    types, ranks, opset = _elem_types(model), _Ranks(model), _opset(model)
    heads = []
    for position, info in enumerate(model.graph.output):
        name = info.name
        if types.get(name, onnx.TensorProto.FLOAT) not in _FLOATS:
            heads.append(OutputHead(name, position, "ignored", name,
                                    reason="not a float tensor"))
            continue
        current, path = name, []
        node = producers.get(current)
        while node is not None and node.op_type in LAYOUT_OPS and node.domain in ("", "ai.onnx"):
            source = node.input[0]
            if consumers.get(source, 0) != 1 or source in outputs:
                break
            path.append(node.op_type)
            current, node = source, producers.get(source)
        if node is not None and node.op_type in _ACTIVATIONS and node.domain in ("", "ai.onnx"):
            kind = _ACTIVATIONS[node.op_type]
            logits = node.input[0]
            axis = None if kind == "sigmoid" else _axis(node, opset, ranks)
            coerced = kind != "sigmoid" and opset < 13
            via = f" behind {'/'.join(reversed(path))}" if path else ""
            reason = (f"output ends in {node.op_type} (node '{node.name}'){via}: losses and "
                      f"metrics read its input '{logits}'")
            heads.append(OutputHead(name, position, kind, logits, axis, coerced,
                                    tuple(reversed(path)), reason))
        else:
            heads.append(OutputHead(name, position, "plain", name,
                                    reason="no Softmax/LogSoftmax/Sigmoid before the output"))
    return heads


def with_logit_outputs(model: onnx.ModelProto, heads: list[OutputHead]) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs every activated head's logits (appended after
    the original outputs, in head order; a logits tensor already an output is not added)."""
    proto = onnx.ModelProto()
    proto.CopyFrom(model)
    present = {o.name for o in proto.graph.output}
    for head in heads:
        if head.activated and head.logits not in present:
            proto.graph.output.append(onnx.ValueInfoProto(name=head.logits))
            present.add(head.logits)
    return proto


def softmax_rows(array: np.ndarray, head: OutputHead) -> np.ndarray:
    """``array`` (a logits tensor of ``head``) as a 2-D ``[rows, classes]`` view whose
    rows are the distributions the head's Softmax normalises (rule 2).

    Coerced (opset < 13) heads flatten every axis from ``axis`` on; others move ``axis``
    last and flatten the rest. Sigmoid and plain heads keep one value per column.
    """
    array = np.asarray(array)
    if head.kind not in ("softmax", "log_softmax") or head.axis is None:
        return array.reshape(array.shape[0] if array.ndim else 1, -1)
    axis = head.axis if head.axis >= 0 else head.axis + array.ndim
    if head.coerced:
        return array.reshape(int(np.prod(array.shape[:axis], dtype=np.int64)), -1)
    moved = np.moveaxis(array, axis, -1)
    return moved.reshape(-1, moved.shape[-1])
