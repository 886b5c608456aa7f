"""``compress`` for modes ``unstructured`` / ``n:m`` and for INT8 quantization after pruning.

Rules:

1. Mode ``structured`` runs the structural pipeline of :func:`onnxprune.compress.compress`
   (one-shot, or progressive with fine-tuning: the result keeps its ``steps``) into a
   scratch file; modes ``unstructured`` and ``n:m`` zero weights in place
   (:func:`onnxprune.sparsity.progressive.sparsify`): the output keeps every tensor's
   shape and stores the zeros, every masked weight exactly zero (checked on the
   written file).
2. ``quantize="int8"`` quantizes the pruned model (:func:`onnxprune.quantize.quantize_int8`)
   with the calibration data (static QDQ), or dynamically without ``data``; the output is
   then the quantized model.
3. Every output passes ``onnx.checker`` and runs in ONNX Runtime with the original's
   output names and shapes before it is written (atomically, never over the input).
4. The result's ``evaluation`` compares original, pruned and (when quantized)
   pruned+int8: file and gzip size, accuracy/agreement/deviation on ``eval_data`` (else
   on ``data``, else on synthetic inputs: agreement only), and with ``bench``
   single-thread CPU latency (:mod:`onnxprune.sparsity.evaluate`).
5. In modes ``unstructured`` / ``n:m``, ``achieved`` is the fraction of prunable weights
   that are zero, ``params_after`` the parameters minus the weights zeroed, MACs are the
   dense MACs (dense kernels do not skip zeros) and ``sparsity`` holds per-layer rows and
   the gzip size before and after.
6. ``accuracy``: the task metric of the original and of the model written (the last
   evaluated one) side by side (:mod:`onnxprune.calibration.accuracy`); with
   ``eval_data`` a drop beyond ``max_drop`` (default 0.05) is exit 11 unless
   ``accept_drop``.
"""

from __future__ import annotations

__all__ = ["compress_extended"]

import dataclasses
import logging
import os
import pathlib
import tempfile
import time

import onnx
import onnx_ir as ir

from onnxprune.analysis import analyze
from onnxprune.calibrated import open_calibration
from onnxprune.calibration.accuracy import accuracy_section, check_accuracy
from onnxprune.compress import CompressResult, _file_size, compress, default_output
from onnxprune.data import DataSource, ImageOptions, open_data, synthetic_source
from onnxprune.errors import UnsupportedModelError, VerificationError
from onnxprune.graph import load_model
from onnxprune.graph.io import LoadedModel, StagedOutput, check_destination
from onnxprune.graph.validate import check_finite, check_runtime_support
from onnxprune.options import CompressOptions
from onnxprune.planning import CostModel
from onnxprune.reporting.report import report_path, write_report
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


@dataclasses.dataclass
class _Inputs:
    loaded: LoadedModel
    original: onnx.ModelProto
    data: DataSource | None          # calibration / training data (real), or None
    evaluation: DataSource           # what evaluation runs on
    notes: list[str]


def _open(model, options: CompressOptions) -> _Inputs:
    loaded = load_model(model)
    check_finite(loaded.model)
    notes = list(loaded.notes) + check_runtime_support(loaded.model, loaded.opset)
    original = ir.serde.serialize_model(loaded.model)
    if loaded.external_data:
        onnx.load_external_data_for_model(original, str(loaded.path.parent))
    data = open_calibration(options, loaded.model).data
    if options.eval_data:
        image = ImageOptions(tuple(options.image_size) if options.image_size else None,
                             tuple(options.mean), tuple(options.std), options.layout,
                             options.channel_order)
        evaluation = open_data(options.eval_data, loaded.model, image)
    elif data is not None:
        evaluation = data
        notes.append("evaluated on the calibration data (--data); pass --eval-data for "
                     "held-out numbers")
    else:
        evaluation = synthetic_source(loaded.model, SYNTHETIC_EVAL_SAMPLES, seed=options.seed)
        notes.append(f"no --data/--eval-data: evaluated on {SYNTHETIC_EVAL_SAMPLES} "
                     "synthetic inputs (agreement with the original only)")
    return _Inputs(loaded, original, data, evaluation, notes)


def compress_extended(model: str | os.PathLike[str], output: str | os.PathLike[str] | None,
                      options: CompressOptions, *, write: bool = True,
                      report: bool = True, progress=None,
                      notes: list[str] | None = None) -> CompressResult:
    """Rules 1-5; same contract as :func:`onnxprune.compress.compress`."""
    started = time.perf_counter()
    destination = pathlib.Path(output or default_output(model))
    if write:
        check_destination(destination, model)
    inputs = _open(model, options)
    with tempfile.TemporaryDirectory(prefix="onnxprune-") as folder:
        scratch = pathlib.Path(folder)
        pruned_path = scratch / "pruned.onnx"
        if options.mode == "structured":
            inner = options.model_copy(update={"quantize": "none", "bench": False,
                                               "mobile": False, "html_report": None,
                                               "accept_drop": True})  # checked below
            if write and inner.finetunes() and inner.work_dir is None:  # next to the output
                inner = inner.model_copy(update={"work_dir": str(destination) + ".steps"})
            result = compress(model, output=pruned_path, options=inner, report=False,
                              progress=progress)
        else:
            result = _sparse(model, inputs, options, pruned_path)
        final, models = pruned_path, {"original": inputs.loaded.path, "pruned": pruned_path}
        if options.quantize == "int8":
            from onnxprune.quantize import quantize_int8

            final = scratch / "quantized.onnx"
            info = quantize_int8(pruned_path, final, inputs.data,
                                 batch_size=options.batch_size)
            verify(inputs.original, str(final), None, seed=options.seed)
            result.quantization = info
            models["pruned+int8"] = final
        result.evaluation = compare_models(
            models, inputs.evaluation, batch_size=options.batch_size, bench=options.bench,
            runs=options.bench_runs, seed=options.seed)
        result.accuracy = _accuracy(result.evaluation, options)
        check_accuracy(result.accuracy)  # exit 11 before anything is written
        out_path, size_after = _commit(final, destination, model, write)
    result.input, result.output = str(model), str(out_path) if out_path else None
    result.options = options.model_dump(mode="json")
    result.size_before, result.size_after = inputs.loaded.file_size, size_after
    result.notes = (notes or []) + inputs.notes + [n for n in result.notes
                                                   if n not in inputs.notes]
    result.notes += (result.quantization or {}).pop("notes", [])
    result.seconds = round(time.perf_counter() - started, 3)
    if write and report:
        document = result.to_dict()
        write_report(document, report_path(out_path))
        if options.html_report:
            from onnxprune.reporting.html import write_html

            write_html(document, options.html_report)
    return result


