"""The data-driven steps of ``compress``: data, criterion, allocation, recovery.

Rules:

1. ``--data`` is opened and validated against the model; at most ``max_samples``
   samples (a seeded random subset) are used for calibration.
2. Without ``--data``, steps that need data run on ``min(128, max_samples)``
   synthetic inputs (see :mod:`onnxprune.data.synthetic`) and a note says so;
   ``auto`` choices then pick the data-free option.
3. ``criterion="auto"``: ``taylor`` when data is given (falling back to
   ``activation`` when ONNX Runtime training is missing or cannot differentiate the
   model); ``l1`` without data: the weights' norm is the data-free measure of what a
   channel *varies* (its bias, the constant part, is ignored by it and folded into the
   consumers by rule 4). ``variation`` (the spread of the activation) is a criterion of
   its own: measured on synthetic white noise it misjudges the filters of a pretrained
   network (digits CNN at 0.3: 0.931 test accuracy against 0.985 for ``l1``; see
   docs/calibration.md), so it is not the data-free default.
4. ``recover="auto"``: ``bias`` when data is given (with held-out data the compress
   flow measures ``bias`` against ``lsq`` and keeps the better, see
   :mod:`onnxprune.recovery.choose`); without data ``bias`` on the synthetic inputs:
   the mean of every removed channel (the large near-constant activation of a BN-folded
   filter with a large bias; exact for channels with zero weights) is folded into its
   consumers' biases (*data-free constant folding*); ``none`` for large models.
   ``recover="none"`` always means none.
5. ``allocation="sensitivity"``: measure every group at ``sensitivity_ratios`` and
   plan with :func:`make_sensitivity_plan`; ``threshold`` is the default planner.
6. Without ``--data`` or ``--eval-data`` nothing measures accuracy: a note says so and
   how to measure it.
"""

from __future__ import annotations

__all__ = ["Calibration", "open_calibration", "uses_round_auto"]

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from onnxprune.analysis.groups import Analysis
from onnxprune.data import DataSource, open_data, synthetic_source
from onnxprune.errors import RuntimeMissingError, UnsupportedModelError, UsageError
from onnxprune.importance import score_units
from onnxprune.importance.data_criteria import DATA_CRITERIA, data_criterion
from onnxprune.options import CompressOptions
from onnxprune.pipeline.inputs import image_options
from onnxprune.planning import Plan, PlanOptions, make_plan
from onnxprune.planning.round_auto import AUTO_DEFAULT_METRICS

logger = logging.getLogger(__name__)

SYNTHETIC_SAMPLES = 128


