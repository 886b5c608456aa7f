"""The ``onnxprune`` command line.

Rules:

1. ``--json`` prints exactly one JSON document on stdout; logs and progress go to
   stderr.
2. Errors the user can fix print ``error: <message>`` on stderr and exit with the
   code of their class (see :class:`onnxprune.errors.ExitCode`); Ctrl-C exits 130.
   Unexpected errors exit 1 with a one-line message (``--debug`` shows the traceback).
"""

from __future__ import annotations

__all__ = ["main"]

import functools
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from onnxprune import __version__
from onnxprune.errors import ExitCode, OnnxPruneError

logger = logging.getLogger("onnxprune")
stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


def _guard(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn project errors into one line and an exit code (rule 2)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return func(*args, **kwargs)
        except OnnxPruneError as exc:
            if debug:
                raise
            stderr.print(f"error: {exc}", markup=False, highlight=False)
            sys.exit(int(exc.exit_code))
        except KeyboardInterrupt:
            stderr.print("interrupted: nothing was written", markup=False)
            sys.exit(int(ExitCode.INTERRUPTED))
        except Exception as exc:  # last resort: still one line, still an exit code
            if debug:
                raise
            stderr.print(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug "
                         "for the traceback)", markup=False, highlight=False)
            sys.exit(int(ExitCode.INTERNAL))

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="onnxprune")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def main(verbose: int, debug: bool) -> None:
    """Structural pruning of ONNX models: analyze, then compress."""
    _setup_logging(verbose)


def _emit_json(document: dict) -> None:
    click.echo(json.dumps(document, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


@main.command()
@click.argument("model", type=click.Path(dir_okay=True, path_type=str))
@click.option("--ignore", multiple=True, help="Glob of node/initializer names to keep whole.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@_guard
def analyze(model: str, ignore: tuple[str, ...], as_json: bool) -> None:
    """List every channel group of MODEL: members, size, cost share, prunable or why not."""
    from onnxprune.compress import analyze_file

    report = analyze_file(model, ignore)
    if as_json:
        _emit_json(report)
        return
    table = Table(title=f"{model}: {report['params']:,} params, {report['macs']:,.0f} MACs")
    for column in ("#", "group", "channels", "params %", "MACs %", "prunable / reason"):
        table.add_column(column)
    for row in report["groups"]:
        status = "yes" if row["prunable"] else "; ".join(row["reasons"][:2])
        if row["prunable"] and row["prunable_channels"] < row["channels"]:
            status = f"{row['prunable_channels']} of {row['channels']}"
        table.add_row(str(row["index"]), row["name"], str(row["channels"]),
                      f"{100 * row['params_share']:.1f}", f"{100 * row['macs_share']:.1f}", status)
    stdout.print(table)
    prunable = sum(r["prunable"] for r in report["groups"])
    stdout.print(f"{prunable} of {len(report['groups'])} groups prunable")


@main.command()
@click.argument("model", type=click.Path(dir_okay=True, path_type=str))
@click.option("--target", "-t", type=float, required=True,
              help="Fraction of the metric to remove, e.g. 0.5.")
@click.option("-o", "--output", type=click.Path(path_type=str),
              help="Output path (default: <model>.pruned.onnx).")
@click.option("--metric", type=click.Choice(["params", "flops"]), default="params",
              show_default=True)
@click.option("--criterion", type=click.Choice(["l1", "l2", "bn_scale", "fpgm", "random"]),
              default="l1", show_default=True)
@click.option("--scope", type=click.Choice(["global", "uniform"]), default="global",
              show_default=True)
@click.option("--round-to", type=int, default=1, show_default=True,
              help="Keep every pruned channel count a multiple of N.")
@click.option("--min-keep", type=float, default=0.1, show_default=True,
              help="Per-group floor: fraction (<1) or count (>=1) of channels kept.")
@click.option("--ignore", multiple=True, help="Glob of node/initializer names to keep whole.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-equivalence-check", is_flag=True,
              help="Skip the masked-equivalence check (saves one model run).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@_guard
def compress(model: str, target: float, output: str | None, metric: str, criterion: str,
             scope: str, round_to: int, min_keep: float, ignore: tuple[str, ...], seed: int,
             no_equivalence_check: bool, as_json: bool) -> None:
    """Remove channels from MODEL until TARGET of the metric is gone; write the result."""
    from onnxprune.compress import CompressOptions
    from onnxprune.compress import compress as run

    options = CompressOptions(target=target, metric=metric, criterion=criterion, scope=scope,
                              round_to=round_to, min_keep=min_keep, ignore=tuple(ignore),
                              seed=seed, verify_equivalence=not no_equivalence_check)
    with stderr.status("pruning...", spinner="dots") if not as_json else _nullcontext():
        result = run(model, output=output, options=options)
    if as_json:
        _emit_json(result.to_dict())
        return
    _print_summary(result)


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


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
    layers = Table(title="channels per layer")
    for column in ("layer", "kind", "before", "after"):
        layers.add_column(column)
    for row in result.layers:
        if row["before"] != row["after"]:
            layers.add_row(row["layer"], row["kind"], str(row["before"]), str(row["after"]))
    stdout.print(layers)
    check = result.verification or {}
    diff = check.get("max_rel_diff")
    stdout.print(f"removed {100 * result.achieved:.1f}% of {result.options['metric']}; "
                 f"ONNX Runtime check passed"
                 + (f"; max deviation from masked original {diff:.1e}" if diff is not None else ""))


if __name__ == "__main__":  # pragma: no cover
    main()
