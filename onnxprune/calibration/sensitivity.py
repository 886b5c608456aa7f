"""Sensitivity analysis: prune each group alone at several ratios and measure the damage.

Rules:

1. One model evaluates every configuration: the original with each tracked tensor
   multiplied by a 0/1 mask fed as an extra graph input (the masked-equivalence
   oracle, so the outputs equal those of the physically pruned model). Data is
   streamed once: each batch runs the all-ones baseline, then every configuration
   runs on the batches (rules 5-6).
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
5. Suffix caching (``suffix=True``, the default): a group's configurations can only
   change what its masks feed, so each group is evaluated on its *suffix*
   (:mod:`onnxprune.calibration.suffix`): the baseline runs once per batch with every
   suffix's frontier tensors as extra outputs, cached per chunk of bounded size
   (:mod:`onnxprune.calibration.sensitivity_run`), and each (group, ratio) runs only
   the nodes downstream of the group's masks. ``suffix=False`` runs the whole masked
   model for every configuration (the evaluation before suffix caching); both give the
   same damage within float tolerance.
6. Every (group, ratio) with something removed is one cell, a task of ``executor``
   (:mod:`onnxprune.parallel`; in process by default): the masked model and the chunk
   of cached tensors go to the executor once per chunk as ``shared``, each task
   carries only the group's masks. Cells are summed in a fixed order, so a Ray run
   equals the in-process run.
7. ``samples=N`` (below the data's size): a first pass on a seeded subsample of ``N``
   samples (``seed``), then the groups near the decision boundary
   (:mod:`onnxprune.calibration.sensitivity_samples`) are measured again on every
   sample. ``subsample`` in the result lists them; each group records ``samples``.
"""

from __future__ import annotations

__all__ = ["GroupSensitivity", "Sensitivity", "measure_sensitivity"]

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnxprune._version import __version__
from onnxprune.analysis.groups import Analysis
from onnxprune.calibration.fidelity import fidelity_heads
from onnxprune.calibration.graph_edit import multiply_tensors
from onnxprune.calibration.isolation import preflight
from onnxprune.calibration.sensitivity_cells import Cell, CellResult
from onnxprune.calibration.sensitivity_run import CACHE_BYTES, Baseline, run_cells
from onnxprune.calibration.sensitivity_samples import boundary_groups, standard_error
from onnxprune.calibration.suffix import SuffixSpec, suffix_spec
from onnxprune.calibration.tap import first_batch
from onnxprune.data import DataSource
from onnxprune.errors import UsageError
from onnxprune.graph import input_shapes
from onnxprune.graph.outputs import with_logit_outputs
from onnxprune.parallel import Executor, InProcessExecutor
from onnxprune.planning.planner import GroupOptions, PlanOptions, group_options


@dataclasses.dataclass
class GroupSensitivity:
    index: int
    name: str
    channels: int
    prunable_channels: int
    points: list[dict]
    samples: int | None = None  # samples its points were measured on (rule 7)


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
    # how it was evaluated (rules 5-6): suffix, executor, workers, chunks, cells
    evaluation: dict | None = None
    # rule 7: {"samples", "seed", "remeasured" (group indices), "remeasured_samples"}
    subsample: dict | None = None

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




@dataclasses.dataclass
class _Config:
    position: int
    ratio: float
    count: int
    removed: np.ndarray  # bool per unit


def _configs(analysis: Analysis, per_group: list[GroupOptions], ratios: list[float],
             ) -> list[_Config]:
    """Rule 2."""
    configs = []
    for position, opts in enumerate(per_group):
        for ratio in ratios:
            wanted = math.floor(ratio * opts.group.size + 1e-9)
            count = max([c for c in opts.counts if c <= wanted], default=0)
            removed = np.zeros(analysis.num_units, dtype=bool)
            removed[opts.group.units[opts.removed(count)]] = True
            configs.append(_Config(position, ratio, count, removed))
    return configs


def _group_masks(analysis: Analysis, per_group: list[GroupOptions], entries: list,
                 ) -> list[list[str]]:
    """Per group position: the mask inputs its removals can change."""
    masks = []
    for opts in per_group:
        units = np.zeros(analysis.num_units, dtype=bool)
        units[opts.group.units] = True
        masks.append([name for name, ids, _, _ in entries
                      if units[analysis.element_unit[ids[ids >= 0]]].any()])
    return masks


def _cell(analysis: Analysis, index: int, config: _Config, names: list[str],
          entries: dict[str, tuple]) -> Cell:
    masks = {}
    for name in names:
        ids, shape, dtype = entries[name]
        keep = ~config.removed[analysis.element_unit[np.maximum(ids, 0)]] | (ids < 0)
        masks[name] = keep.astype(dtype).reshape(shape)
    return Cell(index, config.position, masks)


def _point(config: _Config, total: CellResult, samples: int, baseline: Baseline) -> dict:
    sums = total.sums
    point = {"ratio": config.ratio, "removed": int(config.count),
             "cosine": sums["cosine"] / samples, "rel_mse": sums["rel_mse"] / samples}
    if baseline.classifier:
        point["kl"] = sums["kl"] / samples
    if baseline.with_labels:
        point["accuracy"] = (sums["correct"] / samples if config.count
                             else baseline.correct / baseline.samples)
    point["damage"] = point["kl"] if baseline.classifier else point["cosine"]
    return point


def _check_ratios(ratios: list[float]) -> list[float]:
    ratios = sorted({float(r) for r in ratios})
    if not ratios or any(not 0.0 < r < 1.0 for r in ratios):
        raise UsageError(f"--ratios must be fractions in (0, 1), got {ratios}")
    return ratios


