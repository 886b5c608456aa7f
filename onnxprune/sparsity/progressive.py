"""Progressive unstructured / N:M sparsity with optional masked fine-tuning.

Rules:

1. The target of mode ``unstructured`` is the fraction of *prunable weights* (see
   :mod:`onnxprune.sparsity.weights`) that are zero; mode ``n:m`` has the fixed target
   ``(M - N) / M`` on the layers it can pattern.
2. ``steps`` steps follow the cubic schedule (:mod:`onnxprune.planning.schedule`): in
   mode ``unstructured`` the sparsity grows to the target; in mode ``n:m`` the
   fraction of N:M groups grows to 1. Each step recomputes magnitude masks on the
   current weights (masks only grow), zeroes the masked weights and, with fine-tuning
   settings, fine-tunes with the masks held (:mod:`onnxprune.sparsity.finetune`).
3. After the last step every masked weight is exactly zero; ``achieved`` counts the
   prunable weights that are exactly zero (masked ones plus any that already were).
4. One row per step records the sparsity reached, the fine-tuning violations and
   what ``evaluate(model)`` returns (accuracy, agreement ...).
"""

from __future__ import annotations

__all__ = ["SparseSettings", "SparsifyResult", "layer_rows", "sparsify"]

import dataclasses
import logging
from collections.abc import Callable

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.planning.schedule import cubic_schedule
from onnxprune.sparsity.finetune import FinetuneSettings, finetune_masked
from onnxprune.sparsity.masks import apply_masks, magnitude_masks, nm_masks
from onnxprune.sparsity.weights import PrunableWeight, prunable_weights

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SparseSettings:
    mode: str                  # unstructured | n:m
    target: float | None       # unstructured only
    scope: str = "global"      # unstructured: global | uniform (per layer)
    n: int = 2
    m: int = 4
    steps: int = 1
    ignore: tuple[str, ...] = ()


@dataclasses.dataclass
class SparsifyResult:
    model: onnx.ModelProto
    weights: list[PrunableWeight]
    masks: dict[str, np.ndarray]
    skipped: dict[str, str]
    steps: list[dict]
    achieved: float
    notes: list[str] = dataclasses.field(default_factory=list)


def _arrays(model: onnx.ModelProto, names: set[str]) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer
            if t.name in names}


def _store(model: onnx.ModelProto, arrays: dict[str, np.ndarray]) -> None:
    for tensor in model.graph.initializer:
        if tensor.name in arrays:
            tensor.CopyFrom(numpy_helper.from_array(arrays[tensor.name], tensor.name))


def zero_fraction(model: onnx.ModelProto, weights: list[PrunableWeight]) -> float:
    arrays = _arrays(model, {w.name for w in weights})
    total = sum(a.size for a in arrays.values())
    zeros = sum(int(a.size - np.count_nonzero(a)) for a in arrays.values())
    return zeros / total if total else 0.0


def sparsify(model: onnx.ModelProto, settings: SparseSettings, *, data=None,
             finetune: FinetuneSettings | None = None,
             evaluate: Callable[[onnx.ModelProto], dict] | None = None) -> SparsifyResult:
    """Apply rules 1-4 to a copy of ``model`` (which must hold its weights in memory)."""
    weights = prunable_weights(model, settings.ignore)
    names = {w.name for w in weights}
    in_axes = {w.name: w.in_axis for w in weights}
    current = onnx.ModelProto()
    current.CopyFrom(model)
    levels = cubic_schedule(1.0 if settings.mode == "n:m" else settings.target, settings.steps)
    masks: dict[str, np.ndarray] | None = None
    skipped: dict[str, str] = {}
    rows, notes = [], []
    for step, level in enumerate(levels, start=1):
        arrays = _arrays(current, names)
        if settings.mode == "n:m":
            masks, skipped = nm_masks(arrays, in_axes, settings.n, settings.m, level, masks)
        else:
            masks = magnitude_masks(arrays, level, settings.scope, masks)
        _store(current, apply_masks(arrays, masks))
        row = {"step": step, "schedule": round(level, 6)}
        if finetune is not None:
            current, info = finetune_masked(current, model, data, masks, finetune)
            row["finetune_violations"] = info["violations"]
            if info["violations"]:
                notes.append(f"step {step}: fine-tuning left {info['violations']} masked "
                             "weights non-zero; they were zeroed again")
        row["achieved"] = round(zero_fraction(current, weights), 6)
        if evaluate is not None:
            row.update(evaluate(current))
        logger.info("sparsity step %d/%d: %s", step, len(levels), row)
        rows.append(row)
    for name, reason in skipped.items():
        notes.append(f"N:M pattern: {name} left dense ({reason})")
    return SparsifyResult(current, weights, masks or {}, skipped, rows,
                          zero_fraction(current, weights), notes)


def layer_rows(model: onnx.ModelProto, weights: list[PrunableWeight],
               skipped: dict[str, str] | None = None) -> list[dict]:
    """Per prunable weight: layer, shape, weights, zeros and sparsity in ``model``."""
    arrays = _arrays(model, {w.name for w in weights})
    rows = []
    for weight in weights:
        array = arrays[weight.name]
        zeros = int(array.size - np.count_nonzero(array))
        row = {"layer": weight.layer, "weight": weight.name, "op": weight.op,
               "shape": list(weight.shape), "weights": int(array.size), "zeros": zeros,
               "sparsity": round(zeros / array.size, 6) if array.size else 0.0}
        if skipped and weight.name in skipped:
            row["skipped"] = skipped[weight.name]
        rows.append(row)
    return rows
