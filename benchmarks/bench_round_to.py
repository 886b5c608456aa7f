"""Measured speed-up of pruned mobile/ResNet graphs for each ``--round-to`` value.

    python benchmarks/bench_round_to.py [--models mobilenetv2,mobilenetv3_small,...]
        [--target 0.7] [--round-to 1,8,16] [--runs 60] [--threads 1] [--json out.json]

For every model of ``benchmarks/mobile_like.py`` (full width, 1x3x224x224, BN folded)
this prunes with ``onnxprune.compress(target, metric="params")`` once per ``--round-to``
value (everything else at its default), then times the original and every pruned
variant **interleaved in one process** (``onnxprune.benchmark.benchmark``; batch 1,
one intra-op thread by default, CPU provider). Prints, per model and rounding, the
measured speed-up (ratio of median latencies, original/pruned) and the ideal one
(MACs ratio). This is how the default ``--round-to`` (multiples of 8 channels) was
chosen: see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile

import onnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from mobile_like import BUILDERS, build

from onnxprune.benchmark import benchmark
from onnxprune.compress import compress


def _model_rows(name: str, args: argparse.Namespace, tmp: pathlib.Path) -> list[dict]:
    original = tmp / f"{name}.onnx"
    onnx.save(build(name), original)
    paths, rows = [original], []
    for round_to in args.round_to:
        out = tmp / f"{name}.r{round_to}.onnx"
        result = compress(original, args.target, round_to=round_to, output=out, report=False)
        paths.append(out)
        rows.append({"model": name, "round_to": round_to, "achieved": result.achieved,
                     "macs_ratio": result.macs_before / result.macs_after})
    report = benchmark(paths, providers=["cpu"], threads=[args.threads], batch=[1],
                       runs=args.runs, warmup=args.warmup, memory=False)
    (config,) = [r for r in report["results"] if r["status"] == "ok"]
    for row, speed in zip(rows, config["speedup"][1:]):
        row["speedup"] = round(speed["measured"], 3)
        row["ideal"] = round(speed["ideal"], 3) if speed["ideal"] else None
    rows.append({"model": name, "original_p50_ms": config["models"][0]["latency"]["p50_ms"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(BUILDERS))
    parser.add_argument("--target", type=float, default=0.7)
    parser.add_argument("--round-to", type=lambda s: [int(v) for v in s.split(",")],
                        default=[1, 8, 16])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            model_rows = _model_rows(name, args, pathlib.Path(tmp))
            rows.extend(model_rows)
            for row in model_rows:
                if "round_to" in row:
                    print(f"{name:18s} round_to={row['round_to']:<3d} achieved="
                          f"{row['achieved']:.3f} speed-up {row['speedup']:.2f}x "
                          f"(ideal {row['ideal']:.2f}x)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
