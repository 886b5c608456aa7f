"""``onnxprune export-mobile``: ORT-format model for ONNX Runtime Mobile, with a usability
check for NNAPI/CoreML and a single-thread CPU (and XNNPACK) timing."""

from __future__ import annotations

__all__ = ["command"]

import click
from rich.table import Table

from onnxprune.cli.common import emit_json, guard, quiet_status, stdout


@click.command("export-mobile")
@click.argument("model", type=click.Path(path_type=str))
@click.option("-o", "--output", type=click.Path(path_type=str),
              help="Output .ort path (default: <model>.ort).")
@click.option("--fix-shape", "fix_shapes", multiple=True,
              help="NAME:1x3x224x224 makes an input static (NNAPI needs it; repeatable).")
@click.option("--optimization", type=click.Choice(["basic", "extended", "all"]), default="all",
              show_default=True, help="Optimizations saved in the file; 'basic' keeps plain ONNX "
                                      "ops, which NNAPI/CoreML can take.")
@click.option("--runs", type=int, default=30, show_default=True)
@click.option("--warmup", type=int, default=5, show_default=True)
@click.option("--no-bench", is_flag=True, help="Skip the single-thread timing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@guard
def command(model: str, output: str | None, fix_shapes: tuple[str, ...], optimization: str,
            runs: int, warmup: int, no_bench: bool, as_json: bool) -> None:
    """Convert MODEL to the ORT format, check it reproduces the ONNX outputs, report which
    share of the graph NNAPI/CoreML would take and time it single-threaded."""
    from onnxprune.mobile import export_mobile

    with quiet_status("exporting...", not as_json):
        report = export_mobile(model, output, fix_shapes=list(fix_shapes),
                               optimization=optimization, bench=not no_bench, runs=runs,
                               warmup=warmup)
    if as_json:
        emit_json(report)
        return
    _print(report)


def _print(report: dict) -> None:
    check = report["verification"]
    stdout.print(f"wrote {report['output']} ({report['ort_bytes']:,} bytes; ONNX "
                 f"{report['onnx_bytes']:,}); outputs match the ONNX model "
                 f"(max relative deviation {check['max_rel_diff']:.1e})", markup=False)
    for note in report["notes"]:
        stdout.print(f"note: {note}", markup=False)
    usability = report.get("usability") or {}
    if "error" in usability:
        stdout.print(usability["error"], markup=False)
    elif usability:
        table = Table(title="NNAPI / CoreML usability (ONNX Runtime's checker)")
        for column in ("provider", "nodes taken", "partitions", "verdict", "why not the rest"):
            table.add_column(column)
        for key in ("nnapi", "coreml_neuralnetwork", "coreml_mlprogram"):
            row = usability[key]
            taken = f"{row['supported_nodes']}/{row['nodes']} ({100 * row['share']:.0f}%)"
            if "share_if_static" in row:
                taken += f"; {100 * row['share_if_static']:.0f}% with static shapes"
            table.add_row(row["provider"], taken, str(row["partitions"]), row["verdict"],
                          "\n".join(row["why_not"]) or "-")
        stdout.print(table)
        caveats = sorted({c for key in ("nnapi", "coreml_neuralnetwork", "coreml_mlprogram")
                          for c in usability[key]["caveats"]})
        if caveats:
            stdout.print("not checked (may lower the share): " + "; ".join(caveats), markup=False)
    bench = report.get("benchmark")
    if bench:
        for result in bench["results"]:
            if result["status"] != "ok":
                stdout.print(f"{result['provider']}: {result['reason']}", markup=False)
                continue
            lat = result["models"][0]["latency"]
            stdout.print(f"{result['provider']}, 1 thread: p50 {lat['p50_ms']:.2f} ms, p90 "
                         f"{lat['p90_ms']:.2f} ms, load {result['models'][0]['load_s']:.3f} s",
                         markup=False)
        for provider in bench["providers"]:
            if not provider["available"]:
                stdout.print(f"{provider['alias']}: {provider['reason']}", markup=False)
