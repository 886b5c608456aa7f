"""One-shot structural compression: load -> analyze -> score -> plan -> rewrite -> verify -> save.

This is the Python API behind ``onnxprune compress``. It never writes over its
input, writes the output atomically and only after every check passed.
"""

from __future__ import annotations

__all__ = ["CompressOptions", "CompressResult", "analyze_file", "compress", "default_output"]

import contextlib
import dataclasses
import logging
import os
import pathlib
import tempfile
import time
from collections.abc import Callable

import onnx
import onnx_ir as ir

from onnxprune._version import __version__
from onnxprune.analysis import Analysis, analyze
from onnxprune.calibrated import open_calibration
from onnxprune.calibration.accuracy import check_accuracy
from onnxprune.data import DataSource
from onnxprune.errors import OnnxPruneError, UnsupportedModelError, UsageError
from onnxprune.graph import input_shapes, load_model
from onnxprune.graph.io import StagedOutput, check_destination, weight_bytes
from onnxprune.graph.shapes import dims
from onnxprune.graph.validate import check_finite, check_runtime_support
from onnxprune.options import CompressOptions, build_options
from onnxprune.planning import CostModel
from onnxprune.quantize.tolerance import equivalence_rtol
from onnxprune.reporting import group_rows, layer_rows
from onnxprune.reporting.report import report_path, write_report
from onnxprune.rewrite import apply_plan, channel_masks
from onnxprune.rewrite.verify import Verification, verify, verify_declared
from onnxprune.run_shapes import in_run_shapes, resolve_run_shapes
from onnxprune.training.ort import training_available

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class CompressResult:
    input: str
    output: str | None
    options: dict
    achieved: float
    params_before: int
    params_after: int
    macs_before: float
    macs_after: float
    size_before: int
    size_after: int | None
    layers: list[dict]
    groups: list[dict]
    verification: dict | None
    seconds: float
    notes: list[str]
    version: str = __version__
    calibration: dict | None = None
    # -- sparsity modes and INT8 quantization (onnxprune.sparsity.flow)
    sparsity: dict | None = None
    quantization: dict | None = None
    evaluation: dict | None = None
    steps: list[dict] | None = None
    budget: dict | None = None  # --max-drop (onnxprune.training.progressive)
    accuracy: dict | None = None  # task metric of original and result (calibration.accuracy)
    flow: dict | None = None  # progressive or one-shot, and why (training.outcome)
    latency: dict | None = None  # --metric latency (onnxprune.benchmark.latency_check)
    # -- end
    # the run-time input shapes every run used, and why (onnxprune.graph.input_shapes)
    input_shapes: dict | None = dataclasses.field(default_factory=lambda: _run_shapes())

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def default_output(model: str | os.PathLike[str]) -> pathlib.Path:
    path = pathlib.Path(model)
    return path.with_name(path.stem + ".pruned.onnx")


def _run_shapes() -> dict | None:
    resolved = input_shapes.current()
    return resolved.to_dict() if resolved is not None else None


def analyze_file(model: str | os.PathLike[str], ignore: tuple[str, ...] = (),
                 prune_hidden: bool = False, input_shape=None) -> dict:
    """Analyze a model file; return groups and totals as plain data. MACs are per
    sample at the run-time input shapes (``input_shape``, else a default the model
    accepts), listed under ``input_shapes``."""
    if input_shapes.current() is None:
        try:
            resolved = resolve_run_shapes(model, input_shape)
        except UnsupportedModelError as exc:  # analyze still works: untried defaults
            logger.warning("%s", exc)
            resolved = resolve_run_shapes(model, input_shape, check=False)
        if resolved is None:  # unreadable: load_model below says why
            return _analyze_file(model, ignore, prune_hidden)
        with input_shapes.using(resolved):
            return _analyze_file(model, ignore, prune_hidden)
    return _analyze_file(model, ignore, prune_hidden)


