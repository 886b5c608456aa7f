"""Progressive pruning with fine-tuning: ``compress --steps N [--finetune-epochs E]``.

Rules:

1. Step ``t`` of ``N`` must leave ``s_t = s_f * (1 - (1 - t/N)^3)`` of the *original*
   metric removed (:func:`cubic_schedule`). The current (already pruned and
   fine-tuned) model is re-analyzed and pruned by the one-shot ``compress`` with the
   target relative to itself that reaches ``s_t`` of the original; that call checks
   the structural rewrite with the masked-equivalence oracle as usual.
2. After every step (so also after the last) the model is fine-tuned for
   ``finetune_epochs`` on all of ``--data`` (:func:`onnxprune.training.finetune`),
   distilling from the original model by default. A fractional ``min_keep`` refers
   to the *original* widths (every step's planner gets them by source layer name),
   so no layer ends below ``min_keep`` of its original width.
3. Each step records ``target``, ``achieved`` (of the original's metric), ``params``,
   ``macs``, fidelity to the original on the evaluation data (``--eval-data``, else
   the calibration subset of ``--data``) after fine-tuning and before it
   (``*_pruned``), the final training loss and seconds; the list is the result's and
   the report's ``steps``.
4. The final model is checked like any rewrite (checker, ONNX Runtime, output names
   and shapes; the oracle no longer applies to fine-tuned weights) and written
   atomically with its report.
"""

from __future__ import annotations

__all__ = ["compress_progressive"]

import contextlib
import logging
import pathlib
import tempfile
import time
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from onnxprune.errors import UsageError
from onnxprune.training.schedule import cubic_schedule, step_target

logger = logging.getLogger(__name__)

DEFAULT_EPOCHS = 3.0  # CompressOptions.epochs() applies it


def _epochs(options: Any) -> float:
    return options.epochs()


def _open(options: Any, model: ir.Model, path: str | None, limit: int | None):
    from onnxprune.data import ImageOptions, open_data

    image = ImageOptions(tuple(options.image_size) if options.image_size else None,
                         tuple(options.mean), tuple(options.std), options.layout,
                         options.channel_order)
    data = open_data(path, model, image)
    if limit and data.num_samples > limit:
        data = data.take(limit, seed=options.seed)
    return data


def _metric(result: Any, metric: str) -> tuple[float, float]:
    if metric == "params":
        return float(result.params_before), float(result.params_after)
    return float(result.macs_before), float(result.macs_after)


def _finetune(path: pathlib.Path, data, original: onnx.ModelProto, options: Any,
              epochs: float, step: int) -> tuple[onnx.ModelProto, dict]:
    from onnxprune.training import finetune

    def progress(info: dict) -> None:
        logger.debug("step %d: fine-tune %d/%d loss %.4f", step, info["step"], info["steps"],
                     info["loss"])

    result = finetune(onnx.load(str(path)), data, teacher=original, loss=options.loss,
                      epochs=epochs, lr=options.lr, optimizer=options.optimizer,
                      batch_size=options.batch_size, seed=options.seed + step,
                      temperature=options.temperature, progress=progress)
    return result.model, result.summary()


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
    if step == 1 and "reference_accuracy" in before:
        row["reference_accuracy"] = before["reference_accuracy"]
    return row


