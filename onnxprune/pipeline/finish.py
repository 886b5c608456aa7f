"""``finish``: the closing steps every compress flow shares.

Rules:

1. Measure: with ``--metric latency`` the pruned model's latency is measured against
   the prediction (:func:`onnxprune.benchmark.latency_check.check_latency`); the
   ``accuracy`` section a flow measured is checked against the budget: a drop beyond
   ``--max-drop`` is exit 11 before anything is written (unless ``--accept-drop``).
2. Stage: the candidate is written into the run's staged output unless it already is
   that file; a candidate without a verification is checked there against the
   original (checker, ONNX Runtime, output names and shapes; no mask: fine-tuned
   weights).
3. Commit: the staged file is moved into place (only with ``write``), its size
   (with external data) is the result's ``size_after``.
4. The :class:`CompressResult` holds the candidate's numbers and sections and the
   run's notes; with ``write`` and ``report`` every report section is written
   (:mod:`onnxprune.pipeline.reports`).
"""

from __future__ import annotations

__all__ = ["finish"]

import logging
import pathlib

import onnx_ir as ir

from onnxprune.calibration.accuracy import check_accuracy
from onnxprune.options import CompressOptions
from onnxprune.pipeline.context import Candidate, RunContext, file_size
from onnxprune.pipeline.inputs import Inputs
from onnxprune.pipeline.reports import write_reports
from onnxprune.pipeline.result import Accuracy, CompressResult, Latency
from onnxprune.rewrite.verify import verify

logger = logging.getLogger(__name__)


def _measure(inputs: Inputs, candidate: Candidate, options: CompressOptions) -> Candidate:
    """Rule 1."""
    latency = candidate.section(Latency)
    if latency is not None and latency.latency.get("measured") is None:
        from onnxprune.benchmark.latency_check import check_latency

        pruned = candidate.stages.get("pruned", candidate.path)
        measured = check_latency(latency.latency, inputs.model, pruned,
                                 runs=options.bench_runs)
        candidate = candidate.with_section(Latency(measured))
    accuracy = candidate.section(Accuracy)
    if accuracy is not None:
        check_accuracy(accuracy.accuracy)  # exit 11 before anything is written
    return candidate


def _stage(inputs: Inputs, candidate: Candidate, options: CompressOptions,
           run: RunContext) -> tuple[pathlib.Path, dict]:
    """Rule 2: the staged path and its verification."""
    path = run.staged.path
    if pathlib.Path(candidate.path) != path:
        path = run.staged.write(ir.load(candidate.path), inputs.loaded.external_data or None)
    verification = candidate.verification
    if verification is None:
        verification = verify(inputs.original, str(path), None, seed=options.seed,
                              original_path=inputs.original_path).to_dict()
    return path, verification


def finish(inputs: Inputs, candidate: Candidate, options: CompressOptions,
           run: RunContext) -> CompressResult:
    """Rules 1-4; ``options`` are the ones the result records."""
    candidate = _measure(inputs, candidate, options)
    path, verification = _stage(inputs, candidate, options, run)
    size_after = file_size(path, run.staged.data_name)
    out_path = run.staged.commit() if run.write else None
    result = CompressResult(
        input=str(run.model), output=str(out_path) if out_path else None,
        options=options.model_dump(mode="json"), achieved=candidate.achieved,
        params_before=candidate.params_before, params_after=candidate.params_after,
        macs_before=candidate.macs_before, macs_after=candidate.macs_after,
        size_before=inputs.loaded.file_size, size_after=size_after,
        layers=candidate.layers, groups=candidate.groups, verification=verification,
        seconds=run.seconds(), notes=_notes(run.notes, candidate.notes),
        sections=candidate.sections)
    if run.write and run.report:
        write_reports(result, options)
    return result


def _notes(run_notes: list[str], notes: list[str]) -> list[str]:
    """The run's notes, then the candidate's, each once."""
    merged: list[str] = []
    for note in [*run_notes, *notes]:
        if note not in merged:
            merged.append(note)
    return merged