def _analyze_file(model: str | os.PathLike[str], ignore: tuple[str, ...],
                  prune_hidden: bool) -> dict:
    loaded = load_model(model)
    analysis = analyze(loaded.model, prune_hidden=prune_hidden)
    analysis.ignore(ignore)
    cost = CostModel(analysis)
    from onnxprune.importance import score_units
    from onnxprune.planning.capacity import capacity

    limits = capacity(analysis, scores=score_units(analysis, "l1"), cost=cost)
    return {
        "model": str(model),
        "opset": loaded.opset,
        "params": cost.original.params,
        "macs": cost.original.macs,
        "groups": group_rows(analysis, cost),
        "capacity": limits.to_dict(),
        "notes": loaded.notes,
        "version": __version__,
        "canonicalization": loaded.facts.get("canonical"),  # onnxprune.graph.canonicalize
        "input_shapes": _run_shapes(),
    }


LARGE_MODEL_BYTES = 2**30


def is_large(loaded) -> bool:
    """Models whose weights exceed ``LARGE_MODEL_BYTES`` run in bounded memory: no
    in-memory copy of the original, no original/masked runtime sessions. Decided
    once, on the model as loaded (before pruning shrinks it)."""
    if "large" not in loaded.facts:
        loaded.facts["large"] = weight_bytes(loaded.model) > LARGE_MODEL_BYTES
    return loaded.facts["large"]


def _declared_outputs(model: ir.Model) -> list[tuple[str, str, tuple[int | None, ...] | None]]:
    rows = []
    for value in model.graph.outputs:
        kind = f"tensor({_ORT_TYPE_NAMES.get(value.dtype, str(value.dtype).lower())})"
        rows.append((value.name, kind, dims(value)))
    return rows


_ORT_TYPE_NAMES = {ir.DataType.FLOAT: "float", ir.DataType.DOUBLE: "double",
                   ir.DataType.FLOAT16: "float16", ir.DataType.INT64: "int64",
                   ir.DataType.INT32: "int32", ir.DataType.BOOL: "bool",
                   ir.DataType.UINT8: "uint8", ir.DataType.INT8: "int8"}


def _check_staged(loaded, original, staged_path, masks, options,
                  rtol: float = 1e-4) -> Verification:
    if is_large(loaded):
        return verify_declared(_declared_outputs(loaded.model), str(staged_path),
                               seed=options.seed)
    return verify(original, str(staged_path), masks, seed=options.seed, rtol=rtol,
                  original_path=str(loaded.path) if loaded.path else None)


def _prepare(model: str | os.PathLike[str], options: CompressOptions) -> tuple:
    loaded = load_model(model)
    check_finite(loaded.model)
    loaded.notes.extend(check_runtime_support(loaded.model, loaded.opset))
    original = ir.serde.serialize_model(loaded.model)
    if is_large(loaded):
        loaded.notes.append(
            f"large model ({weight_bytes(loaded.model) / 2**30:.1f} GiB of weights): the "
            "original is not run; the result is checked against its declared outputs")
    elif loaded.external_data:
        onnx.load_external_data_for_model(original, str(loaded.path.parent))
    analysis = analyze(loaded.model, prune_hidden=options.prune_hidden)
    analysis.ignore(options.ignore)
    if not analysis.prunable_groups:
        reasons = sorted({r for g in analysis.groups for r in g.reasons})[:3]
        raise UnsupportedModelError(
            f"{model}: no prunable channel group" + (f" ({'; '.join(reasons)})" if reasons else ""))
    return loaded, original, analysis


def _options(target: float | None, options: CompressOptions | dict | None,
             kwargs: dict) -> CompressOptions:
    if options is None:
        return build_options({"target": target, **kwargs})
    if isinstance(options, dict):
        return build_options(options)
    return options


def _run_shape_options(model, target=None, *, options=None, calibration_data=None,
                       **kwargs) -> tuple:
    """What :func:`in_run_shapes` needs from a :func:`compress` call."""
    fields = {k: v for k, v in kwargs.items() if k in CompressOptions.model_fields}
    resolved = _options(target, options, fields)
    from onnxprune.data import ImageOptions

    image = ImageOptions(tuple(resolved.image_size) if resolved.image_size else None,
                         tuple(resolved.mean), tuple(resolved.std), resolved.layout,
                         resolved.channel_order)
    return model, resolved.input_shape, calibration_data, resolved.data, image


