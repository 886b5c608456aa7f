"""Intermediate-feature distillation: the last feature map before the head.

Rules:

1. The *feature map* of a model is found from its first classifying head (a
   Softmax/LogSoftmax/Sigmoid head, else the first float output): walk back from the
   head's logits through each producer's first non-constant input until a tensor of
   rank >= 3 (``[N, C, ...]``) with more than one spatial position is reached (a pooled
   ``[N, C, 1, 1]`` is passed by); that is the last feature map (e.g. the input of the
   global pooling before the classifier). None when the walk finds none.
2. The student (pruned) has a subset of the teacher's channels there. Each student
   channel is matched to the teacher channel with the highest absolute correlation over
   the first batch (greedy, without repeats): the "masked teacher's kept channels".
3. The loss term is the mean squared error between the student's feature map and the
   matched teacher channels, divided by the variance of those teacher channels (as the
   output MSE terms are), weighted like any other term.
"""

from __future__ import annotations

__all__ = ["feature_map", "match_channels"]

import logging

import numpy as np
import onnx

from onnxprune.graph.outputs import OutputHead

logger = logging.getLogger(__name__)


def _spatial(shape: tuple | None) -> bool:
    if shape is None or len(shape) < 3:
        return False
    return any(d is None or d > 1 for d in shape[2:])


def feature_map(model: onnx.ModelProto, heads: list[OutputHead],
                shapes: dict[str, tuple]) -> str | None:
    """Rule 1: the name of the last feature map, or None. ``shapes`` gives tensor shapes
    (``None`` for unknown dims) for the tensors the walk visits."""
    head = next((h for h in heads if h.activated), None) or \
        next((h for h in heads if h.kind == "plain"), None)
    if head is None:
        return None
    constants = {t.name for t in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    current = head.logits
    for _ in range(64):
        if _spatial(shapes.get(current)):
            return current
        node = producers.get(current)
        if node is None:
            return None
        inputs = [i for i in node.input if i and i not in constants
                  and producers.get(i, onnx.NodeProto()).op_type != "Constant"]
        if not inputs:
            return None
        current = inputs[0]
    return None


def match_channels(student: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    """Rule 2: for every student channel (axis 1) the index of its teacher channel."""
    s = np.moveaxis(np.asarray(student, np.float64), 1, 0).reshape(student.shape[1], -1)
    t = np.moveaxis(np.asarray(teacher, np.float64), 1, 0).reshape(teacher.shape[1], -1)
    s = (s - s.mean(1, keepdims=True)) / (s.std(1, keepdims=True) + 1e-12)
    t = (t - t.mean(1, keepdims=True)) / (t.std(1, keepdims=True) + 1e-12)
    corr = np.abs(s @ t.T) / s.shape[1]
    chosen = np.full(len(s), -1, dtype=np.int64)
    used: set[int] = set()
    for flat in np.argsort(-corr, axis=None):
        i, j = divmod(int(flat), corr.shape[1])
        if chosen[i] < 0 and j not in used:
            chosen[i] = j
            used.add(j)
            if len(used) == len(s):
                break
    return chosen
