"""The progressive flow: ``compress --steps N`` (the schedule: :mod:`.steps`).

Rules:

1. Before any work: fine-tuning needs the ONNX Runtime training build (exit 7) and
   ``--max-drop`` needs evaluation data (``--eval-data``, or ``--data`` to hold out).
2. With fewer than ``PROGRESSIVE_MIN_SAMPLES`` samples of ``--data`` and ``--steps`` not
   given, the run is one-shot with the best recovery (``flow`` says why; the options
   recorded have ``steps=1``).
3. The schedule (:class:`onnxprune.pipeline.steps.StepRun`) prunes once per step and
   fine-tunes; each step's model and record are kept in the work directory
   (``--work-dir``, default ``<output>.steps``; a scratch folder with ``write=False``).
4. Never a collapsed model silently (:mod:`onnxprune.training.outcome`): with held-out
   data the result is compared with the one-shot candidate (pruned once from the
   original to the same fraction, best recovery) and the better is kept (``flow``);
   the ``accuracy`` section compares the kept model with the original (finish checks
   it against ``--max-drop``).
5. The final candidate: layers and groups of the first step with the widths of the
   final model, ``achieved`` of the original's metric, the check of the final model
   (no mask: fine-tuned weights) with every step's ``max_rel_diff``, and the sections
   ``calibration`` (first step), ``steps``/``budget``/``flow`` and ``accuracy``.
"""

from __future__ import annotations

__all__ = ["check_progressive", "run_progressive"]

import dataclasses
import logging
import pathlib

import numpy as np
import onnx

from onnxprune.errors import OnnxPruneError, UnreachableTargetError, UsageError
from onnxprune.graph.io import StagedOutput
from onnxprune.options import CompressOptions
from onnxprune.pipeline.context import Candidate, RunContext
from onnxprune.pipeline.inputs import Inputs, open_model
from onnxprune.pipeline.oneshot import measured_candidate, run_one_shot
from onnxprune.pipeline.prune import prune_once
from onnxprune.pipeline.result import Accuracy, Calibration, Latency, Progressive
from onnxprune.pipeline.steps import (
    StepData,
    StepRun,
    budget_value,
    datasets,
    metric_of,
    original_widths,
)
from onnxprune.rewrite.verify import verify
from onnxprune.training.outcome import PROGRESSIVE_MIN_SAMPLES, choose_flow
from onnxprune.training.workdir import WorkDir

logger = logging.getLogger(__name__)


def check_progressive(options: CompressOptions) -> None:
    """Rule 1."""
    if options.tunes():
        from onnxprune.training.finetune import import_training

        import_training()  # exit 7 before any work when the training build is missing
    if options.max_drop is not None and not (options.data or options.eval_data):
        raise UsageError("--max-drop needs evaluation data: pass --eval-data, or --data to "
                         "hold part of it out")


def run_progressive(inputs: Inputs, options: CompressOptions, run: RunContext) -> Candidate:
    """Rules 2-5."""
    if run.auto_steps and inputs.data is not None:
        small = _small_data_one_shot(inputs, options, run)
        if small is not None:
            return small
    data = datasets(options, inputs.data, inputs.evaluation)
    folder = options.work_dir
    if folder is None:
        folder = str(run.destination) + ".steps" if run.write else run.scratch / "work"
    work = WorkDir.open(folder, inputs.model, options.model_dump(mode="json"), options.resume)
    steps = StepRun(inputs.model, options, inputs.original,
                    original_widths(inputs.loaded.model, options.prune_hidden), data, work,
                    run.scratch, run.progress)
    final_path = steps.run()
    if not steps.rows:
        raise UnreachableTargetError("no step was kept", 0.0)
    results, final_path, flow, accuracy = _outcome(inputs, options, data, steps, final_path,
                                                   run.scratch)
    notes = steps.notes + ([f"step models and records: {work.path} (--resume continues an "
                            "interrupted run)"] if run.write else [])
    candidate = _final(inputs, options, results, final_path, notes)
    run.on_commit.append(work.finish)
    return dataclasses.replace(candidate, sections=(
        *candidate.sections, Progressive(steps.rows, steps.budget, flow), Accuracy(accuracy)))


