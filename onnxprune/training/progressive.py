"""Progressive pruning with fine-tuning: ``compress --steps N [--finetune-epochs E]``.

Rules:

1. Step ``t`` of ``N`` must leave ``s_t = s_f * (1 - (1 - t/N)^3)`` of the *original*
   metric removed (:func:`cubic_schedule`). The current (already pruned and
   fine-tuned) model is re-analyzed and pruned by the one-shot ``compress`` with the
   target relative to itself that reaches ``s_t`` of the original; that call checks
   the structural rewrite with the masked-equivalence oracle as usual.
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
6. The final model is checked like any rewrite (checker, ONNX Runtime, output names
   and shapes; the oracle no longer applies to fine-tuned weights) and written
   atomically with its report.
"""

from __future__ import annotations

__all__ = ["compress_progressive", "original_widths"]

import contextlib
import dataclasses
import logging
import pathlib
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from onnxprune.errors import UnreachableTargetError, UsageError
from onnxprune.training.schedule import cubic_schedule, step_target
from onnxprune.training.share import finetune_row
from onnxprune.training.workdir import WorkDir

logger = logging.getLogger(__name__)

DEFAULT_EPOCHS = 3.0  # CompressOptions.epochs() applies it
Progress = Callable[[dict], Any]


def _open(options: Any, model: ir.Model, path: str):
    from onnxprune.data import ImageOptions, open_data

    image = ImageOptions(tuple(options.image_size) if options.image_size else None,
                         tuple(options.mean), tuple(options.std), options.layout,
                         options.channel_order)
    return open_data(path, model, image)


@dataclasses.dataclass
class _Data:
    train: Any            # DataSource for fine-tuning and scoring, or None
    evaluation: Any       # DataSource for the per-step metrics, or None
    notes: list[str]


def _datasets(options: Any, model: ir.Model) -> _Data:
    """Rule 3."""
    everything = _open(options, model, options.data) if options.data else None
    if options.eval_data:
        return _Data(everything, _open(options, model, options.eval_data), [])
    if everything is None:
        return _Data(None, None, [])
    if not options.tunes() and options.max_drop is None:
        limit = options.max_samples
        sample = everything.take(limit, seed=options.seed) if limit else everything
        return _Data(everything, sample, ["per-step fidelity measured on --data (nothing is "
                                          "trained); pass --eval-data for held-out numbers"])
    if everything.num_samples < 2:
        raise UsageError(f"{everything.origin}: {everything.num_samples} sample(s): too few to "
                         "hold out evaluation data; pass --eval-data")
    train, held = everything.split(options.holdout, seed=options.seed)
    note = (f"held out {held.num_samples} of {everything.num_samples} samples of --data for "
            f"the per-step evaluation (--holdout {options.holdout:g}); fine-tuning and scoring "
            f"use the other {train.num_samples}")
    return _Data(train, held, [note])


def _metric(result: Any, metric: str) -> tuple[float, float]:
    if metric == "params":
        return float(result.params_before), float(result.params_after)
    return float(result.macs_before), float(result.macs_after)


_ORDER = ("accuracy", "kl", "agreement", "cosine", "rel_mse")


def _ordered(metrics: dict, suffix: str = "") -> dict:
    return {f"{k}{suffix}": metrics[k] for k in _ORDER if k in metrics}