@in_run_shapes(_run_shape_options)
def compress(model: str | os.PathLike[str], target: float | None = None, *,
             output: str | os.PathLike[str] | None = None,
             options: CompressOptions | dict | None = None, write: bool = True,
             report: bool = True, min_keep_widths: dict[str, int] | None = None,
             calibration_data: DataSource | None = None, progress: Callable | None = None,
             evaluation_data: DataSource | None = None, **kwargs) -> CompressResult:
    """Prune ``model`` to remove ``target`` of the metric; write ``output``.

    Options come as a :class:`CompressOptions`, as a dict with the keys of a recipe
    file, or as keyword arguments of the same names (``metric``, ``criterion``,
    ``scope``, ``round_to``, ...). With ``write=False`` nothing is written (the
    result still describes the verified model). With ``report=True`` the result is
    also written as ``<output>.report.json``. ``mode="unstructured"`` / ``"n:m"`` and
    ``quantize="int8"`` run :func:`onnxprune.sparsity.flow.compress_extended`.
    ``min_keep_widths`` maps source layer names to the widths (in units) a fractional
    ``min_keep`` refers to, instead of the model's current widths (progressive pruning
    passes the original model's, so no layer ends below ``min_keep`` of it).
    ``calibration_data`` (an opened :class:`DataSource`) replaces ``options.data`` for
    the data-driven steps. ``progress`` receives dicts (``phase``: ``step``, ``train``,
    ``evaluate``) from progressive runs. ``evaluation_data`` (held-out, opened) replaces
    ``options.eval_data``: the task metric of original and result
    (``result.accuracy``; a drop beyond the budget is exit 11, see
    :mod:`onnxprune.calibration.accuracy`) and the ``--recover auto`` choice.
    """
    started = time.perf_counter()
    options = _options(target, options, kwargs)
    options, steps_note = options.resolve_steps(training_available())
    extra_notes = [steps_note] if steps_note else []
    if options.metric == "latency" and (options.finetunes() or options.mode != "structured"):
        raise UsageError("--metric latency prunes one-shot in structured mode: pass --steps 1 "
                         "(and no --finetune-epochs/--mode)")
    # -- sparsity modes / INT8 quantization (onnxprune.sparsity.flow); progressive
    #    pruning with fine-tuning (onnxprune.training.progressive)
    if options.mode != "structured" or options.quantize != "none":
        from onnxprune.sparsity.flow import compress_extended

        return compress_extended(model, output, options, write=write, report=report,
                                 progress=progress, notes=extra_notes)
    if options.finetunes():
        from onnxprune.training.progressive import compress_progressive

        try:
            return compress_progressive(model, options, output=output, write=write,
                                        report=report, progress=progress, notes=extra_notes,
                                        auto_steps=steps_note is not None)
        except OnnxPruneError as exc:
            if steps_note:
                exc.args = (f"{exc} (progressive pruning with fine-tuning is the default "
                            "with --data; pass --steps 1 for one-shot pruning)", *exc.args[1:])
            raise
    # -- end
    destination = pathlib.Path(output or default_output(model))
    if write:
        check_destination(destination, model)
    loaded, original, analysis = _prepare(model, options)
    cost = CostModel(analysis)
    calib = open_calibration(options, loaded.model, calibration_data,  # onnxprune.calibrated
                             evaluation_data)
    calib.reference_sizes = tuple(sorted((min_keep_widths or {}).items()))
    calib.large = is_large(loaded)
    scores = calib.scores(analysis)
    plan = calib.plan(analysis, scores, original)
    groups = group_rows(analysis, cost)
    for row in groups:
        row["kept"] = plan.kept.get(row["index"], row["channels"])
    after = cost.evaluate(plan.removed_units)
    layers = layer_rows(analysis, plan.removed_units)
    check_masks = options.verify_equivalence and not is_large(loaded)
    masks = channel_masks(analysis, plan.removed_units) if check_masks else None
    apply_plan(analysis, plan.removed_units)
    with contextlib.ExitStack() as stack:
        staged = staged_output(stack, destination, model, write)
        staged_path = staged.write(analysis.model, loaded.external_data or None)
        check = _check_staged(loaded, original, staged_path, masks, options,
                              rtol=equivalence_rtol(original))  # QDQ: onnxprune.quantize
        if calib.recovery_method() != "none":  # refit after the oracle passed, check again
            def write_candidate(candidate: ir.Model) -> pathlib.Path:
                path = staged.write(candidate, loaded.external_data or None)
                _check_staged(loaded, original, path, None, options)
                return path

            staged_path = calib.recover_and_choose(analysis, plan.removed_units, original,
                                                   write_candidate)
        accuracy = calib.measure_accuracy(original, staged_path)  # onnxprune.calibration
        check_accuracy(accuracy)  # exit 11 before anything is written
        size_after = _file_size(staged_path, staged.data_name)
        if calib.latency is not None:  # --metric latency: predicted against measured
            from onnxprune.benchmark.latency_check import check_latency

            calib.latency = check_latency(calib.latency, model, staged_path,
                                          runs=options.bench_runs)
        out_path = staged.commit() if write else None
    result = CompressResult(
        input=str(model), output=str(out_path) if out_path else None,
        options=options.model_dump(mode="json"), achieved=round(plan.achieved, 6),
        params_before=cost.original.params, params_after=after.params,
        macs_before=cost.original.macs, macs_after=after.macs,
        size_before=loaded.file_size, size_after=size_after,
        layers=layers, groups=groups, verification=check.to_dict(),
        seconds=round(time.perf_counter() - started, 3),
        notes=extra_notes + loaded.notes + calib.notes, calibration=calib.report(),
        accuracy=accuracy,
        latency=calib.latency,
    )
    if write and report:
        write_reports(result, options)
    return result


