"""The sparse flow (``--mode unstructured|n:m``) and the post-steps of the extended modes.

Rules:

1. Modes ``unstructured`` and ``n:m`` zero weights in place
   (:func:`onnxprune.sparsity.progressive.sparsify`): the output keeps every tensor's
   shape and stores the zeros, every masked weight exactly zero (checked on the
   written file); it passes ``onnx.checker`` and runs in ONNX Runtime with the
   original's output names and shapes.
2. ``achieved`` is the fraction of prunable weights that are zero, ``params_after`` the
   parameters minus the weights zeroed, MACs are the dense MACs (dense kernels do not
   skip zeros); the ``sparsity`` section holds per-layer rows and the gzip sizes.
3. ``--quantize int8`` (a post-step after any flow) quantizes the candidate
   (:func:`onnxprune.quantize.quantize_int8`) with the calibration data (static QDQ),
   or dynamically without ``data``; the quantized model is checked like rule 1 and
   becomes the candidate.
4. The evaluation post-step (sparse modes and int8) compares original, pruned and
   pruned+int8: file and gzip size, accuracy/agreement/deviation on ``eval_data``
   (else on ``data``, else on synthetic inputs: agreement only), with ``bench``
   single-thread CPU latency (:mod:`onnxprune.sparsity.evaluate`); the ``accuracy``
   section then compares the original and the last model evaluated (with
   ``eval_data`` a drop beyond ``max_drop`` is exit 11 unless ``accept_drop``).
"""

from __future__ import annotations

__all__ = ["evaluate_step", "quantize_step", "run_sparse"]

import dataclasses
import logging
import pathlib

import onnx

from onnxprune.analysis import analyze
from onnxprune.calibration.accuracy import accuracy_section
from onnxprune.data import DataSource, synthetic_source
from onnxprune.errors import UnsupportedModelError, VerificationError
from onnxprune.options import CompressOptions
from onnxprune.pipeline.context import Candidate, RunContext
from onnxprune.pipeline.inputs import Inputs, calibration_data
from onnxprune.pipeline.result import Accuracy, Evaluation, Quantization, Sparsity
from onnxprune.planning import CostModel
from onnxprune.rewrite.verify import verify
from onnxprune.sparsity.evaluate import (
    compare_models,
    evaluation_row,
    gzip_size,
    heads_for,
    model_outputs,
)
from onnxprune.sparsity.finetune import FinetuneSettings, reapply_masks
from onnxprune.sparsity.options import parse_nm
from onnxprune.sparsity.progressive import SparseSettings, layer_rows, sparsify

logger = logging.getLogger(__name__)

SYNTHETIC_EVAL_SAMPLES = 64


def evaluation_source(inputs: Inputs, options: CompressOptions) -> tuple[DataSource, list[str]]:
    """Rule 4: what evaluation runs on, and the note saying so."""
    if inputs.evaluation is not None:
        return inputs.evaluation, []
    data = calibration_data(inputs, options)
    if data is not None:
        return data, ["evaluated on the calibration data (--data); pass --eval-data for "
                      "held-out numbers"]
    source = synthetic_source(inputs.loaded.model, SYNTHETIC_EVAL_SAMPLES, seed=options.seed)
    return source, [f"no --data/--eval-data: evaluated on {SYNTHETIC_EVAL_SAMPLES} "
                    "synthetic inputs (agreement with the original only)"]


def _settings(options: CompressOptions) -> tuple[SparseSettings, FinetuneSettings | None]:
    n, m = parse_nm(options.nm)
    settings = SparseSettings(options.mode, options.target, options.scope, n, m,
                              options.steps, tuple(options.ignore))
    finetune = None
    if options.tunes():
        finetune = FinetuneSettings(options.epochs() or 1.0, options.lr, options.batch_size,
                                    options.seed, options.loss, options.optimizer,
                                    options.temperature, options.train_steps)
    return settings, finetune


def run_sparse(inputs: Inputs, options: CompressOptions, run: RunContext) -> Candidate:
    """Rules 1-2: the sparse candidate, written into the run's scratch folder."""
    settings, finetune = _settings(options)
    notes = []
    if finetune is None and options.steps > 1:
        notes.append("steps > 1 without fine-tuning: the result equals one-shot pruning to "
                     "the final sparsity")
    data = calibration_data(inputs, options)
    evaluate = _step_evaluator(inputs, options) if data is not None else None
    done = sparsify(inputs.original, settings, data=data, finetune=finetune,
                    evaluate=evaluate)
    if not done.weights:
        raise UnsupportedModelError(f"{inputs.model}: no Conv/Gemm/MatMul with a constant "
                                    "float weight to sparsify")
    path = run.scratch / "pruned.onnx"
    onnx.save(done.model, str(path))
    check = verify(inputs.original, str(path), None, seed=options.seed)
    if reapply_masks(onnx.load(str(path)), done.masks):
        raise VerificationError("a masked weight is not exactly zero in the written model; "
                                "this is an onnxprune bug, please report it")
    return _candidate(inputs, options, done, check.to_dict(), path,
                      inputs.loaded.notes + notes + list(done.notes))