def uses_round_auto(options: CompressOptions) -> bool:
    """``--round-to auto``: asked for, or the default of the metrics in
    :data:`~onnxprune.planning.round_auto.AUTO_DEFAULT_METRICS` (``latency``)."""
    return options.round_to == "auto" or (options.round_to is None
                                          and options.metric in AUTO_DEFAULT_METRICS)


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
    large: bool = False  # bounded-memory model: no synthetic pass for the auto choices
    evaluation: DataSource | None = None  # held-out data: recovery choice, accuracy
    held_out_origin: str = ""
    latency: dict | None = None  # --metric latency: onnxprune.benchmark.latency_check
    input_shapes: dict[str, tuple[int, ...]] | None = None  # latency table; None: defaults
    target: float | None = None  # replaces options.target (a progressive step's relative one)
    # progressive --metric latency: (table, cache file) measured once on the original; the
    # step plans on it (onnxprune.benchmark.latency_check.plan_latency_step), target cumulative
    latency_base: tuple | None = None
    # progressive --round-to auto: PlanOptions.group_round probed once on the original
    round_base: tuple[tuple[str, int], ...] | None = None

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
        if self.target is not None:
            options = dataclasses.replace(options, target=self.target)
        if self.round_auto:  # per group: onnxprune.benchmark.layer_steps
            options = dataclasses.replace(options, round_to=None,
                                          group_round=self.__dict__.get("auto_round", ()))
        return options

    @property
    def round_auto(self) -> bool:
        """``--round-to auto``, asked for or the default of ``--metric latency``."""
        return uses_round_auto(self.options)

    def _auto_round(self, analysis: Analysis, original: onnx.ModelProto) -> None:
        if "auto_round" not in self.__dict__ and self.round_base is not None:
            self.__dict__["auto_round"] = self.round_base  # a progressive run's, reused
        if "auto_round" not in self.__dict__:
            from onnxprune.benchmark.latency_check import settings_of
            from onnxprune.benchmark.layer_steps import auto_group_round, describe
            from onnxprune.graph.runtime import to_runtime_proto

            pairs, info = auto_group_round(to_runtime_proto(original), analysis,
                                           settings_of(self.options), self.input_shapes)
            self.__dict__["auto_round"] = pairs
            if self.options.round_to is None:
                info["why"] = f" (the default with --metric {self.options.metric})"
            self.notes.append(describe(info))

    def plan(self, analysis: Analysis, scores: np.ndarray, original: onnx.ModelProto) -> Plan:
        options = self.options
        if self.round_auto:
            self._auto_round(analysis, original)
        if options.metric == "latency":
            return self._latency_plan(analysis, scores, original)
        if options.allocation != "sensitivity":
            return make_plan(analysis, scores, self.plan_options())
        from onnxprune.calibration.sensitivity import measure_sensitivity
        from onnxprune.graph.runtime import to_runtime_proto
        from onnxprune.parallel import open_executor
        from onnxprune.planning.allocation import make_sensitivity_plan

        with open_executor(options.workers, options.ray_address) as executor:
            measured = measure_sensitivity(
                to_runtime_proto(original), analysis, scores, self.source(analysis.model),
                list(options.sensitivity_ratios), batch_size=options.batch_size,
                plan_options=self.plan_options(), criterion=self.criterion,
                seed=options.seed, executor=executor)
        self.sensitivity = measured.to_dict()
        return make_sensitivity_plan(analysis, scores, self.plan_options(), measured)

    def _latency_plan(self, analysis: Analysis, scores: np.ndarray,
                      original: onnx.ModelProto) -> Plan:
        from onnxprune.benchmark.latency_check import plan_latency, settings_of

        if self.options.allocation == "sensitivity":
            raise UsageError("--metric latency plans with --allocation threshold; drop "
                             "--allocation sensitivity")
        if self.latency_base is not None:
            from onnxprune.benchmark.latency_check import plan_latency_step

            table, cache = self.latency_base
            plan, self.latency = plan_latency_step(table, original, analysis, scores,
                                                   self.plan_options(), self.input_shapes,
                                                   cache=cache)
            return plan
        plan, self.latency = plan_latency(original, analysis, scores, self.plan_options(),
                                          settings_of(self.options), self.input_shapes)
        return plan

    # -- recovery --------------------------------------------------------------------
    def recovery_method(self) -> str:
        method = self.options.recover
        if method == "auto":
            method = "none" if self.large and (self.data is None or self.synthetic) else "bias"
        self.recover = method
        return method

    @property
    def data_free(self) -> bool:
        """No real calibration data: the auto choices run on synthetic inputs."""
        return self.data is None or self.synthetic

    def apply_recovery(self, analysis: Analysis, removed_units: np.ndarray,
                       original: onnx.ModelProto) -> None:
        from onnxprune.graph.runtime import to_runtime_proto
        from onnxprune.recovery import recover

        data = self.source(analysis.model)
        try:
            report = recover(analysis, removed_units, to_runtime_proto(original), data,
                             self.recover, self.options.batch_size)
        except Exception as exc:  # only the data-free default is forgiven
            if not (self.options.recover == "auto" and self.synthetic):
                raise
            logger.info("data-free bias recovery failed: %s", exc)
            self.notes.append(f"recover auto: data-free constant folding failed ({exc}); "
                              "no recovery")
            self.recover = "none"
            return
        self.recovery = report.to_dict()
        if self.synthetic and self.recover == "bias":
            self.recovery["data_free"] = True
            self.notes.append(
                f"no --data: the mean of every removed channel on {data.num_samples} "
                "synthetic inputs was folded into its consumers' biases (data-free constant "
                "folding; --recover none turns it off)")

    def recover_and_choose(self, analysis: Analysis, removed_units: np.ndarray,
                           original: onnx.ModelProto, write: Callable[[ir.Model], Any],
                           ) -> Any:
        """Rule 4: recover; with ``recover="auto"``, real data and held-out data, also
        refit by ``lsq`` (after ``bias``) and keep the candidate whose held-out task
        metric is higher (``bias`` on a tie). ``write`` stages a model and returns its
        path; the path of the kept candidate is returned."""
        self.apply_recovery(analysis, removed_units, original)
        path = write(analysis.model)
        if not (self.options.recover == "auto" and self.recover == "bias"
                and self.evaluation is not None and not self.data_free and not self.large):
            return path
        from onnxprune.calibration.accuracy import task_metric
        from onnxprune.calibration.fidelity import fidelity
        from onnxprune.recovery.choose import choose_recovery

        def measure(candidate: Any) -> float:
            found = task_metric(fidelity(onnx.load(str(candidate)), original, self.evaluation,
                                         self.options.batch_size))
            return found[1] if found is not None else float("-inf")

        kept_bias = ir.serde.serialize_model(analysis.model)
        bias_value = measure(path)
        self.recover = "lsq"
        self.apply_recovery(analysis, removed_units, original)
        lsq_path = write(analysis.model)
        choice = choose_recovery({"bias": bias_value, "lsq": measure(lsq_path)})
        self.recovery = {**(self.recovery or {}), **choice,
                         "evaluated_on": self.held_out_origin}
        self.recover = choice["chosen"]
        self.notes.append(choice["message"])
        if choice["chosen"] == "bias":
            return write(ir.serde.deserialize_model(kept_bias))
        return lsq_path

    def measure_accuracy(self, original: onnx.ModelProto, path: Any) -> dict:
        """The task metric of the original and of the model at ``path`` on the held-out
        data (:mod:`onnxprune.calibration.accuracy`), or why it was not measured and how
        to measure it (rule 6; the CLI summary prints the section's message)."""
        from onnxprune.calibration.accuracy import accuracy_section, not_measured
        from onnxprune.calibration.fidelity import fidelity

        if self.evaluation is None:
            reason = "no --eval-data" if self.options.data else "no --data or --eval-data"
            section = not_measured(reason)
        else:
            metrics = fidelity(onnx.load(str(path)), original, self.evaluation,
                               self.options.batch_size)
            section = accuracy_section(metrics, data=self.held_out_origin,
                                       samples=self.evaluation.num_samples, held_out=True,
                                       max_drop=self.options.max_drop,
                                       accepted=self.options.accept_drop)
        return section

    def report(self) -> dict:
        return {
            "data": self.options.data,
            "samples": self.data.num_samples if self.data is not None else 0,
            "synthetic": self.synthetic,
            "criterion": self.criterion,
            "recover": self.recover,
            "recovery": self.recovery,
            "sensitivity": self.sensitivity,
            "data_free": self.data_free,
        }