def compress_progressive(model: str, options: Any, *, output: str | None = None,
                         write: bool = True, report: bool = True) -> Any:
    """Rules 1-4; returns a :class:`onnxprune.compress.CompressResult` with ``steps``."""
    from onnxprune.compress import compress, default_output
    from onnxprune.graph import load_model
    from onnxprune.graph.io import check_destination
    from onnxprune.training.evaluate import fidelity
    from onnxprune.training.finetune import import_training

    started = time.perf_counter()
    epochs = _epochs(options)
    if epochs > 0 and not options.data:
        raise UsageError("fine-tuning needs training data: pass --data (model inputs; "
                         "labels too for --loss ce/mse)")
    if epochs > 0:
        import_training()  # exit 7 before any work when the training build is missing
    destination = pathlib.Path(output or default_output(model))
    if write:
        check_destination(destination, model)
    loaded = load_model(model)
    original = ir.serde.serialize_model(loaded.model)
    if loaded.external_data:
        onnx.load_external_data_for_model(original, str(loaded.path.parent))
    widths = original_widths(loaded.model, options.prune_hidden)
    train = _open(options, loaded.model, options.data, None) if epochs > 0 else None
    evaluation = None
    if options.eval_data or options.data:
        evaluation = _open(options, loaded.model, options.eval_data or options.data,
                           None if options.eval_data else options.max_samples)
    single = {"steps": 1, "finetune_epochs": 0.0, "html_report": None, "bench": False,
              "mobile": False}
    rows, results = [], []
    current = pathlib.Path(model)
    with tempfile.TemporaryDirectory(prefix="onnxprune-steps-") as scratch:
        for step, goal in enumerate(cubic_schedule(options.target, options.steps), start=1):
            step_started = time.perf_counter()
            relative = goal
            if results:
                relative = step_target(goal, _metric(results[0], options.metric)[0],
                                       _metric(results[-1], options.metric)[1])
            relative = min(max(relative, 1e-6), 1.0 - 1e-6)
            logger.info("step %d/%d: remove %.4f of the original %s (%.4f of the current model)",
                        step, options.steps, goal, options.metric, relative)
            pruned_path = pathlib.Path(scratch) / f"step{step}.onnx"
            pruned = compress(str(current), output=pruned_path, report=False,
                              options=options.model_copy(update={**single, "target": relative}),
                              min_keep_widths=widths)
            results.append(pruned)
            achieved = 1.0 - (_metric(pruned, options.metric)[1]
                              / _metric(results[0], options.metric)[0])
            tuned, summary, before, after = onnx.load(str(pruned_path)), None, {}, {}
            if evaluation is not None:
                before = fidelity(tuned, original, evaluation, options.batch_size)
            current = pruned_path
            if epochs > 0:
                tuned, summary = _finetune(pruned_path, train, original, options, epochs, step)
                current = pathlib.Path(scratch) / f"step{step}.tuned.onnx"
                onnx.save(tuned, str(current))
                if evaluation is not None:
                    after = fidelity(tuned, original, evaluation, options.batch_size)
            rows.append(_row(step, goal, achieved, pruned, before, after, summary,
                             time.perf_counter() - step_started))
        return _finish(model, loaded, original, options, results, rows, current, destination,
                       write, report, started)


def original_widths(model: ir.Model, prune_hidden: bool = False) -> dict[str, int]:
    """Width in units of every source layer's channel group (``min_keep`` reference)."""
    from onnxprune.analysis import analyze

    analysis = analyze(model, prune_hidden=prune_hidden)
    return {source.node: group.size for group in analysis.groups for source in group.sources}


def _finish(model: str, loaded: Any, original: onnx.ModelProto, options: Any,
            results: list, rows: list[dict], final_path: pathlib.Path,
            destination: pathlib.Path, write: bool, report: bool, started: float) -> Any:
    """Rule 4: verify and write the final model, build the result and its report."""
    from onnxprune.analysis import analyze
    from onnxprune.compress import CompressResult, _file_size, write_reports
    from onnxprune.graph import load_model
    from onnxprune.graph.io import StagedOutput
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
        if not write:
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="onnxprune-"))
            destination = pathlib.Path(scratch) / destination.name
        staged = stack.enter_context(StagedOutput(destination, source=model))
        staged_path = staged.write(final.model, loaded.external_data or None)
        check = verify(original, str(staged_path), None, seed=options.seed,
                       original_path=str(loaded.path) if loaded.path else None).to_dict()
        check["steps_max_rel_diff"] = [r.verification.get("max_rel_diff") for r in results]
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
        notes=loaded.notes + [n for r in results for n in r.notes if n not in loaded.notes],
        calibration=first.calibration, steps=rows)
    if write and report:
        write_reports(result, options)
    return result

