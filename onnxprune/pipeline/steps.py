"""The schedule of the progressive flow (``compress --steps N [--finetune-epochs E]``).

Rules:

1. Step ``t`` of ``N`` must leave ``s_t = s_f * (1 - (1 - t/N)^3)`` of the *original*
   metric removed (:func:`cubic_schedule`). The current (already pruned and
   fine-tuned) model is re-analyzed and pruned once
   (:func:`onnxprune.pipeline.prune.prune_once`) with the target relative to itself
   that reaches ``s_t`` of the original; that checks the structural rewrite with the
   masked-equivalence oracle as usual.
2. After every step (so also after the last) the model is fine-tuned for
   ``finetune_epochs`` epochs or ``train_steps`` optimizer steps on the training data
   (:func:`onnxprune.training.finetune`), distilling from the original model by
   default. A fractional ``min_keep`` refers to the *original* widths (every step's
   planner gets them by source layer name), so no layer ends below ``min_keep`` of
   its original width.
3. Data: ``--eval-data`` is the evaluation data; without it, ``holdout`` (10%) of
   ``--data`` is held out, seeded, and neither trained on nor used for scoring.
   Each step records ``target``, ``achieved`` (of the original's metric), ``params``,
   ``macs``, fidelity to the original on the evaluation data after fine-tuning and
   before it (``*_pruned``), the final training loss and seconds; the list is the
   result's and the report's ``steps``.
4. ``max_drop``: the budget metric is accuracy with labels in the evaluation data,
   else top-1 agreement with the original (classifiers), else the cosine similarity of
   the outputs; when a step leaves it more than ``max_drop`` below the original's,
   that step is discarded, the schedule stops, and the last step within budget is
   kept. That model then gets a final fine-tune, kept only if it does not lower the
   metric. If even the first step breaks the budget, nothing is written
   (:class:`UnreachableTargetError`, exit 5). ``budget`` in the result tells it all.
5. Every finished step's model and record are saved in the work directory
   (:mod:`onnxprune.training.workdir`; ``work_dir``, default ``<output>.steps``);
   ``resume=True`` continues an interrupted run after its last saved step.
   ``progress`` (a callable) receives a dict per event: ``phase`` ``step`` (step
   ``step`` of ``steps`` starts, toward ``target``; ``step`` is ``"final"`` for the
   final fine-tune), ``train`` (optimizer step ``batch`` of ``batches`` of the
   fine-tuning after ``step``, with ``epoch`` and ``loss``), ``evaluate``.
6. The final model, the one-shot comparison and the result are the flow's
   (:mod:`onnxprune.pipeline.progressive`); checking and writing are
   :func:`onnxprune.pipeline.finish.finish`'s.
7. Each step's row also holds ``metric``: the held-out task metric after the step
   (accuracy with labels, else agreement, else cosine similarity; rule 4's metric).
8. A held-out split of fewer than 32 samples is refused (exit 6).
9. ``--metric latency``: the latency table is measured (or read from its cache) ONCE,
   on the original model; every step plans on it
   (:func:`onnxprune.benchmark.latency_check.plan_latency_step`: layers matched by
   name, nothing timed again) toward the schedule's cumulative target, a fraction of the
   original's predicted latency. The step's ``latency`` section predicts relative to the
   original; the final model is timed against the original once, by finish.
   ``--round-to auto`` (the default there) probes the original's layers once and every
   step keeps those channel blocks per source layer (names survive the rewrite).
"""

from __future__ import annotations

__all__ = ["StepData", "StepRun", "budget_value", "datasets", "metric_of", "original_widths"]

import dataclasses
import logging
import pathlib
import time
from collections.abc import Callable
from typing import Any

import onnx
import onnx_ir as ir

from onnxprune.data import DataSource
from onnxprune.errors import UnreachableTargetError, UsageError
from onnxprune.graph.io import StagedOutput
from onnxprune.options import CompressOptions
from onnxprune.pipeline.context import Candidate
from onnxprune.pipeline.inputs import open_model
from onnxprune.pipeline.prune import prune_once
from onnxprune.pipeline.result import Calibration, Latency
from onnxprune.pipeline.step_probes import OriginalProbes
from onnxprune.planning.schedule import cubic_schedule, step_target
from onnxprune.training.share import finetune_row
from onnxprune.training.workdir import WorkDir

