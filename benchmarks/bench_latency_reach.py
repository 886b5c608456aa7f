"""How far ``--metric latency`` can go on mobile graphs, and predicted vs measured at 0.5.

    python benchmarks/bench_latency_reach.py [--models mobilenetv3_small,efficientnet_b0,lcnet]
        [--target 0.5] [--runs 150] [--table-runs 20] [--threads 1] [--json out.json]

For each model (the MobileNetV3-small- and EfficientNet-B0-like graphs of
``benchmarks/mobile_like.py`` at 1x3x224x224, the Paddle LCNet digits export
``fixtures/models/thirdparty/digits_lcnet.paddle.onnx`` at batch 256 of 8x8):

1. measure the latency table (fresh cache folder) and record its summary and the
   largest predicted reduction the floors allow (``maximum`` of the plan, or of the
   :class:`~onnxprune.errors.UnreachableTargetError`);
2. where ``--target`` is reachable, prune to it and time the original and the pruned
   model interleaved (``onnxprune.benchmark.benchmark``): predicted and measured ratio.

Prints one JSON row per model with ``os.getloadavg()`` at its start.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile

import onnx
import onnx_ir as ir

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from mobile_like import build as build_mobile

from onnxprune.analysis import analyze
from onnxprune.benchmark import benchmark
from onnxprune.benchmark.latency_check import plan_latency
from onnxprune.benchmark.latency_table import LatencySettings
from onnxprune.errors import UnreachableTargetError
from onnxprune.graph import load_model
from onnxprune.importance import score_units
from onnxprune.planning import PlanOptions
from onnxprune.rewrite import apply_plan

ROOT = pathlib.Path(__file__).resolve().parent.parent
LCNET = ROOT / "fixtures" / "models" / "thirdparty" / "digits_lcnet.paddle.onnx"
SHAPES = {"lcnet": {"input": (256, 1, 8, 8)}}


def _source(name: str, tmp: pathlib.Path) -> pathlib.Path:
    if name == "lcnet":
        return LCNET
    path = tmp / f"{name}.onnx"
    onnx.save(build_mobile(name), path)
    return path


def _model(name: str, args: argparse.Namespace, tmp: pathlib.Path) -> dict:
    row: dict = {"model": name, "load_average": [round(v, 2) for v in os.getloadavg()]}
    source = _source(name, tmp)
    shapes = SHAPES.get(name)
    settings = LatencySettings(threads=args.threads, runs=args.table_runs,
                               cache=str(tmp / f"cache-{name}"))
    loaded = load_model(source)
    original = ir.serde.serialize_model(loaded.model)
    analysis = analyze(loaded.model)
    scores = score_units(analysis, "l1", 0)
    try:
        plan, section = plan_latency(original, analysis, scores, PlanOptions(args.target,
                                                                             "latency"),
                                     settings, shapes)
    except UnreachableTargetError as exc:
        row.update(reachable=False, maximum=round(float(exc.maximum), 4), note=str(exc))
        return row
    row.update(reachable=True, maximum=round(float(plan.maximum), 4),
               predicted_ratio=section["predicted"]["ratio"],
               table={k: v for k, v in section["table"].items() if k not in ("layers", "nodes")})
    apply_plan(analysis, plan.removed_units)
    out = tmp / f"{name}.pruned.onnx"
    ir.save(analysis.model, out)
    report = benchmark([source, out], providers=["cpu"], threads=[args.threads],
                       batch=None if shapes else [1], input_shapes=shapes, runs=args.runs,
                       warmup=5, memory=False)
    (config,) = [r for r in report["results"] if r["status"] == "ok"]
    base, pruned = (m["latency"]["p50_ms"] for m in config["models"])
    row["measured_ratio"] = round(pruned / base, 4)
    row["predicted_over_measured"] = round(row["predicted_ratio"] / row["measured_ratio"], 4)
    row["original_p50_ms"] = base
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mobilenetv3_small,efficientnet_b0,lcnet")
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--runs", type=int, default=150)
    parser.add_argument("--table-runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="onnxprune-reach-") as folder:
        for name in args.models.split(","):
            row = _model(name, args, pathlib.Path(folder))
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
