"""``onnxprune bench``: latency, throughput and memory of models on execution providers."""

from __future__ import annotations

__all__ = ["command"]

import pathlib

import click
from rich.table import Table

from onnxprune.cli.common import emit_json, guard, quiet_status, stdout


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: expected comma-separated integers") from exc


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


@click.command("bench")
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--providers", default="cpu", show_default=True,
              help="Comma-separated: cpu,cuda,tensorrt,openvino,xnnpack,coreml,nnapi,qnn,...")
@click.option("--threads", default="1", show_default=True, help="Intra-op threads, e.g. 1,4.")
@click.option("--batch", default=None, help="Batch sizes for a symbolic first dimension, e.g. 1,8.")
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed runs per model.")
@click.option("--runs", type=int, default=50, show_default=True, help="Timed runs per model.")
@click.option("--input-shape", "input_shapes", multiple=True,
              help="NAME:1x3x224x224 for inputs with symbolic dimensions (repeatable) "
                   "[default: a size the model states or accepts].")
@click.option("--optimization", type=click.Choice(["disable", "basic", "extended", "all"]),
              default="all", show_default=True, help="ORT graph optimization level.")
@click.option("--no-memory", is_flag=True, help="Skip the peak-memory probe (one process per "
                                                "model and configuration).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@guard
def command(models: tuple[str, ...], providers: str, threads: str, batch: str | None,
            warmup: int, runs: int, input_shapes: tuple[str, ...], optimization: str,
            no_memory: bool, as_json: bool) -> None:
    """Time MODELS (interleaved, run by run) on each provider; the first model is the
    reference for speed-ups (measured: ratio of median latencies; ideal: ratio of MACs)."""
    from onnxprune.benchmark import benchmark

    with quiet_status("benchmarking...", not as_json):
        report = benchmark(list(models), providers=providers, threads=_int_list(threads),
                           batch=_int_list(batch) if batch else None, warmup=warmup, runs=runs,
                           input_shapes=input_shapes, optimization=optimization,
                           memory=not no_memory)
    if as_json:
        emit_json(report)
        return
    _print(report)


def _label(index: int, path: str) -> str:
    return f"#{index} {pathlib.Path(path).name}"


def _print(report: dict) -> None:
    infos = report["models"]
    labels = [_label(i, info["path"]) for i, info in enumerate(infos)]
    for result in report["results"]:
        if result["status"] != "ok":
            stdout.print(f"{result['provider']}: {result['reason']}", markup=False)
            continue
        table = Table(title=f"{result['provider']}, {result['threads']} thread(s), "
                            f"batch {result['batch']}")
        table.add_column("")
        for label in labels:
            table.add_column(label, justify="right")
        rows = result["models"]
        lat = [r["latency"] for r in rows]
        ratios = result["speedup"]
        lines = [
            ("MB on disk", [f"{i['file_bytes'] / 2**20:.1f}" for i in infos]),
            ("params", [_fmt(i["params"]) for i in infos]),
            ("GMACs / item", [_fmt(i["macs"] / 1e9 if i["macs"] else None, ".3f")
                              for i in infos]),
            ("session load s", [f"{r['load_s']:.3f}" for r in rows]),
            ("first run ms", [f"{r['first_run_ms']:.2f}" for r in rows]),
            ("peak memory MB", [_fmt(r.get("peak_memory_mb"), ".1f") for r in rows]),
            ("p50 ms", [f"{x['p50_ms']:.3f}" for x in lat]),
            ("p90 ms", [f"{x['p90_ms']:.3f}" for x in lat]),
            ("p99 ms", [f"{x['p99_ms']:.3f}" for x in lat]),
            ("mean ms", [f"{x['mean_ms']:.3f}" for x in lat]),
            ("items/s", [f"{x['throughput']:.1f}" for x in lat]),
            ("speed-up measured", ["1.00x"] + [f"{r['measured']:.2f}x" for r in ratios[1:]]),
            ("speed-up ideal (MACs)", ["1.00x"] + [_fmt(r["ideal"], ".2f") + "x"
                                                   if r["ideal"] else "-" for r in ratios[1:]]),
        ]
        for name, values in lines:
            table.add_row(name, *values)
        stdout.print(table)
        for key in ("note", "warning"):
            if result.get(key):
                stdout.print(f"{key}: {result[key]}", markup=False)
    for provider in report["providers"]:
        if not provider["available"]:
            stdout.print(f"{provider['alias']}: {provider['reason']}", markup=False)
    for label, info in zip(labels, infos):
        stdout.print(f"{label}: {info['path']}", markup=False)
    settings = report["settings"]
    stdout.print(f"{settings['runs']} timed runs after {settings['warmup']} warm-up runs per "
                 "model, interleaved run by run; speed-up: ratio of median latencies vs #0; "
                 "ideal: ratio of MACs; peak memory: " + settings["memory_method"], markup=False)
