"""``prune_once``: analyze -> score -> plan -> rewrite -> oracle -> recover, once.

Rules:

1. The model of ``inputs`` is analyzed (``prune_hidden``, ``ignore``); without a
   prunable group the run stops with :class:`UnsupportedModelError` naming the first
   reasons.
2. Scores and plan come from the run's :class:`~onnxprune.pipeline.calibrated.Calibration`
   (criterion, allocation, ``--metric latency``, ``min_keep`` against
   ``reference_sizes``). The plan is applied to ``inputs.loaded.model`` *in place*.
3. The rewritten model is written into ``stage`` (a :class:`StagedOutput`: the run's
   output, or a scratch file; never committed here) and checked: against the masked
   original (the oracle, QDQ tolerance for quantized models), or for large models
   against the declared outputs.
4. Training-free recovery runs after the oracle passed; every recovered candidate is
   checked again (no mask) and the kept one is the staged file.
5. Nothing is committed and nothing is measured on held-out data here; the returned
   :class:`Pruned` holds the candidate and the calibration for the flow to do so.
"""

from __future__ import annotations

__all__ = ["Pruned", "prune_once"]

import dataclasses
import pathlib

import numpy as np
import onnx_ir as ir

from onnxprune.analysis import Analysis, analyze
from onnxprune.data import DataSource
from onnxprune.errors import UnsupportedModelError
from onnxprune.graph.io import StagedOutput
from onnxprune.graph.shapes import dims
from onnxprune.options import CompressOptions
from onnxprune.pipeline.calibrated import Calibration, open_calibration
from onnxprune.pipeline.context import Candidate
from onnxprune.pipeline.inputs import Inputs
from onnxprune.pipeline.result import Calibration as CalibrationSection
from onnxprune.pipeline.result import Latency as LatencySection
from onnxprune.planning import CostModel
from onnxprune.quantize.tolerance import equivalence_rtol
from onnxprune.reporting import group_rows, layer_rows
from onnxprune.rewrite import apply_plan, channel_masks
from onnxprune.rewrite.verify import Verification, verify, verify_declared


@dataclasses.dataclass
class Pruned:
    """Rule 5: the staged candidate and the calibration that produced it."""

    candidate: Candidate
    calibration: Calibration


_ORT_TYPE_NAMES = {ir.DataType.FLOAT: "float", ir.DataType.DOUBLE: "double",
                   ir.DataType.FLOAT16: "float16", ir.DataType.INT64: "int64",
                   ir.DataType.INT32: "int32", ir.DataType.BOOL: "bool",
                   ir.DataType.UINT8: "uint8", ir.DataType.INT8: "int8"}


def declared_outputs(model: ir.Model) -> list[tuple[str, str, tuple[int | None, ...] | None]]:
    """(name, ORT type, dims) of every graph output (the large-model check)."""
    rows = []
    for value in model.graph.outputs:
        kind = f"tensor({_ORT_TYPE_NAMES.get(value.dtype, str(value.dtype).lower())})"
        rows.append((value.name, kind, dims(value)))
    return rows


def check_staged(inputs: Inputs, path: pathlib.Path, masks, options: CompressOptions,
                 rtol: float = 1e-4) -> Verification:
    """Rule 3 (``masks=None``: the unmasked check of a recovered candidate)."""
    if inputs.large:
        return verify_declared(declared_outputs(inputs.loaded.model), str(path),
                               seed=options.seed)
    return verify(inputs.original, str(path), masks, seed=options.seed, rtol=rtol,
                  original_path=inputs.original_path)


def _analysis(inputs: Inputs, options: CompressOptions) -> Analysis:
    """Rule 1."""
    analysis = analyze(inputs.loaded.model, prune_hidden=options.prune_hidden)
    analysis.ignore(options.ignore)
    if not analysis.prunable_groups:
        reasons = sorted({r for g in analysis.groups for r in g.reasons})[:3]
        raise UnsupportedModelError(f"{inputs.model}: no prunable channel group"
                                    + (f" ({'; '.join(reasons)})" if reasons else ""))
    return analysis


def prune_once(inputs: Inputs, options: CompressOptions, stage: StagedOutput, *,
               target: float | None = None, data: DataSource | None = None,
               evaluation: DataSource | None = None,
               reference_sizes: dict[str, int] | None = None,
               latency_base: tuple | None = None,
               round_base: tuple[tuple[str, int], ...] | None = None) -> Pruned:
    """Rules 1-5. ``target`` replaces ``options.target`` (a progressive step's, relative
    to the current model); ``data``/``evaluation`` (opened) are the calibration and
    held-out data (``None``: synthetic inputs where data is needed; no held-out data).
    ``latency_base`` (progressive ``--metric latency``): the original's latency table and
    its cache file; ``target`` is then cumulative, of the original's predicted latency.
    ``round_base``: the ``--round-to auto`` blocks per source layer, probed once."""
    analysis = _analysis(inputs, options)
    cost = CostModel(analysis)
    calib = open_calibration(options, inputs.loaded.model, data, evaluation,
                             from_options=False)
    calib.target = target
    calib.latency_base = latency_base
    calib.round_base = round_base
    calib.reference_sizes = tuple(sorted((reference_sizes or {}).items()))
    calib.large = inputs.large
    scores = calib.scores(analysis)
    plan = calib.plan(analysis, scores, inputs.original)
    groups = group_rows(analysis, cost)
    for row in groups:
        row["kept"] = plan.kept.get(row["index"], row["channels"])
    after = cost.evaluate(plan.removed_units)
    layers = layer_rows(analysis, plan.removed_units)
    check_masks = options.verify_equivalence and not inputs.large
    masks = channel_masks(analysis, plan.removed_units) if check_masks else None
    apply_plan(analysis, plan.removed_units)
    path, check = _stage_and_check(inputs, options, stage, analysis, plan.removed_units,
                                   masks, calib)
    candidate = Candidate(
        path=path, achieved=round(plan.achieved, 6), params_before=cost.original.params,
        params_after=after.params, macs_before=cost.original.macs, macs_after=after.macs,
        layers=layers, groups=groups, verification=check,
        notes=inputs.loaded.notes + calib.notes,
        sections=(CalibrationSection(calib.report()),)
        + ((LatencySection(calib.latency),) if calib.latency is not None else ()),
        stages={"pruned": path})
    return Pruned(candidate, calib)


def _stage_and_check(inputs: Inputs, options: CompressOptions, stage: StagedOutput,
                     analysis: Analysis, removed: np.ndarray, masks,
                     calib: Calibration) -> tuple[pathlib.Path, dict]:
    """Rules 3-4: the path of the kept candidate inside ``stage`` and the oracle's check."""
    external = inputs.loaded.external_data or None
    path = stage.write(analysis.model, external)
    check = check_staged(inputs, path, masks, options,
                         rtol=equivalence_rtol(inputs.original))  # QDQ: onnxprune.quantize
    if calib.recovery_method() == "none":
        return path, check.to_dict()

    def write_candidate(candidate: ir.Model) -> pathlib.Path:
        written = stage.write(candidate, external)
        check_staged(inputs, written, None, options)
        return written

    kept = calib.recover_and_choose(analysis, removed, inputs.original, write_candidate)
    return kept, check.to_dict()
