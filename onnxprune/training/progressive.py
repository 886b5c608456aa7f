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
7. Each step's row also holds ``metric``: the held-out task metric after the step
   (accuracy with labels, else agreement, else cosine similarity; rule 4's metric).
8. Never a collapsed model silently (:mod:`onnxprune.training.outcome`): with held-out
   data the result is compared with the one-shot candidate and the better is kept
   (``flow``); its ``accuracy`` section compares it with the original, and a drop
   beyond ``--max-drop`` (default 0.05) is exit 11 unless ``--accept-drop``. A held-out
   split of fewer than 32 samples is refused (exit 6). With fewer than
   ``PROGRESSIVE_MIN_SAMPLES`` training samples and ``--steps`` not given, the run is
   one-shot with the best recovery.
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

from onnxprune.errors import OnnxPruneError, UnreachableTargetError, UsageError
from onnxprune.planning.schedule import cubic_schedule, step_target
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
    held_out: bool = False  # evaluation is neither trained on nor scored (rule 7)


def _datasets(options: Any, model: ir.Model) -> _Data:
    """Rule 3."""
    from onnxprune.calibration.accuracy import check_held_out

    everything = _open(options, model, options.data) if options.data else None
    if options.eval_data:
        evaluation = _open(options, model, options.eval_data)
        check_held_out(evaluation.num_samples, options.eval_data, split=False)
        return _Data(everything, evaluation, [], held_out=True)
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
    check_held_out(held.num_samples, everything.origin, split=True)
    note = (f"held out {held.num_samples} of {everything.num_samples} samples of --data for "
            f"the per-step evaluation (--holdout {options.holdout:g}); fine-tuning and scoring "
            f"use the other {train.num_samples}")
    return _Data(train, held, [note], held_out=True)


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
                  "target": relative, "eval_data": None, "accept_drop": True}
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
                         notes: list[str] | None = None, auto_steps: bool = False) -> Any:
    """Rules 1-8; returns a :class:`onnxprune.compress.CompressResult` with ``steps``.
    ``auto_steps``: ``steps`` was not given but chosen by default (rule 8's data size)."""
    from onnxprune.compress import default_output, write_reports
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
    if auto_steps and options.data:
        small = _small_data_one_shot(model, options, loaded, output, write, report, notes)
        if small is not None:
            return small
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
        results, final_path, extra = _outcome(model, options, original, data, run,
                                              final_path, scratch)
        notes = (notes or []) + run.notes + (
            [f"step models and records: {work.path} (--resume continues an interrupted "
             "run)"] if write else [])  # flow and accuracy: own keys, printed by the CLI
        result = _finish(model, loaded, original, options, results, run.rows, final_path,
                         destination, write, report, started, notes, run.budget)
        result.accuracy, result.flow = extra["accuracy"], extra["flow"]
        if write and report:
            write_reports(result, options)
        work.finish()
        return result


def _small_data_one_shot(model: str, options: Any, loaded: Any, output: str | None,
                         write: bool, report: bool, notes: list[str] | None) -> Any:
    """Rule 8: with too little data for fine-tuning to help, the default is one-shot."""
    from onnxprune.compress import compress, write_reports
    from onnxprune.training.outcome import PROGRESSIVE_MIN_SAMPLES

    samples = _open(options, loaded.model, options.data).num_samples
    if options.max_samples:
        samples = min(samples, options.max_samples)
    if samples >= PROGRESSIVE_MIN_SAMPLES:
        return None
    message = (f"one-shot with the best recovery: {samples} samples of --data are fewer than "
               f"the {PROGRESSIVE_MIN_SAMPLES} from which progressive fine-tuning helps (see "
               "docs/finetune.md); pass --steps N to fine-tune anyway")
    single = options.model_copy(update={"steps": 1})
    result = compress(model, output=output, options=single, write=write, report=False)
    result.flow = {"chosen": "one-shot", "samples": samples,
                   "min_samples": PROGRESSIVE_MIN_SAMPLES, "message": message}
    result.notes = [n for n in (notes or []) if "--steps 4" not in n] + result.notes
    if write and report:
        write_reports(result, single)
    return result


def _outcome(model: str, options: Any, original: onnx.ModelProto, data: _Data, run: _Run,
             final_path: pathlib.Path, scratch: pathlib.Path,
             ) -> tuple[list, pathlib.Path, dict]:
    """Rules 7-8 (:mod:`onnxprune.training.outcome`): the model to hand back, its
    ``accuracy`` section (exit 11 when it collapsed) and the ``flow`` choice."""
    from onnxprune.calibration.accuracy import accuracy_section, check_accuracy, not_measured
    from onnxprune.training.evaluate import fidelity
    from onnxprune.training.outcome import choose_flow, one_shot_candidate

    results = run.results
    if data.evaluation is None:
        flow = choose_flow(None, None)
        return results, final_path, {"flow": flow, "accuracy": not_measured("no evaluation data")}
    metrics = fidelity(onnx.load(str(final_path)), original, data.evaluation,
                       options.batch_size)
    progressive_value = budget_value(metrics)
    one_value = None
    if data.held_out and progressive_value is not None:
        first, last = results[0], results[-1]
        achieved = 1.0 - _metric(last, options.metric)[1] / _metric(first, options.metric)[0]
        try:
            one = one_shot_candidate(model, options, data.train, data.evaluation,
                                     scratch / "one_shot.onnx", achieved)
        except OnnxPruneError as exc:  # no candidate: the progressive result stands
            logger.warning("one-shot candidate failed (%s); keeping the progressive result",
                           exc)
        else:
            found = budget_value((one.accuracy or {}).get("fidelity") or {})
            one_value = None if found is None else (found[0], found[1])
    flow = choose_flow(None if progressive_value is None else progressive_value[:2], one_value)
    if flow["chosen"] == "one-shot":
        results, final_path = [one], scratch / "one_shot.onnx"
        metrics = one.accuracy["fidelity"]
    accuracy = accuracy_section(metrics, data=data.evaluation.origin,
                                samples=data.evaluation.num_samples, held_out=data.held_out,
                                max_drop=options.max_drop, accepted=options.accept_drop)
    check_accuracy(accuracy)  # exit 11 before anything is written
    return results, final_path, {"flow": flow, "accuracy": accuracy}


def _finish(model: str, loaded: Any, original: onnx.ModelProto, options: Any,
            results: list, rows: list[dict], final_path: pathlib.Path,
            destination: pathlib.Path, write: bool, report: bool, started: float,
            notes: list[str], budget: dict | None) -> Any:
    """Rule 6: verify and write the final model, build the result and its report."""
    from onnxprune.analysis import analyze
    from onnxprune.compress import CompressResult, _file_size, staged_output
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
    return result

