"""The compress flows, registered in one table, and the one entry point that runs them.

Rules:

1. :data:`FLOWS` lists every flow once, in the order :func:`select_flow` tries them;
   the first whose ``applies(options)`` holds runs:

   ======================  ======================================  =====================
   flow                    applies when                            module
   ======================  ======================================  =====================
   ``sparse``              ``mode`` is ``unstructured`` or ``n:m`` :mod:`.sparse`
   ``progressive``         ``steps > 1`` or fine-tuning            :mod:`.progressive`
   ``one-shot``            always (the default)                    :mod:`.oneshot`
   ======================  ======================================  =====================

   ``steps`` not given is resolved first (:meth:`CompressOptions.resolve_steps`: 4 with
   ``--data`` in structured mode when the training build is installed, else 1).
2. :data:`POST_STEPS` run after any flow, in order, where they apply: ``quantize-int8``
   (``--quantize int8``), then ``evaluate`` (sparse modes and int8: original, pruned
   and quantized side by side; the ``accuracy`` section of the last).
3. Every flow and post-step returns a :class:`Candidate`; :func:`finish` then writes,
   checks, commits and reports it the same way for all (``--mobile``, ``--bench``,
   ``--report``, layer MACs in every flow).
4. The CLI asks the same table what to draw and print: :attr:`Flow.progress` (step
   bars) and :func:`summary_parts` (which summaries, in order).
5. ``--metric latency`` prunes in structured mode (one-shot, or progressive on one
   latency table of the original: :mod:`onnxprune.pipeline.steps` rule 9); with another
   mode it is a usage error (exit 2).
"""

from __future__ import annotations

__all__ = ["FLOWS", "POST_STEPS", "Flow", "PostStep", "run_compress", "select_flow",
           "summary_parts"]

import contextlib
import dataclasses
import os
from collections.abc import Callable

from onnxprune.data import DataSource
from onnxprune.errors import OnnxPruneError, UsageError
from onnxprune.options import CompressOptions, build_options
from onnxprune.pipeline.context import Candidate, Progress, RunContext, open_run
from onnxprune.pipeline.finish import finish
from onnxprune.pipeline.inputs import Inputs, image_options, open_inputs
from onnxprune.pipeline.oneshot import run_one_shot
from onnxprune.pipeline.progressive import check_progressive, run_progressive
from onnxprune.pipeline.result import CompressResult
from onnxprune.pipeline.run_shapes import in_run_shapes
from onnxprune.pipeline.sparse import evaluate_step, quantize_step, run_sparse
from onnxprune.training.ort import training_available


def _no_check(options: CompressOptions) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class Flow:
    """One compress flow (rule 1)."""

    name: str
    applies: Callable[[CompressOptions], bool]
    run: Callable[[Inputs, CompressOptions, RunContext], Candidate]
    check: Callable[[CompressOptions], None] = _no_check  # before any work
    progress: bool = False  # the CLI draws step bars
    summary: tuple[str, ...] = ("structured",)  # the CLI's summaries (rule 4)


@dataclasses.dataclass(frozen=True)
class PostStep:
    """A step after any flow (rule 2)."""

    name: str
    applies: Callable[[CompressOptions], bool]
    run: Callable[[Inputs, Candidate, CompressOptions, RunContext], Candidate]
    summary: tuple[str, ...] = ()


FLOWS: tuple[Flow, ...] = (
    Flow("sparse", lambda o: o.mode != "structured", run_sparse,
         summary=("evaluation", "accuracy")),
    Flow("progressive", lambda o: o.finetunes(), run_progressive, check=check_progressive,
         progress=True),
    Flow("one-shot", lambda o: True, run_one_shot),
)

POST_STEPS: tuple[PostStep, ...] = (
    PostStep("quantize-int8", lambda o: o.quantize == "int8", quantize_step,
             summary=("evaluation",)),
    PostStep("evaluate", lambda o: o.mode != "structured" or o.quantize != "none",
             evaluate_step),
)


def _resolved(options: CompressOptions) -> CompressOptions:
    return options.resolve_steps(training_available())[0] if options.steps is None else options


def select_flow(options: CompressOptions) -> Flow:
    """Rule 1: the flow ``options`` run (``steps`` resolved here when not given)."""
    resolved = _resolved(options)
    return next(flow for flow in FLOWS if flow.applies(resolved))


def post_steps(options: CompressOptions) -> tuple[PostStep, ...]:
    resolved = _resolved(options)
    return tuple(step for step in POST_STEPS if step.applies(resolved))


def summary_parts(options: CompressOptions) -> tuple[str, ...]:
    """Rule 4: the summaries the CLI prints for a run of ``options``, in order, once each."""
    parts = [*select_flow(options).summary]
    for step in post_steps(options):
        parts += [part for part in step.summary if part not in parts]
    return tuple(parts)


def _options(target: float | None, options: CompressOptions | dict | None,
             kwargs: dict) -> CompressOptions:
    if options is None:
        return build_options({"target": target, **kwargs})
    if isinstance(options, dict):
        return build_options(options)
    return options


def _run_shape_options(model, target=None, *, options=None, calibration_data=None,
                       **kwargs) -> tuple:
    """What :func:`in_run_shapes` needs from a :func:`run_compress` call."""
    fields = {k: v for k, v in kwargs.items() if k in CompressOptions.model_fields}
    resolved = _options(target, options, fields)
    return model, resolved.input_shape, calibration_data, resolved.data, image_options(resolved)


@in_run_shapes(_run_shape_options)
def run_compress(model: str | os.PathLike[str], target: float | None = None, *,
                 output: str | os.PathLike[str] | None = None,
                 options: CompressOptions | dict | None = None, write: bool = True,
                 report: bool = True, min_keep_widths: dict[str, int] | None = None,
                 calibration_data: DataSource | None = None, progress: Progress | None = None,
                 evaluation_data: DataSource | None = None, **kwargs) -> CompressResult:
    """Rules 1-5: the single entry point of every compress flow (see
    :func:`onnxprune.compress.compress` for the arguments)."""
    options = _options(target, options, kwargs)
    options, steps_note = options.resolve_steps(training_available())
    if options.metric == "latency" and options.mode != "structured":
        raise UsageError("--metric latency prunes channels (structured mode): drop --mode")
    flow = select_flow(options)
    try:
        flow.check(options)
        with contextlib.ExitStack() as stack:
            run = open_run(stack, model, output, write=write, report=report,
                           progress=progress, notes=[steps_note] if steps_note else [],
                           auto_steps=steps_note is not None)
            run.options, run.reference_sizes = options, min_keep_widths
            inputs = open_inputs(model, options, calibration_data, evaluation_data)
            candidate = flow.run(inputs, options, run)
            for step in post_steps(run.options):
                candidate = step.run(inputs, candidate, run.options, run)
            result = finish(inputs, candidate, run.options, run)
            for done in run.on_commit:
                done()
            return result
    except OnnxPruneError as exc:
        if flow.progress and steps_note:
            exc.args = (f"{exc} (progressive pruning with fine-tuning is the default "
                        "with --data; pass --steps 1 for one-shot pruning)", *exc.args[1:])
        raise
