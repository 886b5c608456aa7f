"""``onnxprune compress``: prune a model to a target, from flags and/or a recipe file."""

from __future__ import annotations

__all__ = ["CLI_ONLY", "RENAMED", "command", "option_key", "option_names"]

from typing import Any

import click
from click.core import ParameterSource
from rich.table import Table

from onnxprune.choices import (
    ALLOCATIONS,
    CRITERIA,
    DISTILL_FEATURES,
    LOSSES,
    METRICS,
    MODES,
    OPTIMIZERS,
    QUANTIZE,
    RECOVER,
    SCOPES,
)
from onnxprune.cli.common import emit_json, guard, quiet_status, stdout
from onnxprune.cli.data_options import data_options, input_shape_option, parse_floats
from onnxprune.cli.executor_options import executor_options
from onnxprune.cli.progress import step_progress
from onnxprune.errors import UsageError

# Parameters of the command that are not CompressOptions fields: MODEL and -o/--output
# are the recipe's extra keys "model"/"output" (onnxprune.options.RECIPE_EXTRA_KEYS),
# --config is the recipe itself, --json the output format. Every other parameter is a
# field (tests/cli/test_options_equal.py).
CLI_ONLY = ("model", "config", "output", "as_json")
# CLI parameter name -> option key (only where they differ)
RENAMED = {"no_equivalence_check": "verify_equivalence"}
_INVERTED = ("no_equivalence_check",)  # flags that set their option to False


def option_names(cmd: click.Command) -> list[str]:
    """The parameters of ``cmd`` that set compress options (all but :data:`CLI_ONLY`)."""
    return [p.name for p in cmd.params if p.name and p.name not in CLI_ONLY]


def option_key(name: str, value: Any) -> tuple[str, Any]:
    """The option key and value that CLI parameter ``name`` with ``value`` sets."""
    if name in _INVERTED:
        value = not value
    return RENAMED.get(name, name), value


def _explicit(ctx: click.Context) -> dict[str, Any]:
    """Options the user typed (flags given on the command line override the recipe)."""
    given = {}
    for name in option_names(ctx.command):
        if ctx.get_parameter_source(name) != ParameterSource.COMMANDLINE:
            continue
        key, value = option_key(name, ctx.params[name])
        given[key] = value
    return given