logger = logging.getLogger(__name__)

DEFAULT_EPOCHS = 3.0  # CompressOptions.epochs() applies it
Progress = Callable[[dict], Any]


@dataclasses.dataclass
class StepData:
    """Rule 3: the data of a progressive run."""

    train: DataSource | None       # fine-tuning and scoring
    evaluation: DataSource | None  # the per-step metrics
    notes: list[str]
    held_out: bool = False  # evaluation is neither trained on nor scored (rule 7)


def datasets(options: CompressOptions, everything: DataSource | None,
             evaluation: DataSource | None) -> StepData:
    """Rule 3 (``everything``/``evaluation``: ``--data`` and ``--eval-data``, opened)."""
    from onnxprune.calibration.accuracy import check_held_out

    if evaluation is not None:
        check_held_out(evaluation.num_samples, options.eval_data, split=False)
        return StepData(everything, evaluation, [], held_out=True)
    if everything is None:
        return StepData(None, None, [])
    if not options.tunes() and options.max_drop is None:
        limit = options.max_samples
        sample = everything.take(limit, seed=options.seed) if limit else everything
        return StepData(everything, sample, ["per-step fidelity measured on --data (nothing is "
                                          "trained); pass --eval-data for held-out numbers"])
    if everything.num_samples < 2:
        raise UsageError(f"{everything.origin}: {everything.num_samples} sample(s): too few to "
                         "hold out evaluation data; pass --eval-data")
    train, held = everything.split(options.holdout, seed=options.seed)
    check_held_out(held.num_samples, everything.origin, split=True)
    note = (f"held out {held.num_samples} of {everything.num_samples} samples of --data for "
            f"the per-step evaluation (--holdout {options.holdout:g}); fine-tuning and scoring "
            f"use the other {train.num_samples}")
    return StepData(train, held, [note], held_out=True)


def metric_of(result: Candidate, metric: str) -> tuple[float, float]:
    """(before, after) of the pruned metric (params, MACs, or the predicted latency in ms of
    the model the step started from and of its result; rule 9)."""
    latency = result.section(Latency)
    if metric == "latency" and latency is not None:
        predicted = latency.latency["predicted"]
        before = (latency.latency.get("step") or {}).get("before_ms", predicted["original_ms"])
        return float(before), float(predicted["pruned_ms"])
    if metric == "params":
        return float(result.params_before), float(result.params_after)
    return float(result.macs_before), float(result.macs_after)


_ORDER = ("accuracy", "kl", "agreement", "cosine", "rel_mse")


def _ordered(metrics: dict, suffix: str = "") -> dict:
    return {f"{k}{suffix}": metrics[k] for k in _ORDER if k in metrics}


def _row(step: int, goal: float, achieved: float, pruned: Candidate, before: dict, after: dict,
         summary: dict | None, seconds: float) -> dict:
    """Rule 3, most telling metrics first (the HTML report plots the first six)."""
    row: dict[str, Any] = {"step": step, "achieved": round(achieved, 6)}
    row.update(_ordered(after))
    row.update(_ordered(before, "_pruned"))
    if summary is not None:
        row["loss"] = summary["final_loss"]
    row.update({"params": pruned.params_after, "macs": pruned.macs_after,
                "target": round(goal, 6), "seconds": round(seconds, 3)})
    if summary is not None:  # trainable share, frozen nodes, loss tensors, early stopping
        row.update(finetune_row(summary))
    if step == 1 and "reference_accuracy" in before:
        row["reference_accuracy"] = before["reference_accuracy"]
    found = budget_value(after or before)
    if found is not None:
        row["metric"] = round(found[1], 6)
    return row


def budget_value(metrics: dict) -> tuple[str, float, float] | None:
    """Rule 4: ``(name, value, original's value)`` of the budget metric, or None
    (:func:`onnxprune.calibration.accuracy.task_metric`)."""
    from onnxprune.calibration.accuracy import task_metric

    return task_metric(metrics)


def original_widths(model: ir.Model, prune_hidden: bool = False) -> dict[str, int]:
    """Width in units of every source layer's channel group (``min_keep`` reference)."""
    from onnxprune.analysis import analyze

    analysis = analyze(model, prune_hidden=prune_hidden)
    return {source.node: group.size for group in analysis.groups for source in group.sources}


