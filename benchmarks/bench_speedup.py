"""Measured vs ideal speed-up of a pruned ResNet-50-like model on ONNX Runtime CPU.

    python benchmarks/bench_speedup.py [--runs 100] [--warmup 10] [--threads 1]
        [--round-to 8] [--optimization all] [--min-speedup 1.6] [--profile] [--json out.json]

Builds the full-width ResNet-50-like graph (benchmarks/resnet50_like.py, input
1x3x224x224), prunes it with ``onnxprune.compress(target=0.5, metric="flops",
round_to=8)``, then times original and pruned *interleaved in one process* with
``onnxprune.benchmark.compare`` (single intra-op thread by default). Prints the
measured speed-up (ratio of median latencies), the spread of the per-run ratios and
the ideal one (MACs ratio); exits 1 when the measured speed-up is below
``--min-speedup``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile

import onnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from resnet50_like import build

from onnxprune.benchmark import compare
from onnxprune.compress import compress


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        original = pathlib.Path(tmp) / "resnet50_like.onnx"
        pruned = pathlib.Path(tmp) / "resnet50_like.pruned.onnx"
        onnx.save(build(1), original)
        result = compress(original, args.target, metric="flops", round_to=args.round_to,
                          output=pruned, verify_equivalence=False)
        report = compare(original, pruned, providers=["cpu"], threads=args.threads,
                         runs=args.runs, warmup=args.warmup, optimization=args.optimization,
                         memory=not args.no_memory)
        if args.profile:
            report["profile_ms_per_op_type"] = {
                "original": _profile(original, args), "pruned": _profile(pruned, args)}
    report["compress"] = {"target": args.target, "metric": "flops", "round_to": args.round_to,
                          "achieved": result.achieved, "layers": result.layers}
    return report


def _profile(path: pathlib.Path, args: argparse.Namespace, runs: int = 20) -> dict:
    """Mean kernel milliseconds per op type (after ORT fusions) over ``runs`` profiled runs."""
    import collections

    import numpy as np
    import onnxruntime as ort

    from onnxprune.benchmark.session import GRAPH_LEVELS

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads[0]
    options.inter_op_num_threads = 1
    options.graph_optimization_level = [
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    ][GRAPH_LEVELS.index(args.optimization)]
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {"input": np.random.default_rng(0).standard_normal((1, 3, 224, 224), np.float32)}
    for _ in range(5):
        session.run(None, feeds)
    session.end_profiling()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        session.run(None, feeds)
    events = json.loads(pathlib.Path(session.end_profiling()).read_text())
    totals: dict[str, float] = collections.defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"] / 1e3 / runs
    return {k: round(v, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--round-to", type=int, default=8)
    parser.add_argument("--optimization", default="all",
                        choices=["disable", "basic", "extended", "all"])
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="Also print kernel time per op type (ORT profiler, 20 runs).")
    parser.add_argument("--min-speedup", type=float, default=1.6)
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    report = run(args)
    env = report["environment"]
    print(f"onnxruntime {env['onnxruntime']}, {env['cpu']}, {env['cpu_count']} CPUs, "
          f"load average {env['load_average']}; {args.runs} runs after {args.warmup} warm-up, "
          f"interleaved; graph optimization {args.optimization}")
    print(f"MACs {report['original']['macs'] / 1e9:.3f} G -> {report['pruned']['macs'] / 1e9:.3f}"
          f" G, params {report['original']['params'] / 1e6:.2f} M -> "
          f"{report['pruned']['params'] / 1e6:.2f} M")
    worst = float("inf")
    for row in report["providers"]["cpu"]:
        o, p = row["original"]["latency"], row["pruned"]["latency"]
        paired = row["speedup_paired"]
        memory = ""
        if row["original"].get("peak_memory_mb") is not None:
            memory = (f"; peak memory {row['original']['peak_memory_mb']:.0f} -> "
                      f"{row['pruned']['peak_memory_mb']:.0f} MB")
        print(f"cpu, {row['threads']} thread(s): p50 {o['p50_ms']:.2f} -> {p['p50_ms']:.2f} ms "
              f"(p90 {o['p90_ms']:.2f} -> {p['p90_ms']:.2f}); measured {row['speedup']:.3f}x "
              f"(per-run ratios q25 {paired['q25']:.3f} / median {paired['median']:.3f} / q75 "
              f"{paired['q75']:.3f}), ideal {row['ideal_speedup']:.3f}x{memory}")
        if row.get("warning"):
            print(f"  warning: {row['warning']}")
        worst = min(worst, row["speedup"])
    if args.profile:
        prof = report["profile_ms_per_op_type"]
        print("kernel ms per run by op type (ORT profiler): original -> pruned (ratio)")
        for op, ms in prof["original"].items():
            after = prof["pruned"].get(op, 0.0)
            ratio = f"{ms / after:.2f}x" if after else "-"
            print(f"  {op:24s} {ms:8.2f} -> {after:8.2f}  ({ratio})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if worst < args.min_speedup:
        print(f"measured speed-up {worst:.3f}x is below {args.min_speedup}x")
        sys.exit(1)


if __name__ == "__main__":
    main()