def write_reports(result: CompressResult, options: CompressOptions) -> None:
    """``<output>.report.json`` and, when asked, the HTML page (every compress flow)."""
    document = _report_document(result, options)
    write_report(document, report_path(result.output))
    if options.html_report:
        from onnxprune.reporting.html import write_html

        write_html(document, options.html_report)


def _report_document(result: CompressResult, options: CompressOptions) -> dict:
    """The report: the result plus per-layer MACs, benchmark and mobile sections."""
    from onnxprune.reporting.macs import layer_macs

    document = result.to_dict()
    document["layer_macs"] = layer_macs(result.input, result.output)
    if options.bench:
        from onnxprune.benchmark import compare

        logger.info("benchmarking original against pruned (%d runs)", options.bench_runs)
        document["benchmark"] = compare(result.input, result.output, providers=["cpu"],
                                        threads=[1], runs=options.bench_runs, warmup=10)
    if options.mobile:
        from onnxprune.mobile import export_mobile

        document["mobile"] = export_mobile(result.output, bench=options.bench)
    return document


def staged_output(stack: contextlib.ExitStack, destination: pathlib.Path,
                  source: str | os.PathLike[str], write: bool) -> StagedOutput:
    """The :class:`StagedOutput` a flow writes its result into; with ``write=False`` it
    stages inside a scratch folder (removed with ``stack``) so nothing lands next to
    ``destination``."""
    if not write:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="onnxprune-"))
        destination = pathlib.Path(scratch) / destination.name
    return stack.enter_context(StagedOutput(destination, source=source))


def _file_size(path: pathlib.Path, data_name: str | None) -> int:
    size = path.stat().st_size
    if data_name:
        size += (path.parent / data_name).stat().st_size
    return size


def analysis_of(model: str | os.PathLike[str]) -> Analysis:
    """Load and analyze a model file (for callers that want the raw analysis)."""
    return analyze(load_model(model).model)
