"""Sensitivity analysis: prune each group alone at several ratios and measure the damage.

Rules:

1. One model evaluates every configuration: the original with each tracked tensor
   multiplied by a 0/1 mask fed as an extra graph input (the masked-equivalence
   oracle, so the outputs equal those of the physically pruned model). Data is
   streamed once; each batch runs the all-ones baseline, then every configuration.
2. A ratio ``r`` of a group removes its ``floor(r * channels)`` lowest-scoring units,
   snapped down to what the planner allows (``min_keep``, ``round_to``, grouped-conv
   blocks); the JSON records the count actually removed.
3. Damage, against the unpruned outputs on the same inputs: ``kl`` (mean
   KL(softmax(original) || softmax(pruned)) of the first output when it is ``[N, K]``
   logits), ``cosine`` (1 - cosine similarity per sample, averaged over samples and
   float outputs), ``rel_mse`` (||y - y0||^2 / ||y0||^2), and ``accuracy`` (top-1 of
   the first output) with labels. ``damage`` is ``kl`` for classifiers, else ``cosine``.
"""

from __future__ import annotations

__all__ = ["GroupSensitivity", "Sensitivity", "measure_sensitivity"]

import dataclasses
import math

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnxprune import __version__
from onnxprune.analysis.groups import Analysis
from onnxprune.calibration.graph_edit import multiply_tensors
from onnxprune.calibration.tap import quiet_session
from onnxprune.data import DataSource
from onnxprune.errors import UsageError
from onnxprune.graph import input_shapes
from onnxprune.planning.planner import PlanOptions, group_options


@dataclasses.dataclass
class GroupSensitivity:
    index: int
    name: str
    channels: int
    prunable_channels: int
    points: list[dict]


@dataclasses.dataclass
class Sensitivity:
    model: str
    criterion: str
    ratios: list[float]
    damage_metric: str
    num_samples: int
    baseline_accuracy: float | None
    groups: list[GroupSensitivity]
    version: str = __version__
    # the run-time input shapes of the run (onnxprune.graph.input_shapes)
    input_shapes: dict | None = dataclasses.field(default_factory=lambda: _run_shapes())

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def curve(self, group_index: int) -> list[tuple[int, float]]:
        """``(removed units, damage)`` points of one group, with ``(0, 0)``."""
        group = next(g for g in self.groups if g.index == group_index)
        points = {0: 0.0}
        for p in group.points:
            points[p["removed"]] = max(points.get(p["removed"], 0.0), p["damage"])
        return sorted(points.items())


def _run_shapes() -> dict | None:
    resolved = input_shapes.current()
    return resolved.to_dict() if resolved is not None else None


def _mask_model(original: onnx.ModelProto, analysis: Analysis, prunable: np.ndarray,
                ) -> tuple[onnx.ModelProto, list[tuple[str, np.ndarray, tuple[int, ...]]]]:
    """Copy of the model with a mask input per tracked tensor touching prunable units."""
    proto = onnx.ModelProto()
    proto.CopyFrom(original)
    graph = proto.graph
    dtypes = {i.name: i.type.tensor_type.elem_type
              for i in [*graph.value_info, *graph.input, *graph.output]}
    outputs = {o.name for o in graph.output}
    entries, factors = [], {}
    for value, layout in analysis.ctx.layouts.items():
        rank = analysis.ctx.rank(value)
        valid = layout.ids[layout.ids >= 0]
        if not value.name or rank is None or value.name in outputs or valid.size == 0:
            continue
        if not prunable[analysis.element_unit[valid]].any():
            continue
        shape = [1] * rank
        shape[layout.axis] = len(layout.ids)
        mask = f"{value.name}__mask"
        elem = dtypes.get(value.name, TensorProto.FLOAT) or TensorProto.FLOAT
        graph.input.append(helper.make_tensor_value_info(mask, elem, shape))
        factors[value.name] = mask
        np_dtype = helper.tensor_dtype_to_np_dtype(elem)
        entries.append((mask, layout.ids, tuple(shape), np_dtype))
    multiply_tensors(graph, factors, "masked")
    return proto, entries