class _RoundTo(click.ParamType):
    """``--round-to``: a positive integer or ``auto``."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int) or value == "auto":
            return value
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r} is neither an integer nor 'auto'", param, ctx)


@click.command("compress")
@click.argument("model", type=click.Path(path_type=str), required=False)
@click.option("--config", "config", type=click.Path(path_type=str),
              help="Recipe file (.yaml/.yml/.json) with any of these options.")
@click.option("--target", "-t", type=float,
              help="Fraction of the metric to remove, e.g. 0.5 (--mode unstructured: fraction "
                   "of Conv/Gemm/MatMul weights to zero).")
@click.option("-o", "--output", type=click.Path(path_type=str),
              help="Output path (default: <model>.pruned.onnx).")
@click.option("--metric", type=click.Choice(METRICS), default="params",
              show_default=True,
              help="latency: remove --target of the latency predicted from per-layer "
                   "timings on --provider with --threads (cached; checked after pruning).")
@click.option("--criterion", type=click.Choice(CRITERIA), default="auto", show_default=True,
              help="auto: taylor with --data, l1 without.")
@click.option("--scope", type=click.Choice(SCOPES), default="global",
              show_default=True)
@click.option("--round-to", type=_RoundTo(), default=None,
              help="Keep every pruned channel count a multiple of N units (default: multiples "
                   "of 8 channels, auto with --metric latency; --round-to 1 for any count; "
                   "auto: per group, the channel block its layers' kernels step at on "
                   "--provider, measured).")
@click.option("--min-keep", type=float, default=0.1, show_default=True,
              help="Per-group floor: fraction (<1) or count (>=1) of channels kept.")
@click.option("--ignore", multiple=True, help="Glob of node/initializer names to keep whole.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-equivalence-check", is_flag=True,
              help="Skip the masked-equivalence check (saves one model run).")
@click.option("--prune-hidden", is_flag=True,
              help="Also prune the hidden (residual-stream) width of transformers; "
                   "normalisations then use the kept channels only.")
@click.option("--bench", is_flag=True,
              help="Benchmark original vs. pruned (CPU, 1 thread, interleaved) into the report.")
@click.option("--bench-runs", type=int, default=50, show_default=True)
@click.option("--report", "html_report", type=click.Path(path_type=str),
              help="Also write a self-contained HTML report with plots to this path.")
@click.option("--mobile", is_flag=True,
              help="Also export the result to ORT format (.ort) with a mobile usability check.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
# -- calibration data, allocation, recovery (onnxprune.pipeline.calibrated)
@data_options
@click.option("--allocation", type=click.Choice(ALLOCATIONS),
              default="threshold", show_default=True,
              help="sensitivity: per-group ratios from measured damage (needs --data).")
@click.option("--ratios", "sensitivity_ratios", callback=parse_floats,
              default="0.1,0.3,0.5,0.7", show_default=True,
              help="Ratios measured for --allocation sensitivity.")
@click.option("--recover", type=click.Choice(RECOVER), default="auto",
              show_default=True,
              help="Training-free recovery; auto: bias, or the better of bias/lsq on "
                   "--eval-data; data-free: bias on synthetic inputs.")
# -- end of calibration options
# -- sparsity modes, progressive pruning, fine-tuning, INT8 quantization
@click.option("--mode", callback=lambda ctx, param, value: _mode(value),
              default="structured", show_default=True,
              metavar=f"[{'|'.join(MODES)}|N:M]",
              help="structured: remove channels; unstructured: zero single weights "
                   "(--scope global|uniform=per layer); n:m: N:M pattern (--nm); "
                   "N:M (e.g. 2:4) is short for --mode n:m --nm N:M.")
@click.option("--nm", default="2:4", show_default=True,
              help="--mode n:m: at most N non-zeros in every M consecutive input weights.")
@click.option("--steps", type=int,
              help="Prune in N steps on the cubic schedule, fine-tuning after each "
                   "[default: 4 with --data (structured mode), else 1].")
@click.option("--finetune-epochs", "--epochs", "finetune_epochs", type=float,
              help="Epochs of fine-tuning on --data after each step [default: 3 with "
                   "--steps > 1, else 0].")
@click.option("--train-steps", type=int,
              help="Fine-tune for N optimizer steps after each step (instead of epochs).")
@click.option("--max-drop", type=float,
              help="Stop pruning when the held-out metric (accuracy with labels, else "
                   "agreement/similarity with the original) drops more than this "
                   "(0.01 = 1 point); keep the last step within it.")
@click.option("--holdout", type=float, default=0.1, show_default=True,
              help="Fraction of --data held out for the per-step evaluation when no "
                   "--eval-data is given.")
@click.option("--work-dir", type=click.Path(path_type=str),
              help="Where each step's model and record are saved [default: "
                   "<output>.steps].")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted --steps run from its work dir.")
@click.option("--lr", type=float, default=1e-3, show_default=True,
              help="Fine-tuning learning rate (cosine decay).")
@click.option("--loss", type=click.Choice(LOSSES), default="distill",
              show_default=True,
              help="distill: learn the original model's outputs; ce/mse: the data's labels.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="adamw",
              show_default=True)
@click.option("--temperature", type=float, default=4.0, show_default=True,
              help="Distillation temperature for classifier outputs.")
@click.option("--quantize", type=click.Choice(QUANTIZE), default="none",
              show_default=True,
              help="int8: quantize after pruning (static QDQ with --data, else dynamic).")
@click.option("--eval-data", type=click.Path(path_type=str),
              help="Held-out data (.npz, labels optional) for per-step and final "
                   "accuracy/fidelity (default: the calibration subset of --data).")
@click.option("--accept-drop", is_flag=True,
              help="Write the result even when its held-out accuracy (else agreement) falls "
                   "more than --max-drop (default 0.05) below the original's; without it "
                   "that run writes nothing and exits 11.")
@click.option("--allow-frozen", is_flag=True,
              help="Fine-tune even when ONNX Runtime training cannot train more than 10% of "
                   "the prunable parameters (else exit 10).")
@click.option("--distill-features", type=click.Choice(DISTILL_FEATURES), default="auto",
              show_default=True,
              help="Also distill the last feature map before the head (kept channels); "
                   "auto: off (it did not help on the digits fixtures, docs/finetune.md).")
# -- end of sparsity/fine-tuning options
# -- --metric latency
@click.option("--provider", default="cpu", show_default=True,
              help="--metric latency: execution provider to measure on (cpu, cuda, ...).")
@click.option("--threads", type=int, default=1, show_default=True,
              help="--metric latency: intra-op threads of the measurements.")
@click.option("--latency-runs", type=int, default=20, show_default=True,
              help="--metric latency: timed runs per latency-table point.")
@click.option("--latency-cache", type=click.Path(path_type=str),
              help="--metric latency: folder of cached latency tables [default: "
                   "$ONNXPRUNE_LATENCY_CACHE or ~/.cache/onnxprune/latency].")
# -- end of latency options
@input_shape_option
@executor_options
@click.pass_context
@guard
def command(ctx: click.Context, model: str | None, config: str | None, output: str | None,
            as_json: bool, **_: Any) -> None:
    """Remove channels from MODEL until TARGET of the metric is gone; write the result."""
    from onnxprune.options import build_options, load_recipe, merge_options

    recipe = load_recipe(config) if config else {}
    options = build_options(merge_options(recipe, _explicit(ctx)))
    model = model or recipe.get("model")
    if not model:
        raise UsageError("no model given: pass MODEL or set 'model' in the recipe")
    output = output or recipe.get("output")
    result = _run(model, output, options, as_json)
    if as_json:
        emit_json(result.to_dict())
        return
    _print(result, options)


def _run(model: str, output: str | None, options: Any, as_json: bool) -> Any:
    """Run the flow; step bars where the flow table says the flow has steps."""
    from onnxprune.pipeline.flows import run_compress, select_flow

    if select_flow(options).progress:
        with step_progress(not as_json) as progress:
            return run_compress(model, output=output, options=options, progress=progress)
    with quiet_status("pruning...", not as_json):
        return run_compress(model, output=output, options=options)


def _print(result: Any, options: Any) -> None:
    """The summaries the flow table names for these options, in order
    (:func:`onnxprune.pipeline.flows.summary_parts`)."""
    from onnxprune.pipeline.flows import summary_parts

    printers = {"structured": _print_summary, "evaluation": _print_evaluation,
                "accuracy": _print_accuracy}
    for part in summary_parts(options):
        printers[part](result)


def _print_evaluation(result: Any) -> None:
    """Per-layer sparsity and the evaluation table (onnxprune.sparsity.summary)."""
    from onnxprune.sparsity.summary import print_summary

    print_summary(result, stdout)


def _mode(value: str) -> str:
    """``--mode``: a mode name or the short form ``N:M`` (e.g. ``2:4``)."""
    import re

    if value in MODES or re.fullmatch(r"\d+:\d+", value):
        return value
    raise click.BadParameter(f"{value!r} is not one of {', '.join(MODES)} or N:M (e.g. 2:4)")


def _ratio(before: float, after: float) -> str:
    return f"{after / before:.3f}x" if before else "-"


def _print_summary(result: Any) -> None:
    table = Table(title=f"{result.input} -> {result.output}")
    for column in ("", "before", "after", "after/before"):
        table.add_column(column)
    table.add_row("params", f"{result.params_before:,}", f"{result.params_after:,}",
                  _ratio(result.params_before, result.params_after))
    table.add_row("MACs", f"{result.macs_before:,.0f}", f"{result.macs_after:,.0f}",
                  _ratio(result.macs_before, result.macs_after))
    table.add_row("file bytes", f"{result.size_before:,}", f"{result.size_after or 0:,}",
                  _ratio(result.size_before, result.size_after or 0))
    stdout.print(table)
    if result.input_shapes:  # MACs are per sample at these shapes
        from onnxprune.graph.input_shapes import format_shapes

        stdout.print(f"input shapes: {format_shapes(result.input_shapes)}", markup=False)
    layers = Table(title="channels per layer")
    for column in ("layer", "kind", "before", "after"):
        layers.add_column(column)
    for row in result.layers:
        if row["before"] != row["after"]:
            layers.add_row(row["layer"], row["kind"], str(row["before"]), str(row["after"]))
    stdout.print(layers)
    if result.steps:  # progressive pruning (onnxprune.training)
        _print_steps(result.steps)
        _print_trainable(result.steps)
        _print_budget(result.budget)
    check = result.verification or {}
    diff = check.get("max_rel_diff")
    stdout.print(f"removed {100 * result.achieved:.1f}% of {result.options['metric']}; "
                 "ONNX Runtime check passed"
                 + (f"; max deviation from masked original {diff:.1e}" if diff is not None else ""))
    for note in result.notes:  # opset conversion, canonicalization, runtime lowering...
        stdout.print(f"note: {note}", markup=False, emoji=False)
    _print_accuracy(result)
    if getattr(result, "latency", None):  # --metric latency
        _print_latency(result.latency)


def _print_accuracy(result: Any) -> None:
    """The task metric of original and result side by side (onnxprune.calibration.accuracy),
    the flow chosen and why, or that accuracy was not measured and how to measure it."""
    flow = getattr(result, "flow", None)
    if flow:
        stdout.print(f"flow: {flow['message']}", markup=False)
    accuracy = getattr(result, "accuracy", None)
    if not accuracy:
        return
    if not accuracy.get("measured"):
        stdout.print(f"NOTE: {accuracy['message']}", markup=False)
        return
    table = Table(title=f"{accuracy['metric']} on {accuracy['samples']} "
                        f"{'held-out' if accuracy['held_out'] else 'calibration'} samples")
    for column in ("", "original", "result", "drop"):
        table.add_column(column)
    table.add_row(accuracy["metric"], f"{accuracy['original']:.4f}",
                  f"{accuracy['result']:.4f}", f"{accuracy['drop']:+.4f}")
    stdout.print(table)
    if accuracy.get("exceeded"):
        stdout.print(f"WARNING: {accuracy['message']}", markup=False)


def _print_latency(section: dict) -> None:
    predicted, measured = section["predicted"], section.get("measured") or {}
    line = (f"latency on {section['provider']} ({section['threads']} thread(s)): predicted "
            f"{predicted['original_ms']:.3f} -> {predicted['pruned_ms']:.3f} ms "
            f"(ratio {predicted['ratio']:.3f})")
    if measured.get("ratio") is not None:
        line += (f"; measured {measured['original_ms']:.3f} -> {measured['pruned_ms']:.3f} ms "
                 f"(ratio {measured['ratio']:.3f})")
    line += f"; table {'read from' if section['cache_hit'] else 'cached at'} {section['cache']}"
    stdout.print(line, markup=False)


def _print_trainable(steps: list[dict]) -> None:
    """The last fine-tuning's trainable share and frozen nodes (onnxprune.training)."""
    last = next((s for s in reversed(steps) if s.get("trainable")), None)
    if last is None:
        return
    line = f"fine-tuning (step {last['step']}): trainable: {last['trainable']}"
    if last.get("frozen"):
        line += f"; frozen: {last['frozen']}"
    stdout.print(line, markup=False)