def _row(step: int, goal: float, achieved: float, pruned, before: dict, after: dict,
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
    return row


def budget_value(metrics: dict) -> tuple[str, float, float] | None:
    """Rule 4: ``(name, value, original's value)`` of the budget metric, or None."""
    if "accuracy" in metrics and "reference_accuracy" in metrics:
        return "accuracy", metrics["accuracy"], metrics["reference_accuracy"]
    if "agreement" in metrics:
        return "agreement with the original", metrics["agreement"], 1.0
    if "cosine" in metrics:
        return "cosine similarity to the original", 1.0 - metrics["cosine"], 1.0
    return None


def original_widths(model: ir.Model, prune_hidden: bool = False) -> dict[str, int]:
    """Width in units of every source layer's channel group (``min_keep`` reference)."""
    from onnxprune.analysis import analyze

    analysis = analyze(model, prune_hidden=prune_hidden)
    return {source.node: group.size for group in analysis.groups for source in group.sources}


def _result_from(record: dict) -> Any:
    from onnxprune.compress import CompressResult

    names = {f.name for f in dataclasses.fields(CompressResult)}
    return CompressResult(**{k: v for k, v in record.items() if k in names})


class _Run:
    """One progressive run: the schedule, the budget and the work directory."""

    def __init__(self, model: str, options: Any, original: onnx.ModelProto,
                 widths: dict[str, int], data: _Data, work: WorkDir, scratch: pathlib.Path,
                 progress: Progress) -> None:
        self.model, self.options, self.original = model, options, original
        self.widths, self.data, self.work, self.scratch = widths, data, work, scratch
        self.progress = progress
        self.rows = [r["row"] for r in work.records]
        self.results = [_result_from(r["result"]) for r in work.records]
        self.budget: dict | None = None
        if options.max_drop is not None:
            self.budget = {"max_drop": options.max_drop, "stopped_at": None}
        if work.ended and work.ended.get("budget"):
            self.budget = work.ended["budget"]
        self.notes = list(data.notes)
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
            self.work.add(step, model, {"row": row, "result": result.to_dict()})
            logger.info("step %d/%d done: %s", step, len(goals), _brief(row))
        self.work.end(None, None, self.budget)

    def _current(self) -> pathlib.Path:
        if not self.rows:
            return pathlib.Path(self.model)
        return self.work.model_path(self.rows[-1]["step"])

    def _step(self, step: int, goal: float) -> tuple[dict, onnx.ModelProto, Any, dict]:
        from onnxprune.compress import compress
        from onnxprune.training.evaluate import fidelity

        options, started = self.options, time.perf_counter()
        relative = goal
        if self.results:
            relative = step_target(goal, _metric(self.results[0], options.metric)[0],
                                   _metric(self.results[-1], options.metric)[1])
        relative = min(max(relative, 1e-6), 1.0 - 1e-6)
        logger.info("step %d/%d: remove %.4f of the original %s (%.4f of the current model)",
                    step, options.steps, goal, options.metric, relative)
        pruned_path = self.scratch / f"step{step}.pruned.onnx"
        single = {"steps": 1, "finetune_epochs": 0.0, "train_steps": None, "max_drop": None,
                  "html_report": None, "bench": False, "mobile": False, "resume": False,
                  "target": relative}
        pruned = compress(str(self._current()), output=pruned_path, report=False,
                          options=options.model_copy(update=single),
                          min_keep_widths=self.widths, calibration_data=self.data.train)
        base = self.results[0] if self.results else pruned
        achieved = 1.0 - _metric(pruned, options.metric)[1] / _metric(base, options.metric)[0]
        model, summary, before, after = onnx.load(str(pruned_path)), None, {}, {}
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
                          allow_frozen=getattr(options, "allow_frozen", False),
                          eval_data=self.data.evaluation,
                          distill_features=getattr(options, "distill_features", "auto"))
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
        from onnxprune.training.evaluate import fidelity

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