@dataclasses.dataclass
class _Setup:
    """The masked model and what every cell needs (rules 1, 5, 6)."""

    proto: onnx.ModelProto
    heads: list
    specs: dict[int, SuffixSpec]
    masks: dict[str, tuple]  # mask input -> (shape, dtype)
    cells: list[Cell]


def _setup(original: onnx.ModelProto, analysis: Analysis, per_group: list[GroupOptions],
           configs: list[_Config], data: DataSource, batch_size: int, suffix: bool,
           ) -> _Setup:
    prunable = np.zeros(analysis.num_units, dtype=bool)
    for opts in per_group:
        prunable[opts.group.units[~opts.group.blocked]] = True
    heads = fidelity_heads(original)
    proto, entries = _mask_model(with_logit_outputs(original, heads), analysis, prunable)
    ones = {name: np.ones(shape, dtype) for name, _, shape, dtype in entries}
    preflight(first_batch, proto, [], data, data.fixed_batch or batch_size, ones,
              what="sensitivity (calibration pre-flight)")  # rule 4
    group_masks = _group_masks(analysis, per_group, entries)
    mask_names = [name for name, _, _, _ in entries]
    specs = {p: suffix_spec(proto.graph, names, mask_names, full=not suffix)
             for p, names in enumerate(group_masks)}
    by_name = {name: (ids, shape, dtype) for name, ids, shape, dtype in entries}
    cells = [_cell(analysis, i, c, group_masks[c.position], by_name)
             for i, c in enumerate(configs) if c.count > 0]
    return _Setup(proto, heads, specs, {n: (s, d) for n, _, s, d in entries}, cells)


def measure_sensitivity(original: onnx.ModelProto, analysis: Analysis, scores: np.ndarray,
                        data: DataSource, ratios: list[float], *, batch_size: int = 32,
                        plan_options: PlanOptions | None = None, criterion: str = "l1",
                        model_name: str = "", suffix: bool = True, samples: int | None = None,
                        seed: int = 0, executor: Executor | None = None,
                        progress: Callable[[int, int], None] | None = None,
                        cache_bytes: int = CACHE_BYTES) -> Sensitivity:
    """Apply rules 1-7 to every prunable group of ``analysis``."""
    ratios = _check_ratios(ratios)
    if samples is not None and samples < 1:
        raise UsageError(f"--samples must be >= 1, got {samples}")
    executor = executor or InProcessExecutor()
    per_group = group_options(analysis, scores, plan_options or PlanOptions(0.5))
    configs = _configs(analysis, per_group, ratios)
    setup = _setup(original, analysis, per_group, configs, data, batch_size, suffix)
    finished = [0]  # cells of earlier passes, so the progress of a second pass adds up

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress(finished[0] + done, finished[0] + total)

    def run(chosen: list[Cell], source: DataSource) -> tuple[dict[int, CellResult], Baseline]:
        totals, baseline = run_cells(executor, chosen, setup.proto, setup.specs, setup.masks,
                                     setup.heads, source, batch_size, suffix=suffix,
                                     cache_bytes=cache_bytes, progress=report)
        finished[0] += len(chosen) * baseline.chunks
        return {cell.config: t for cell, t in zip(chosen, totals)}, baseline

    first = data.take(samples, seed=seed) if samples and samples < data.num_samples else data
    results, baseline = run(setup.cells, first)
    first_samples = baseline.samples
    used = dict.fromkeys(range(len(per_group)), first_samples)  # samples per group
    subsample = None
    if first is not data:  # rule 7
        again = _boundary(setup.cells, results, configs, baseline.samples)
        more, baseline = run([c for c in setup.cells if c.position in again], data)
        results.update(more)
        used.update(dict.fromkeys(again, baseline.samples))
        subsample = {"samples": first_samples, "seed": seed,
                     "remeasured": [per_group[p].group.index for p in again],
                     "remeasured_samples": baseline.samples}
    evaluation = {"suffix": suffix, "executor": executor.name, "workers": executor.workers,
                  "cells": len(setup.cells), "chunks": baseline.chunks}
    return Sensitivity(model_name, criterion, ratios,
                       "kl" if baseline.classifier else "cosine", baseline.samples,
                       baseline.correct / baseline.samples if baseline.with_labels else None,
                       _groups(per_group, configs, results, used, baseline),
                       evaluation=evaluation, subsample=subsample)


def _groups(per_group: list[GroupOptions], configs: list[_Config],
            results: dict[int, CellResult], used: dict[int, int],
            baseline: Baseline) -> list[GroupSensitivity]:
    """One :class:`GroupSensitivity` per group, its points in ratio order (rule 3)."""
    empty = CellResult(dict.fromkeys(("cosine", "rel_mse", "kl", "correct"), 0.0), [])
    groups: dict[int, GroupSensitivity] = {}
    for index, config in enumerate(configs):
        opts = per_group[config.position]
        group = groups.setdefault(config.position, GroupSensitivity(
            opts.group.index, opts.group.name, opts.group.size,
            int((~opts.group.blocked).sum()), [], used[config.position]))
        group.points.append(_point(config, results.get(index, empty),
                                   used[config.position], baseline))
    return list(groups.values())


def _boundary(cells: list[Cell], results: dict[int, CellResult], configs: list[_Config],
              samples: int) -> list[int]:
    """Rule 7: positions of the groups near the decision boundary."""
    points: dict[int, dict[float, tuple[float, float]]] = {}
    for cell in cells:
        total, config = results[cell.config], configs[cell.config]
        damage = sum(s for _, s in total.batches) / max(samples, 1)
        points.setdefault(cell.position, {})[config.ratio] = (
            damage, standard_error(total.batches))
    return boundary_groups(points)
