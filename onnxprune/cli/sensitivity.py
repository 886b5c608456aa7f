"""``onnxprune sensitivity``: damage of pruning each group alone at several ratios."""

from __future__ import annotations

__all__ = ["CLI_ONLY", "OWN_DEFAULTS", "RENAMED", "command"]

from typing import Any

import click
from rich.table import Table

from onnxprune.choices import SCORING_CRITERIA
from onnxprune.cli.common import emit_json, guard, stdout
from onnxprune.cli.data_options import data_options, input_shape_option, parse_floats
from onnxprune.cli.executor_options import executor_options
from onnxprune.cli.task_progress import task_progress

# Every parameter but these is a compress option key (sensitivity_file passes them to
# onnxprune.options.build_options; tests/cli/test_options_equal.py checks names, defaults
# and choices against CompressOptions).
CLI_ONLY = ("model", "output", "plot", "as_json", "samples")  # samples: sensitivity_file's own
RENAMED = {"ratios": "sensitivity_ratios"}  # CLI parameter -> option key, where they differ
# options whose default differs from compress's: the ranking criterion (compress: auto;
# here one of SCORING_CRITERIA, auto excluded)
OWN_DEFAULTS = ("criterion",)


@click.command("sensitivity")
@click.argument("model", type=click.Path(path_type=str))
@data_options
@click.option("--ratios", callback=parse_floats, default="0.1,0.3,0.5,0.7", show_default=True,
              help="Fractions of each group's channels to remove.")
@click.option("--criterion", type=click.Choice(SCORING_CRITERIA), default="l1",
              show_default=True, help="Which channels go first in each group.")
@click.option("--min-keep", type=float, default=0.1, show_default=True)
@click.option("--round-to", type=int, default=None,
              help="Kept counts a multiple of N units (default: multiples of 8 channels).")
@click.option("--ignore", multiple=True, help="Glob of node/initializer names to keep whole.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the --samples subsample (and of --criterion random).")
@click.option("--samples", type=click.IntRange(min=1), default=None,
              help="First pass on a seeded subsample of N samples; groups near the "
                   "decision boundary are measured again on all of them [default: all "
                   "samples, no subsampling].")
@executor_options
@click.option("-o", "--output", type=click.Path(path_type=str), help="Write the JSON here.")
@click.option("--plot", type=click.Path(path_type=str), help="Write a PNG plot here.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@input_shape_option
@guard
def command(model: str, ratios: tuple[float, ...], output: str | None, plot: str | None,
            as_json: bool, **options: Any) -> None:
    """Prune each prunable group of MODEL alone at each ratio; measure the damage on --data
    (synthetic inputs without it): KL/cosine to the original outputs, accuracy with labels."""
    from onnxprune.pipeline.sensitivity import plot_sensitivity, sensitivity_file, write_json

    with task_progress("sensitivity cells", not as_json) as progress:
        result = sensitivity_file(model, ratios=ratios, progress=progress, **options)
    if output:
        write_json(result, output)
    if plot:
        plot_sensitivity(result, plot)
    if as_json:
        emit_json(result.to_dict())
        return
    _print_table(result)


def _print_table(result: Any) -> None:
    table = Table(title=f"{result.model}: damage ({result.damage_metric}) on "
                        f"{result.num_samples} samples"
                        + (f", baseline accuracy {result.baseline_accuracy:.4f}"
                           if result.baseline_accuracy is not None else ""))
    table.add_column("#")
    table.add_column("group")
    table.add_column("channels")
    for ratio in result.ratios:
        table.add_column(f"{ratio:g}")
    for group in result.groups:
        cells = []
        for point in group.points:
            text = f"{point['damage']:.3g}"
            if "accuracy" in point:
                text += f" ({100 * point['accuracy']:.1f}%)"
            cells.append(text)
        table.add_row(str(group.index), group.name, str(group.channels), *cells)
    stdout.print(table)