def compress_progressive(model: str, options: Any, *, output: str | None = None,
                         write: bool = True, report: bool = True,
                         progress: Progress | None = None,
                         notes: list[str] | None = None) -> Any:
    """Rules 1-6; returns a :class:`onnxprune.compress.CompressResult` with ``steps``."""
    from onnxprune.compress import default_output
    from onnxprune.graph import load_model
    from onnxprune.graph.io import check_destination
    from onnxprune.training.finetune import import_training

    started = time.perf_counter()
    if options.tunes():
        import_training()  # exit 7 before any work when the training build is missing
    if options.max_drop is not None and not (options.data or options.eval_data):
        raise UsageError("--max-drop needs evaluation data: pass --eval-data, or --data to "
                         "hold part of it out")
    destination = pathlib.Path(output or default_output(model))
    if write:
        check_destination(destination, model)
    loaded = load_model(model)
    original = ir.serde.serialize_model(loaded.model)
    if loaded.external_data:
        onnx.load_external_data_for_model(original, str(loaded.path.parent))
    widths = original_widths(loaded.model, options.prune_hidden)
    data = _datasets(options, loaded.model)
    with contextlib.ExitStack() as stack:
        scratch = pathlib.Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="onnxprune-steps-")))
        folder = options.work_dir
        if folder is None:
            folder = str(destination) + ".steps" if write else scratch / "work"
        work = WorkDir.open(folder, model, options.model_dump(mode="json"), options.resume)
        run = _Run(model, options, original, widths, data, work, scratch,
                   progress or (lambda info: None))
        final_path = run.run()
        if not run.rows:
            raise UnreachableTargetError("no step was kept", 0.0)
        notes = (notes or []) + run.notes + (
            [f"step models and records: {work.path} (--resume continues an interrupted "
             "run)"] if write else [])
        result = _finish(model, loaded, original, options, run.results, run.rows, final_path,
                         destination, write, report, started, notes, run.budget)
        work.finish()
        return result


def _finish(model: str, loaded: Any, original: onnx.ModelProto, options: Any,
            results: list, rows: list[dict], final_path: pathlib.Path,
            destination: pathlib.Path, write: bool, report: bool, started: float,
            notes: list[str], budget: dict | None) -> Any:
    """Rule 6: verify and write the final model, build the result and its report."""
    from onnxprune.analysis import analyze
    from onnxprune.compress import CompressResult, _file_size, staged_output, write_reports
    from onnxprune.graph import load_model
    from onnxprune.reporting import layer_rows
    from onnxprune.rewrite.verify import verify

    final = load_model(final_path)
    analysis = analyze(final.model, prune_hidden=options.prune_hidden)
    widths = {row["layer"]: row["before"] for row in
              layer_rows(analysis, np.zeros(analysis.num_units, dtype=bool))}
    first, last = results[0], results[-1]
    layers = [dict(row, after=widths.get(row["layer"], row["after"])) for row in first.layers]
    groups = []
    for row in first.groups:
        source = row["sources"][0].rsplit(" (", 1)[0] if row["sources"] else None
        groups.append(dict(row, kept=widths.get(source, row.get("kept", row["channels"]))))
    with contextlib.ExitStack() as stack:
        staged = staged_output(stack, destination, model, write)
        staged_path = staged.write(final.model, loaded.external_data or None)
        check = verify(original, str(staged_path), None, seed=options.seed,
                       original_path=str(loaded.path) if loaded.path else None).to_dict()
        check["steps_max_rel_diff"] = [(r.verification or {}).get("max_rel_diff")
                                       for r in results]
        size_after = _file_size(staged_path, staged.data_name)
        out_path = staged.commit() if write else None
    base_metric = first.params_before if options.metric == "params" else first.macs_before
    after_metric = last.params_after if options.metric == "params" else last.macs_after
    result = CompressResult(
        input=str(model), output=str(out_path) if out_path else None,
        options=options.model_dump(mode="json"),
        achieved=round(1.0 - after_metric / base_metric, 6) if base_metric else 0.0,
        params_before=first.params_before, params_after=last.params_after,
        macs_before=first.macs_before, macs_after=last.macs_after,
        size_before=loaded.file_size, size_after=size_after, layers=layers, groups=groups,
        verification=check, seconds=round(time.perf_counter() - started, 3),
        notes=loaded.notes + [n for r in results for n in r.notes if n not in loaded.notes]
        + notes, calibration=first.calibration, steps=rows, budget=budget)
    if write and report:
        write_reports(result, options)
    return result

