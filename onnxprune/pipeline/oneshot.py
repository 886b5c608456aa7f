"""The one-shot flow: prune once to the target, measure, hand the candidate to finish.

Rules:

1. ``--eval-data`` is held-out data: fewer than 32 samples are refused (exit 6).
2. :func:`onnxprune.pipeline.prune.prune_once` prunes the model once (calibration data:
   ``--data`` limited to ``max_samples``; held-out data for the ``--recover auto``
   choice) and stages the result in the run's output.
3. The ``accuracy`` section is the task metric of original and result on the held-out
   data, or why it was not measured (:meth:`Calibration.measure_accuracy`); with
   ``--metric latency`` the ``latency`` section holds the prediction that finish
   measures.
"""

from __future__ import annotations

__all__ = ["measured_candidate", "run_one_shot"]

from onnxprune.calibration.accuracy import check_held_out
from onnxprune.options import CompressOptions
from onnxprune.pipeline.context import Candidate, RunContext
from onnxprune.pipeline.inputs import Inputs
from onnxprune.pipeline.prune import Pruned, prune_once
from onnxprune.pipeline.result import Accuracy, Latency


def measured_candidate(inputs: Inputs, pruned: Pruned) -> Candidate:
    """Rule 3."""
    calib = pruned.calibration
    accuracy = calib.measure_accuracy(inputs.original, pruned.candidate.path)
    candidate = pruned.candidate.with_section(Accuracy(accuracy))
    if calib.latency is not None:
        candidate = candidate.with_section(Latency(calib.latency))
    return candidate


def run_one_shot(inputs: Inputs, options: CompressOptions, run: RunContext) -> Candidate:
    """Rules 1-3."""
    if inputs.evaluation is not None and options.eval_data:
        check_held_out(inputs.evaluation.num_samples, options.eval_data, split=False)
    pruned = prune_once(inputs, options, run.staged, data=inputs.data,
                        evaluation=inputs.evaluation, reference_sizes=run.reference_sizes)
    return measured_candidate(inputs, pruned)
