"""The data-driven steps of ``compress``: data, criterion, allocation, recovery.

Rules:

1. ``--data`` is opened and validated against the model; at most ``max_samples``
   samples (a seeded random subset) are used for calibration.
2. Without ``--data``, steps that need data run on ``min(128, max_samples)``
   synthetic inputs (see :mod:`onnxprune.data.synthetic`) and a note says so;
   ``auto`` choices then pick the data-free option.
3. ``criterion="auto"``: ``taylor`` when data is given (falling back to
   ``activation`` when ONNX Runtime training is missing or cannot differentiate the
   model), ``l1`` otherwise.
4. ``recover="auto"``: ``bias`` when data is given, ``none`` otherwise.
5. ``allocation="sensitivity"``: measure every group at ``sensitivity_ratios`` and
   plan with :func:`make_sensitivity_plan`; ``threshold`` is the default planner.
"""

from __future__ import annotations

__all__ = ["Calibration", "open_calibration"]

import dataclasses
import logging

import numpy as np
import onnx
import onnx_ir as ir

from onnxprune.analysis.groups import Analysis
from onnxprune.data import DataSource, ImageOptions, open_data, synthetic_source
from onnxprune.errors import RuntimeMissingError, UnsupportedModelError, UsageError
from onnxprune.importance import score_units
from onnxprune.importance.data_criteria import DATA_CRITERIA, data_criterion
from onnxprune.options import CompressOptions
from onnxprune.planning import Plan, PlanOptions, make_plan

logger = logging.getLogger(__name__)

SYNTHETIC_SAMPLES = 128


@dataclasses.dataclass
class Calibration:
    """Resolved data and choices for one run; ``report()`` goes into the result."""

    options: CompressOptions
    data: DataSource | None
    synthetic: bool
    criterion: str = ""
    recover: str = "none"
    notes: list[str] = dataclasses.field(default_factory=list)
    sensitivity: dict | None = None
    recovery: dict | None = None
    reference_sizes: tuple[tuple[str, int], ...] = ()  # see PlanOptions.reference_sizes
    latency: dict | None = None  # --metric latency: onnxprune.benchmark.latency_check
    input_shapes: dict[str, tuple[int, ...]] | None = None  # latency table; None: defaults

    def source(self, model: ir.Model) -> DataSource:
        """The data, or synthetic inputs (rule 2)."""
        if self.data is None:
            count = min(SYNTHETIC_SAMPLES, self.options.max_samples or SYNTHETIC_SAMPLES)
            self.data = synthetic_source(model, count, seed=self.options.seed)
            self.synthetic = True
            self.notes.append(f"no --data: {count} synthetic samples were used for "
                              "data-driven steps")
        return self.data

    # -- scores and plan -------------------------------------------------------------
    def scores(self, analysis: Analysis) -> np.ndarray:
        options = self.options
        criterion = options.criterion
        if criterion == "auto":
            criterion = "taylor" if self.data is not None else "l1"
        self.criterion = criterion
        if criterion not in DATA_CRITERIA:
            return score_units(analysis, criterion, options.seed)
        data = self.source(analysis.model)
        try:
            return data_criterion(criterion, data, options.batch_size)(analysis, options.seed)
        except (RuntimeMissingError, UnsupportedModelError) as exc:
            if options.criterion != "auto":
                raise
            self.criterion = "activation"
            self.notes.append(f"criterion auto: taylor unavailable ({exc}); used activation")
            return data_criterion("activation", data, options.batch_size)(analysis,
                                                                          options.seed)

    def plan_options(self) -> PlanOptions:
        options = dataclasses.replace(self.options.plan_options(),
                                      reference_sizes=self.reference_sizes)
        if self.options.round_to == "auto":  # onnxprune.benchmark.round_probe
            options = dataclasses.replace(options, round_to=self._auto_round())
        return options

    def _auto_round(self) -> int | None:
        if "auto_round" not in self.__dict__:
            from onnxprune.benchmark.latency_check import settings_of
            from onnxprune.benchmark.round_probe import auto_block

            probe = auto_block(settings_of(self.options))
            self.__dict__["auto_round"] = probe["block"]
            self.notes.append(
                f"--round-to auto: {probe['block'] or 'no block found, multiples of 8'} "
                f"(channel step edges measured on {probe['provider']}, {probe['threads']} "
                f"thread(s); {probe['cache']})")
        return self.__dict__["auto_round"]

    def plan(self, analysis: Analysis, scores: np.ndarray, original: onnx.ModelProto) -> Plan:
        options = self.options
        if options.metric == "latency":
            return self._latency_plan(analysis, scores, original)
        if options.allocation != "sensitivity":
            return make_plan(analysis, scores, self.plan_options())
        from onnxprune.calibration.sensitivity import measure_sensitivity
        from onnxprune.graph.runtime import to_runtime_proto
        from onnxprune.planning.allocation import make_sensitivity_plan

        measured = measure_sensitivity(
            to_runtime_proto(original), analysis, scores, self.source(analysis.model),
            list(options.sensitivity_ratios), batch_size=options.batch_size,
            plan_options=self.plan_options(), criterion=self.criterion)
        self.sensitivity = measured.to_dict()
        return make_sensitivity_plan(analysis, scores, self.plan_options(), measured)

    def _latency_plan(self, analysis: Analysis, scores: np.ndarray,
                      original: onnx.ModelProto) -> Plan:
        from onnxprune.benchmark.latency_check import plan_latency, settings_of

        if self.options.allocation == "sensitivity":
            raise UsageError("--metric latency plans with --allocation threshold; drop "
                             "--allocation sensitivity")
        plan, self.latency = plan_latency(original, analysis, scores, self.plan_options(),
                                          settings_of(self.options), self.input_shapes)
        return plan

    # -- recovery --------------------------------------------------------------------
    def recovery_method(self) -> str:
        method = self.options.recover
        if method == "auto":
            method = "bias" if self.data is not None and not self.synthetic else "none"
        self.recover = method
        return method

    def apply_recovery(self, analysis: Analysis, removed_units: np.ndarray,
                       original: onnx.ModelProto) -> None:
        from onnxprune.graph.runtime import to_runtime_proto
        from onnxprune.recovery import recover

        data = self.source(analysis.model)
        report = recover(analysis, removed_units, to_runtime_proto(original), data,
                         self.recover, self.options.batch_size)
        self.recovery = report.to_dict()

    def report(self) -> dict:
        return {
            "data": self.options.data,
            "samples": self.data.num_samples if self.data is not None else 0,
            "synthetic": self.synthetic,
            "criterion": self.criterion,
            "recover": self.recover,
            "recovery": self.recovery,
            "sensitivity": self.sensitivity,
        }


def open_calibration(options: CompressOptions, model: ir.Model,
                     data: DataSource | None = None) -> Calibration:
    """Open ``options.data`` for ``model`` (rule 1), or prepare for synthetic inputs.

    ``data`` (already opened, e.g. the training part of a held-out split) replaces
    ``options.data``."""
    if data is None and not options.data:
        return Calibration(options, None, False)
    if data is None:
        image = ImageOptions(tuple(options.image_size) if options.image_size else None,
                             tuple(options.mean), tuple(options.std), options.layout,
                             options.channel_order)
        data = open_data(options.data, model, image)
    if options.max_samples and data.num_samples > options.max_samples:
        data = data.take(options.max_samples, seed=options.seed)
    return Calibration(options, data, False)