def _damage(base: list[np.ndarray], got: list[np.ndarray], classifier: bool,
            labels: np.ndarray | None) -> dict[str, float]:
    """Sums over the batch of each measure (divided by sample count later)."""
    cos, rel = [], []
    for y0, y in zip(base, got):
        if not np.issubdtype(np.asarray(y0).dtype, np.floating):
            continue
        a = np.asarray(y0, np.float64).reshape(len(y0), -1)
        b = np.asarray(y, np.float64).reshape(len(y), -1)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        sim = np.where(norms > 0, (a * b).sum(axis=1) / np.maximum(norms, 1e-30), 1.0)
        cos.append(float((1.0 - sim).sum()))
        rel.append(float(((a - b) ** 2).sum(axis=1).sum() / max((a ** 2).sum(), 1e-30)
                         * len(a)))
    out = {"cosine": float(np.mean(cos)) if cos else 0.0,
           "rel_mse": float(np.mean(rel)) if rel else 0.0}
    if classifier:
        p = _log_softmax(base[0])
        q = _log_softmax(got[0])
        out["kl"] = float((np.exp(p) * (p - q)).sum())
        if labels is not None:
            out["correct"] = float((np.argmax(got[0], axis=1) == labels).sum())
    return out


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def measure_sensitivity(original: onnx.ModelProto, analysis: Analysis, scores: np.ndarray,
                        data: DataSource, ratios: list[float], *, batch_size: int = 32,
                        plan_options: PlanOptions | None = None, criterion: str = "l1",
                        model_name: str = "") -> Sensitivity:
    """Apply rules 1-3 to every prunable group of ``analysis``."""
    ratios = sorted({float(r) for r in ratios})
    if not ratios or any(not 0.0 < r < 1.0 for r in ratios):
        raise UsageError(f"--ratios must be fractions in (0, 1), got {ratios}")
    options = plan_options or PlanOptions(0.5)
    per_group = group_options(analysis, scores, options)
    configs = []  # (group position, ratio, removed count, removed unit mask)
    for position, opts in enumerate(per_group):
        for ratio in ratios:
            wanted = math.floor(ratio * opts.group.size + 1e-9)
            count = max([c for c in opts.counts if c <= wanted], default=0)
            removed = np.zeros(analysis.num_units, dtype=bool)
            removed[opts.group.units[opts.removed(count)]] = True
            configs.append((position, ratio, count, removed))
    prunable = np.zeros(analysis.num_units, dtype=bool)
    for opts in per_group:
        prunable[opts.group.units[~opts.group.blocked]] = True
    proto, entries = _mask_model(original, analysis, prunable)
    session = quiet_session(proto)
    first = session.get_outputs()[0]
    classifier = first.type == "tensor(float)" and len(first.shape) == 2 and \
        isinstance(first.shape[1], int) and first.shape[1] > 1
    ones = {name: np.ones(shape, dtype) for name, _, shape, dtype in entries}
    totals = [dict.fromkeys(("cosine", "rel_mse", "kl", "correct"), 0.0) for _ in configs]
    base_correct, samples = 0.0, 0
    for labels, feeds in data.labeled_batches(data.fixed_batch or batch_size):
        use_labels = labels if (classifier and labels is not None) else None
        base = session.run(None, {**feeds, **ones})
        if use_labels is not None:
            base_correct += float((np.argmax(base[0], axis=1) == use_labels).sum())
        for total, (_, _, count, removed) in zip(totals, configs):
            if count == 0:
                continue
            masks = {name: (~removed[analysis.element_unit[np.maximum(ids, 0)]] | (ids < 0))
                     .astype(dtype).reshape(shape) for name, ids, shape, dtype in entries}
            for key, value in _damage(base, session.run(None, {**feeds, **masks}), classifier,
                                      use_labels).items():
                total[key] += value
        samples += len(next(iter(feeds.values())))
    with_labels = classifier and data.has_labels
    groups = {}
    for total, (position, ratio, count, _) in zip(totals, configs):
        opts = per_group[position]
        group = groups.setdefault(position, GroupSensitivity(
            opts.group.index, opts.group.name, opts.group.size,
            int((~opts.group.blocked).sum()), []))
        point = {"ratio": ratio, "removed": int(count),
                 "cosine": total["cosine"] / samples, "rel_mse": total["rel_mse"] / samples}
        if classifier:
            point["kl"] = total["kl"] / samples
        if with_labels:
            point["accuracy"] = (total["correct"] / samples) if count else base_correct / samples
        point["damage"] = point["kl"] if classifier else point["cosine"]
        group.points.append(point)
    return Sensitivity(model_name, criterion, ratios, "kl" if classifier else "cosine", samples,
                       base_correct / samples if with_labels else None, list(groups.values()))