def from_record(record: dict) -> Candidate:
    """A step's numbers from its work-dir record (``--resume``; also older records,
    which hold a whole result)."""
    names = ("achieved", "params_before", "params_after", "macs_before", "macs_after",
             "layers", "groups", "verification")
    sections = (Calibration(record["calibration"]),) if record.get("calibration") else ()
    if record.get("latency"):
        sections = (*sections, Latency(record["latency"]))
    return Candidate(pathlib.Path(record.get("output") or "."),
                     **{k: record.get(k) for k in names}, notes=list(record.get("notes", [])),
                     sections=sections)


class StepRun:
    """One progressive run: the schedule, the budget and the work directory."""

    def __init__(self, model: str | pathlib.Path, options: CompressOptions,
                 original: onnx.ModelProto, widths: dict[str, int], data: StepData, work: WorkDir,
                 scratch: pathlib.Path, progress: Progress) -> None:
        self.model, self.options, self.original = model, options, original
        self.widths, self.data, self.work, self.scratch = widths, data, work, scratch
        self.progress = progress
        self.rows = [r["row"] for r in work.records]
        self.results = [from_record(r["result"]) for r in work.records]
        self.budget: dict | None = None
        if options.max_drop is not None:
            self.budget = {"max_drop": options.max_drop, "stopped_at": None}
        if work.ended and work.ended.get("budget"):
            self.budget = work.ended["budget"]
        self.notes = list(data.notes)
        self.probes = OriginalProbes(original, options, self.notes)  # rule 9
        if self.rows:
            self.notes.append(f"resumed after step {self.rows[-1]['step']} from {work.path}")

    # -- the schedule ----------------------------------------------------------------
    def run(self) -> pathlib.Path:
        """Rules 1-5; the path of the model to write."""
        if self.work.ended is None:
            self._schedule()
        final = (self.work.ended or {}).get("final")
        if final and final.get("kept"):
            return self.work.model_path("final")
        return self._current()

    def _schedule(self) -> None:
        options = self.options
        goals = cubic_schedule(options.target, options.steps)
        for step, goal in enumerate(goals, start=1):
            if step <= len(self.rows):
                continue
            self.progress({"phase": "step", "step": step, "steps": len(goals), "target": goal})
            row, model, result, metrics = self._step(step, goal)
            if self._breaks_budget(step, row, metrics):
                final = self._final_finetune() if self.rows else None
                self.work.end(step, final, self.budget)
                if not self.rows:
                    raise UnreachableTargetError(
                        f"--max-drop {options.max_drop:g}: the first step (removing "
                        f"{goal:.3f} of {options.metric}) already lowers the "
                        f"{self.budget['metric']} by {self.budget['dropped']['drop']:.4f}; "
                        "use more --steps, more fine-tuning or a larger --max-drop", 0.0)
                return
            self.rows.append(row)
            self.results.append(result)
            self.work.add(step, model, {"row": row, "result": result.record()})
            logger.info("step %d/%d done: %s", step, len(goals), _brief(row))
        self.work.end(None, None, self.budget)

    def _current(self) -> pathlib.Path:
        if not self.rows:
            return pathlib.Path(self.model)
        return self.work.model_path(self.rows[-1]["step"])

    def _step(self, step: int, goal: float) -> tuple[dict, onnx.ModelProto, Candidate, dict]:
        from onnxprune.calibration.fidelity import fidelity

        options, started = self.options, time.perf_counter()
        pruned, model = self._prune(step, goal)
        base = self.results[0] if self.results else pruned
        achieved = 1.0 - metric_of(pruned, options.metric)[1] / metric_of(base, options.metric)[0]
        summary, before, after = None, {}, {}
        if self.data.evaluation is not None:
            self.progress({"phase": "evaluate", "step": step})
            before = fidelity(model, self.original, self.data.evaluation, options.batch_size)
        if options.tunes():
            model, summary = self._finetune(model, step)
            if self.data.evaluation is not None:
                self.progress({"phase": "evaluate", "step": step})
                after = fidelity(model, self.original, self.data.evaluation,
                                 options.batch_size)
        row = _row(step, goal, achieved, pruned, before, after, summary,
                   time.perf_counter() - started)
        return row, model, pruned, after or before

    def _prune(self, step: int, goal: float) -> tuple[Candidate, onnx.ModelProto]:
        """Rule 1: the current model pruned once toward ``goal`` of the original."""
        options, relative = self.options, goal
        if self.results:
            relative = step_target(goal, metric_of(self.results[0], options.metric)[0],
                                   metric_of(self.results[-1], options.metric)[1])
        if options.metric == "latency":  # rule 9: the original's table, cumulative target
            relative = goal
        relative = min(max(relative, 1e-6), 1.0 - 1e-6)
        logger.info("step %d/%d: remove %.4f of the original %s (%.4f of the current model)",
                    step, options.steps, goal, options.metric, relative)
        source = str(self._current())
        current = open_model(source)
        with StagedOutput(self.scratch / f"step{step}.pruned.onnx", source=source) as stage:
            pruned = prune_once(current, options, stage, target=relative,
                                data=self.data.train, reference_sizes=self.widths,
                                latency_base=self.probes.latency_table(),
                                round_base=self.probes.round_blocks())
            return pruned.candidate, onnx.load(str(pruned.candidate.path))

    def _finetune(self, model: onnx.ModelProto, step: int | str,
                  ) -> tuple[onnx.ModelProto, dict]:
        from onnxprune.training import finetune

        options = self.options

        def report(info: dict) -> None:
            self.progress({"phase": "train", "step": step, "batch": info["step"],
                           "batches": info["steps"], "epoch": info["epoch"],
                           "loss": info["loss"]})

        seed = options.seed + (step if isinstance(step, int) else options.steps + 1)
        result = finetune(model, self.data.train, teacher=self.original, loss=options.loss,
                          epochs=options.epochs() or 1.0, lr=options.lr,
                          optimizer=options.optimizer, batch_size=options.batch_size,
                          seed=seed, temperature=options.temperature, progress=report,
                          max_steps=options.train_steps,
                          allow_frozen=options.allow_frozen,
                          eval_data=self.data.evaluation,
                          distill_features=options.distill_features)
        return result.model, result.summary()

    # -- the budget (rule 4) ----------------------------------------------------------
    def _breaks_budget(self, step: int, row: dict, metrics: dict) -> bool:
        if self.budget is None:
            return False
        found = budget_value(metrics)
        if found is None:
            raise UsageError("--max-drop needs evaluation data whose outputs can be compared "
                             "(--eval-data, or --data to hold out from)")
        name, value, reference = found
        self.budget.update({"metric": name, "reference": reference})
        drop = reference - value
        row["drop"] = round(drop, 6)
        if drop <= self.options.max_drop:
            return False
        self.budget.update({"stopped_at": step, "dropped": {**row, "drop": round(drop, 6)}})
        logger.warning("step %d lowers the %s by %.4f (> --max-drop %g): stopping; %s",
                       step, name, drop, self.options.max_drop,
                       f"keeping step {self.rows[-1]['step']}" if self.rows
                       else "no step is within budget")
        return True

    def _final_finetune(self) -> dict | None:
        """Rule 4: one more fine-tune of the kept model, kept if it does not hurt."""
        from onnxprune.calibration.fidelity import fidelity

        if not self.options.tunes() or self.data.evaluation is None:
            return None
        started = time.perf_counter()
        self.progress({"phase": "step", "step": "final", "steps": self.options.steps})
        kept = onnx.load(str(self._current()))
        tuned, summary = self._finetune(kept, "final")
        metrics = fidelity(tuned, self.original, self.data.evaluation, self.options.batch_size)
        _, value, reference = budget_value(metrics)
        before = reference - self.rows[-1].get("drop", 0.0)
        final = {"step": self.rows[-1]["step"], "value_before": round(before, 6),
                 "value_after": round(value, 6), "loss": summary["final_loss"],
                 "kept": value >= before, "seconds": round(time.perf_counter() - started, 3)}
        if final["kept"]:
            self.work.save_model("final", tuned)
        self.budget["final"] = final
        return final


def _brief(row: dict) -> str:
    keys = [k for k in ("achieved", "accuracy", "agreement", "kl", "cosine", "loss") if k in row]
    return ", ".join(f"{k} {row[k]:.4g}" for k in keys)