def _evaluation(options: CompressOptions, model: ir.Model,
                evaluation: DataSource | None) -> tuple[DataSource | None, str]:
    if evaluation is None and options.eval_data:
        from onnxprune.calibration.accuracy import check_held_out

        evaluation = open_data(options.eval_data, model, image_options(options))
        check_held_out(evaluation.num_samples, options.eval_data, split=False)
    return evaluation, (evaluation.origin if evaluation is not None else "")


def open_calibration(options: CompressOptions, model: ir.Model,
                     data: DataSource | None = None,
                     evaluation: DataSource | None = None, *,
                     from_options: bool = True) -> Calibration:
    """Open ``options.data`` for ``model`` (rule 1), or prepare for synthetic inputs.

    ``data`` (already opened, e.g. the training part of a held-out split) replaces
    ``options.data``; ``evaluation`` (the held-out part) replaces ``options.eval_data``.
    With ``from_options=False`` only ``data`` and ``evaluation`` are used (``None``: no
    data, synthetic inputs where needed; no held-out data)."""
    if not from_options:
        held, origin = evaluation, (evaluation.origin if evaluation is not None else "")
    else:
        held, origin = _evaluation(options, model, evaluation)
    if data is None and (not options.data or not from_options):
        return Calibration(options, None, False, evaluation=held, held_out_origin=origin)
    if data is None:
        data = open_data(options.data, model, image_options(options))
    if options.max_samples and data.num_samples > options.max_samples:
        data = data.take(options.max_samples, seed=options.seed)
    return Calibration(options, data, False, evaluation=held, held_out_origin=origin)
