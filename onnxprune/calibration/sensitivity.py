"""Sensitivity analysis: prune each group alone at several ratios and measure the damage.

Rules:

1. One model evaluates every configuration: the original with each tracked tensor
   multiplied by a 0/1 mask fed as an extra graph input (the masked-equivalence
   oracle, so the outputs equal those of the physically pruned model). Data is
   streamed once; each batch runs the all-ones baseline, then every configuration.
2. A ratio ``r`` of a group removes its ``floor(r * channels)`` lowest-scoring units,
   snapped down to what the planner allows (``min_keep``, ``round_to``, grouped-conv
   blocks); the JSON records the count actually removed.
3. Damage, against the unpruned outputs on the same inputs, with the metrics of
   :mod:`onnxprune.calibration.fidelity` on every output head (the logits of
   Softmax/Sigmoid heads; per output channel standardised by the unpruned outputs'
   spread over the batch): ``kl`` (classifier heads), ``cosine`` and ``rel_mse`` (worst
   output or part), and ``accuracy`` with labels. ``damage`` is ``kl`` when a head is a
   classifier (or a sigmoid gate), else ``cosine``.
4. The masked model runs in process; when calibration isolation is on
   (:mod:`onnxprune.calibration.isolation`, rule 3) its session first runs ONE batch
   (all-ones masks) in a child, so a native ONNX Runtime crash is a clean error naming
   sensitivity. A crash that only a later batch or a particular mask triggers is not
   covered.
"""

from __future__ import annotations

__all__ = ["GroupSensitivity", "Sensitivity", "measure_sensitivity"]

import dataclasses
import math

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnxprune._version import __version__
from onnxprune.analysis.groups import Analysis
from onnxprune.calibration.fidelity import compare, fidelity_heads
from onnxprune.calibration.graph_edit import multiply_tensors
from onnxprune.calibration.isolation import preflight
from onnxprune.calibration.tap import first_batch, quiet_session
from onnxprune.data import DataSource
from onnxprune.errors import UsageError
from onnxprune.graph import input_shapes
from onnxprune.graph.outputs import with_logit_outputs
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


def _damage(base: dict[str, np.ndarray], got: dict[str, np.ndarray], heads: list,
            labels: np.ndarray | None) -> dict[str, float]:
    """Sums over the batch of each measure (divided by sample count later)."""
    rows = len(next(iter(base.values())))
    metrics = compare(got, base, heads, labels)
    out = {"cosine": metrics.get("cosine", 0.0) * rows,
           "rel_mse": metrics.get("rel_mse", 0.0) * rows}
    if "kl" in metrics:
        out["kl"] = metrics["kl"] * rows
    if "accuracy" in metrics:
        out["correct"] = metrics["accuracy"] * rows
    return out


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
    heads = fidelity_heads(original)
    proto, entries = _mask_model(with_logit_outputs(original, heads), analysis, prunable)
    ones = {name: np.ones(shape, dtype) for name, _, shape, dtype in entries}
    preflight(first_batch, proto, [], data, data.fixed_batch or batch_size, ones,
              what="sensitivity (calibration pre-flight)")  # rule 4
    session = quiet_session(proto)
    names = [o.name for o in session.get_outputs()]
    totals = [dict.fromkeys(("cosine", "rel_mse", "kl", "correct"), 0.0) for _ in configs]
    base_correct, samples, classifier, with_labels = 0.0, 0, False, False
    for labels, feeds in data.labeled_batches(data.fixed_batch or batch_size):
        base = dict(zip(names, session.run(names, {**feeds, **ones})))
        itself = compare(base, base, heads, labels)
        classifier = "kl" in itself
        with_labels = "accuracy" in itself
        base_correct += itself.get("accuracy", 0.0) * len(next(iter(feeds.values())))
        for total, (_, _, count, removed) in zip(totals, configs):
            if count == 0:
                continue
            masks = {name: (~removed[analysis.element_unit[np.maximum(ids, 0)]] | (ids < 0))
                     .astype(dtype).reshape(shape) for name, ids, shape, dtype in entries}
            got = dict(zip(names, session.run(names, {**feeds, **masks})))
            for key, value in _damage(base, got, heads, labels).items():
                total[key] += value
        samples += len(next(iter(feeds.values())))
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