def _small_data_one_shot(inputs: Inputs, options: CompressOptions,
                         run: RunContext) -> Candidate | None:
    """Rule 2."""
    samples = inputs.data.num_samples
    if options.max_samples:
        samples = min(samples, options.max_samples)
    if samples >= PROGRESSIVE_MIN_SAMPLES:
        return None
    message = (f"one-shot with the best recovery: {samples} samples of --data are fewer than "
               f"the {PROGRESSIVE_MIN_SAMPLES} from which progressive fine-tuning helps (see "
               "docs/finetune.md); pass --steps N to fine-tune anyway")
    run.options = options.model_copy(update={"steps": 1})
    run.notes = [n for n in run.notes if "--steps 4" not in n]
    candidate = run_one_shot(inputs, run.options, run)
    flow = {"chosen": "one-shot", "samples": samples, "min_samples": PROGRESSIVE_MIN_SAMPLES,
            "message": message}
    return candidate.with_section(Progressive(flow=flow))


def _one_shot(inputs: Inputs, options: CompressOptions, data: StepData,
              path: pathlib.Path, target: float) -> Candidate:
    """Rule 4: the original pruned once to ``target`` (written to ``path``), measured on
    the held-out data (its ``accuracy`` section holds the metrics)."""
    original = open_model(inputs.model)
    with StagedOutput(path, source=inputs.model) as stage:
        pruned = prune_once(original, options, stage, target=min(max(target, 1e-6), 1 - 1e-6),
                            data=data.train, evaluation=data.evaluation)
        candidate = measured_candidate(original, pruned)
        committed = stage.commit()
    return dataclasses.replace(candidate, path=committed, stages={"pruned": committed})


def _outcome(inputs: Inputs, options: CompressOptions, data: StepData, steps: StepRun,
             final_path: pathlib.Path, scratch: pathlib.Path,
             ) -> tuple[list[Candidate], pathlib.Path, dict, dict]:
    """Rule 4: the step results and model to hand on, the ``flow`` and ``accuracy``."""
    from onnxprune.calibration.accuracy import accuracy_section, not_measured
    from onnxprune.calibration.fidelity import fidelity

    results = steps.results
    if data.evaluation is None:
        return results, final_path, choose_flow(None, None), not_measured("no evaluation data")
    metrics = fidelity(onnx.load(str(final_path)), inputs.original, data.evaluation,
                       options.batch_size)
    progressive_value = budget_value(metrics)
    one, one_value = None, None
    if data.held_out and progressive_value is not None:
        first, last = results[0], results[-1]
        achieved = 1.0 - metric_of(last, options.metric)[1] / metric_of(first, options.metric)[0]
        try:
            one = _one_shot(inputs, options, data, scratch / "one_shot.onnx", achieved)
        except OnnxPruneError as exc:  # no candidate: the progressive result stands
            logger.warning("one-shot candidate failed (%s); keeping the progressive result",
                           exc)
        else:
            found = budget_value(one.section(Accuracy).accuracy.get("fidelity") or {})
            one_value = None if found is None else (found[0], found[1])
    flow = choose_flow(None if progressive_value is None else progressive_value[:2], one_value)
    if flow["chosen"] == "one-shot":
        results, final_path = [one], one.path
        metrics = one.section(Accuracy).accuracy["fidelity"]
    accuracy = accuracy_section(metrics, data=data.evaluation.origin,
                                samples=data.evaluation.num_samples, held_out=data.held_out,
                                max_drop=options.max_drop, accepted=options.accept_drop)
    return results, final_path, flow, accuracy


def _final(inputs: Inputs, options: CompressOptions, results: list[Candidate],
           final_path: pathlib.Path, notes: list[str]) -> Candidate:
    """Rule 5."""
    from onnxprune.analysis import analyze
    from onnxprune.graph import load_model
    from onnxprune.reporting import layer_rows

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
    check = verify(inputs.original, str(final_path), None, seed=options.seed,
                   original_path=inputs.original_path).to_dict()
    check["steps_max_rel_diff"] = [(r.verification or {}).get("max_rel_diff") for r in results]
    base, after = metric_of(first, options.metric)[0], metric_of(last, options.metric)[1]
    calibration = first.section(Calibration)
    latency = last.section(Latency)  # steps.py rule 9: relative to the original
    step_notes = [n for r in results for n in r.notes if n not in inputs.loaded.notes]
    return Candidate(
        path=final_path, achieved=round(1.0 - after / base, 6) if base else 0.0,
        params_before=first.params_before, params_after=last.params_after,
        macs_before=first.macs_before, macs_after=last.macs_after, layers=layers,
        groups=groups, verification=check, notes=inputs.loaded.notes + step_notes + notes,
        sections=tuple(s for s in (calibration, latency) if s is not None),
        stages={"pruned": final_path})
