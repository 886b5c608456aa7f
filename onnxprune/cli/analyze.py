"""``onnxprune analyze``: every channel group, its cost share, prunable or why not."""

from __future__ import annotations

__all__ = ["command"]

import click
from rich.table import Table

from onnxprune.cli.common import emit_json, guard, stdout
from onnxprune.cli.data_options import input_shape_option


@click.command("analyze")
@click.argument("model", type=click.Path(path_type=str))
@click.option("--ignore", multiple=True, help="Glob of node/initializer names to keep whole.")
@click.option("--prune-hidden", is_flag=True,
              help="Analyze with the hidden (residual-stream) width of transformers prunable.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@input_shape_option
@guard
def command(model: str, ignore: tuple[str, ...], prune_hidden: bool, as_json: bool,
            input_shape: dict | None) -> None:
    """List every channel group of MODEL: members, size, cost share, prunable or why not."""
    from onnxprune.pipeline.analyze import analyze_file

    report = analyze_file(model, ignore, prune_hidden=prune_hidden, input_shape=input_shape)
    if as_json:
        emit_json(report)
        return
    table = Table(title=f"{model}: {report['params']:,} params, {report['macs']:,.0f} MACs")
    for column in ("#", "group", "channels", "params %", "MACs %", "prunable / reason"):
        table.add_column(column)
    for row in report["groups"]:
        status = "yes" if row["prunable"] else "; ".join(row["reasons"][:2])
        if row["prunable"] and row["prunable_channels"] < row["channels"]:
            status = f"{row['prunable_channels']} of {row['channels']}"
        if row["grouped_conv_blocks"]:
            status += f" (equal loss in {row['grouped_conv_blocks']} blocks)"
        table.add_row(str(row["index"]), row["description"] or row["name"], str(row["channels"]),
                      f"{100 * row['params_share']:.1f}", f"{100 * row['macs_share']:.1f}", status)
    stdout.print(table)
    if report.get("input_shapes"):  # MACs are per sample at these shapes
        from onnxprune.graph.input_shapes import format_shapes

        stdout.print(f"MACs at input shapes: {format_shapes(report['input_shapes'])}",
                     markup=False)
    prunable = sum(r["prunable"] for r in report["groups"])
    stdout.print(f"{prunable} of {len(report['groups'])} groups prunable")
    limits = report["capacity"]
    stdout.print(f"prunable share: {limits['prunable_share']['params']:.1%} of params; with the "
                 f"default options at most {limits['maximum']['params']:.3f} of params and "
                 f"{limits['maximum']['flops']:.3f} of MACs can be removed")
    for note in report["notes"]:  # conversion, canonicalization (folded/removed/fused)
        stdout.print(f"note: {note}", markup=False, emoji=False)