def _step_evaluator(inputs: Inputs, options: CompressOptions):
    source, _ = evaluation_source(inputs, options)
    reference, labels = model_outputs(inputs.original, source, options.batch_size)

    def evaluate(proto: onnx.ModelProto) -> dict:
        heads = heads_for(inputs.original, proto)
        output, _ = model_outputs(proto, source, options.batch_size, heads)
        return evaluation_row(output, reference, labels, heads)

    return evaluate


def _sparsity(options: CompressOptions, done, after: list[dict], gz_before: int | None,
              gz_after: int) -> dict:
    n, m = parse_nm(options.nm)
    return {
        "mode": options.mode,
        "target": options.target if options.mode == "unstructured" else (m - n) / m,
        "target_meaning": "fraction of prunable weights (Conv/Gemm/MatMul constant weights) "
                          "that are zero",
        "scope": options.scope if options.mode == "unstructured" else "per layer (N:M)",
        "nm": options.nm if options.mode == "n:m" else None,
        "steps": options.steps, "finetune_epochs": options.finetune_epochs,
        "prunable_weights": sum(r["weights"] for r in after),
        "zeros": sum(r["zeros"] for r in after),
        "achieved": round(done.achieved, 6), "layers": after, "skipped": done.skipped,
        "gzip_before": gz_before, "gzip_after": gz_after,
        "gzip_ratio": round(gz_before / gz_after, 4) if gz_before and gz_after else None,
    }


def _candidate(inputs: Inputs, options: CompressOptions, done, check: dict,
               path: pathlib.Path, notes: list[str]) -> Candidate:
    """Rule 2."""
    cost = CostModel(analyze(inputs.loaded.model)).original
    before = layer_rows(inputs.original, done.weights)
    after = layer_rows(done.model, done.weights, done.skipped)
    zeroed = sum(a["zeros"] - b["zeros"] for a, b in zip(after, before))
    original_file = inputs.loaded.path
    gz_before = gzip_size(original_file) if original_file else None
    sparsity = _sparsity(options, done, after, gz_before, gzip_size(path))
    return Candidate(
        path=path, achieved=round(done.achieved, 6), params_before=cost.params,
        params_after=cost.params - zeroed, macs_before=cost.macs, macs_after=cost.macs,
        layers=[], groups=[], verification=check, notes=notes,
        sections=(Sparsity(sparsity, done.steps),), stages={"pruned": path})


def quantize_step(inputs: Inputs, candidate: Candidate, options: CompressOptions,
                  run: RunContext) -> Candidate:
    """Rule 3."""
    from onnxprune.quantize import quantize_int8

    final = run.scratch / "quantized.onnx"
    info = quantize_int8(candidate.path, final, calibration_data(inputs, options),
                         batch_size=options.batch_size)
    verify(inputs.original, str(final), None, seed=options.seed)
    notes = info.pop("notes", [])
    candidate = dataclasses.replace(candidate, path=final, notes=candidate.notes + notes,
                                    stages={**candidate.stages, "pruned+int8": final})
    return candidate.with_section(Quantization(info))


def evaluate_step(inputs: Inputs, candidate: Candidate, options: CompressOptions,
                  run: RunContext) -> Candidate:
    """Rule 4."""
    source, notes = evaluation_source(inputs, options)
    models = {"original": inputs.loaded.path, **candidate.stages}
    evaluation = compare_models(models, source, batch_size=options.batch_size,
                                bench=options.bench, runs=options.bench_runs,
                                seed=options.seed)
    loaded = [n for n in candidate.notes if n in inputs.loaded.notes]  # the model's first
    rest = [n for n in candidate.notes if n not in inputs.loaded.notes]
    candidate = dataclasses.replace(candidate, notes=loaded + notes + rest)
    candidate = candidate.with_section(Evaluation(evaluation))
    return candidate.with_section(Accuracy(_accuracy(evaluation, options)))


def _accuracy(evaluation: dict, options: CompressOptions) -> dict:
    rows = evaluation["models"]
    original, final = rows[0], rows[-1]
    metrics = {k: v for k, v in final.items() if k in ("accuracy", "agreement", "cosine")}
    if "accuracy" in original and "accuracy" in final:
        metrics["reference_accuracy"] = original["accuracy"]
    return accuracy_section(metrics, data=evaluation["data"], samples=evaluation["samples"],
                            held_out=bool(options.eval_data), max_drop=options.max_drop,
                            accepted=options.accept_drop)