def _print_budget(budget: dict | None) -> None:
    if not budget or not budget.get("stopped_at"):
        return
    dropped = budget["dropped"]
    line = (f"--max-drop {budget['max_drop']:g}: step {budget['stopped_at']} (removing "
            f"{dropped['achieved']:.3f}) lowered the {budget['metric']} by "
            f"{dropped['drop']:.4f}, so the schedule stopped and the last step within budget "
            "was kept")
    final = budget.get("final")
    if final:
        line += (f"; final fine-tune {final['value_before']:.4f} -> {final['value_after']:.4f}"
                 f" ({'kept' if final['kept'] else 'not kept'})")
    stdout.print(line, markup=False)


def _print_steps(steps: list[dict]) -> None:
    keys = [k for k in ("step", "target", "achieved", "params", "accuracy_pruned", "accuracy",
                        "kl_pruned", "kl", "cosine_pruned", "cosine", "metric", "loss")
            if any(k in s for s in steps)]
    table = Table(title="progressive steps (fidelity to the original before/after fine-tuning)")
    for key in keys:
        table.add_column(key)
    for step in steps:
        table.add_row(*[f"{step[k]:.4g}" if isinstance(step.get(k), float)
                        else str(step.get(k, "-")) for k in keys])
    stdout.print(table)