def _accuracy(evaluation: dict, options: CompressOptions) -> dict:
    """Rule 6: the task metric of the original and of the model written, side by side;
    checked against the budget when ``eval_data`` is held-out data."""
    rows = evaluation["models"]
    original, final = rows[0], rows[-1]
    metrics = {k: v for k, v in final.items() if k in ("accuracy", "agreement", "cosine")}
    if "accuracy" in original and "accuracy" in final:
        metrics["reference_accuracy"] = original["accuracy"]
    return accuracy_section(metrics, data=evaluation["data"], samples=evaluation["samples"],
                            held_out=bool(options.eval_data), max_drop=options.max_drop,
                            accepted=options.accept_drop)


def _commit(final: pathlib.Path, destination: pathlib.Path, source, write: bool,
            ) -> tuple[pathlib.Path | None, int]:
    if not write:
        return None, final.stat().st_size
    with StagedOutput(destination, source=source) as staged:
        size = _file_size(staged.write(ir.load(final)), staged.data_name)
        return staged.commit(), size


def _sparse(model, inputs: _Inputs, options: CompressOptions, path: pathlib.Path,
            ) -> CompressResult:
    """Rules 1 and 5 for modes unstructured and n:m: the pruned model at ``path``."""
    n, m = parse_nm(options.nm)
    settings = SparseSettings(options.mode, options.target, options.scope, n, m,
                              options.steps, tuple(options.ignore))
    finetune = None
    if options.tunes():
        finetune = FinetuneSettings(options.epochs() or 1.0, options.lr, options.batch_size,
                                    options.seed, options.loss, options.optimizer,
                                    options.temperature, options.train_steps)
    elif options.steps > 1:
        inputs.notes.append("steps > 1 without fine-tuning: the result equals one-shot "
                            "pruning to the final sparsity")
    evaluate = _step_evaluator(inputs, options) if inputs.data is not None else None
    done = sparsify(inputs.original, settings, data=inputs.data, finetune=finetune,
                    evaluate=evaluate)
    if not done.weights:
        raise UnsupportedModelError(f"{model}: no Conv/Gemm/MatMul with a constant float "
                                    "weight to sparsify")
    onnx.save(done.model, str(path))
    check = verify(inputs.original, str(path), None, seed=options.seed)
    stored = onnx.load(str(path))
    if reapply_masks(stored, done.masks):
        raise VerificationError("a masked weight is not exactly zero in the written model; "
                                "this is an onnxprune bug, please report it")
    return _sparse_result(inputs, options, done, check.to_dict(), path)


def _step_evaluator(inputs: _Inputs, options: CompressOptions):
    reference, labels = model_outputs(inputs.original, inputs.evaluation, options.batch_size)

    def evaluate(proto: onnx.ModelProto) -> dict:
        heads = heads_for(inputs.original, proto)
        output, _ = model_outputs(proto, inputs.evaluation, options.batch_size, heads)
        return evaluation_row(output, reference, labels, heads)

    return evaluate


def _sparse_result(inputs: _Inputs, options: CompressOptions, done, check: dict,
                   path: pathlib.Path) -> CompressResult:
    cost = CostModel(analyze(inputs.loaded.model)).original
    before = layer_rows(inputs.original, done.weights)
    after = layer_rows(done.model, done.weights, done.skipped)
    zeroed = sum(a["zeros"] - b["zeros"] for a, b in zip(after, before))
    total = sum(r["weights"] for r in after)
    n, m = parse_nm(options.nm)
    original_file = inputs.loaded.path
    gz_before = gzip_size(original_file) if original_file else None
    gz_after = gzip_size(path)
    sparsity = {
        "mode": options.mode,
        "target": options.target if options.mode == "unstructured" else (m - n) / m,
        "target_meaning": "fraction of prunable weights (Conv/Gemm/MatMul constant weights) "
                          "that are zero",
        "scope": options.scope if options.mode == "unstructured" else "per layer (N:M)",
        "nm": options.nm if options.mode == "n:m" else None,
        "steps": options.steps, "finetune_epochs": options.finetune_epochs,
        "prunable_weights": total, "zeros": sum(r["zeros"] for r in after),
        "achieved": round(done.achieved, 6), "layers": after, "skipped": done.skipped,
        "gzip_before": gz_before, "gzip_after": gz_after,
        "gzip_ratio": round(gz_before / gz_after, 4) if gz_before and gz_after else None,
    }
    return CompressResult(
        input="", output=None, options={}, achieved=round(done.achieved, 6),
        params_before=cost.params, params_after=cost.params - zeroed,
        macs_before=cost.macs, macs_after=cost.macs, size_before=0, size_after=None,
        layers=[], groups=[], verification=check, seconds=0.0, notes=list(done.notes),
        sparsity=sparsity, steps=done.steps)
