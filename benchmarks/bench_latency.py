"""``--metric latency`` against ``--metric flops``: predicted and measured latency, kept importance.

    python benchmarks/bench_latency.py [--models resnet50,mobilenetv2,digits]
        [--targets 0.3,0.5] [--runs 40] [--table-runs 20] [--threads 1] [--provider cpu]
        [--json out.json]

For the full-width ResNet-50-like (``benchmarks/resnet50_like.py``) and MobileNetV2-like
(``benchmarks/mobile_like.py``) graphs at 1x3x224x224, and for the pretrained digits
CNN (``fixtures/models/digits_cnn.ts.onnx``, batch 1), on CPU with ``--threads``:

1. plan with ``metric="latency"`` at every ``--targets`` value and with
   ``metric="flops"`` at 0.5 (L1 importance, default rounding; the latency table is
   measured once per model and then read from the cache);
2. time the original and every pruned variant **interleaved in one process**
   (``onnxprune.benchmark.benchmark``), so the measured ratios pruned/original compare;
3. plan with ``metric="latency"`` again, at the target the flops plan measured
   (``1 - measured ratio``), time it interleaved with the flops plan, and report how much
   importance (sum of the per-group normalised scores of the kept channels, over the
   prunable groups) each keeps at that equal latency; on the digits model also the
   test accuracy (``fixtures/data/digits_test.npz``, no fine-tuning).

Prints one JSON row per plan: predicted and measured ratio, predicted/measured, MACs
ratio, importance kept, accuracy. The numbers are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile

import numpy as np
import onnx
import onnx_ir as ir

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from mobile_like import build as build_mobile
from resnet50_like import build as build_resnet

from onnxprune.analysis import analyze
from onnxprune.benchmark import benchmark, select_providers
from onnxprune.benchmark.latency_check import plan_latency
from onnxprune.benchmark.latency_table import LatencySettings
from onnxprune.benchmark.round_probe import auto_block
from onnxprune.errors import OnnxPruneError
from onnxprune.graph import load_model
from onnxprune.graph.runtime import import_ort
from onnxprune.importance import score_units
from onnxprune.planning import CostModel, PlanOptions, make_plan
from onnxprune.rewrite import apply_plan

ROOT = pathlib.Path(__file__).resolve().parent.parent
DIGITS = ROOT / "fixtures" / "models" / "digits_cnn.ts.onnx"
# the digits CNN takes 8x8 images: at batch 1 a run is call overhead, so it is timed and
# planned at batch 256; the others at their 1x3x224x224 default
SHAPES = {"digits": {"input": (256, 1, 8, 8)}}


def _source(name: str, tmp: pathlib.Path) -> pathlib.Path:
    if name == "digits":
        return DIGITS
    path = tmp / f"{name}.onnx"
    onnx.save(build_resnet(1) if name == "resnet50" else build_mobile(name), path)
    return path


def importance_kept(analysis, scores: np.ndarray, removed: np.ndarray) -> float:
    kept = total = 0.0
    for group in analysis.prunable_groups:
        local = scores[group.units].astype(np.float64)
        mean = float(local[~group.blocked].mean()) if (~group.blocked).any() else 0.0
        norm = local / mean if mean > 0 else local
        total += float(norm.sum())
        kept += float(norm[~removed[group.units]].sum())
    return kept / total if total else 1.0


def _prune(path: pathlib.Path, metric: str, target: float, out: pathlib.Path,
           settings: LatencySettings, shapes: dict | None, round_to: int | None = None) -> dict:
    loaded = load_model(path)
    original = ir.serde.serialize_model(loaded.model)
    analysis = analyze(loaded.model)
    scores = score_units(analysis, "l1", 0)
    cost = CostModel(analysis)
    row: dict = {"metric": metric, "target": target, "round_to": round_to or "default (8)"}
    options = PlanOptions(target, metric, round_to=round_to)
    if metric == "latency":
        plan, section = plan_latency(original, analysis, scores, options, settings, shapes)
        row["predicted_ratio"] = section["predicted"]["ratio"]
        row["table_cache_hit"] = section["cache_hit"]
        row["table"] = {k: v for k, v in section["table"].items() if k != "layers"}
    else:
        plan = make_plan(analysis, scores, options)
    after = cost.evaluate(plan.removed_units)
    row["macs_ratio"] = round(after.macs / cost.original.macs, 4)
    row["importance_kept"] = round(importance_kept(analysis, scores, plan.removed_units), 4)
    apply_plan(analysis, plan.removed_units)
    ir.save(analysis.model, out)
    row["path"] = str(out)
    return row


def _time(paths: list[pathlib.Path], rows: list[dict], args: argparse.Namespace,
          shapes: dict | None) -> float:
    report = benchmark(paths, providers=[args.provider], threads=[args.threads],
                       batch=None if shapes else [1], input_shapes=shapes, runs=args.runs,
                       warmup=5, memory=False)
    (config,) = [r for r in report["results"] if r["status"] == "ok"]
    base = config["models"][0]["latency"]["p50_ms"]
    for row, model in zip(rows, config["models"][1:]):
        row["measured_ratio"] = round(model["latency"]["p50_ms"] / base, 4)
        if "predicted_ratio" in row:
            row["predicted_over_measured"] = round(row["predicted_ratio"] /
                                                   row["measured_ratio"], 4)
    return base


def digits_accuracy(path: str) -> float:
    """Top-1 accuracy of a digits model on fixtures/data/digits_test.npz."""
    import onnxruntime as ort

    data = np.load(ROOT / "fixtures" / "data" / "digits_test.npz")
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    logits = session.run(None, {name: data["input"].astype(np.float32)})[0]
    return round(float((logits.argmax(-1) == data["labels"]).mean()), 4)


def _model(name: str, args: argparse.Namespace, tmp: pathlib.Path) -> list[dict]:
    source = _source(name, tmp)
    shapes = SHAPES.get(name)
    settings = LatencySettings(provider=args.provider, threads=args.threads, runs=args.table_runs,
                               cache=str(tmp / "cache"))
    plans = [("latency", t, None) for t in args.targets] + [("flops", 0.5, None)]
    if args.round_auto:  # --round-to auto against the default multiples of 8
        block = auto_block(settings)["block"]
        plans += [("latency", 0.5, block), ("flops", 0.5, block)]
    rows = [_prune(source, m, t, tmp / f"{name}.{m}{t}r{r}.onnx", settings, shapes, r)
            for m, t, r in plans]
    base = _time([source, *[pathlib.Path(r["path"]) for r in rows]], rows, args, shapes)
    flops = rows[len(args.targets)]
    equal = _prune(source, "latency", round(1 - flops["measured_ratio"], 4),
                   tmp / f"{name}.latency_eq.onnx", settings, shapes)
    equal["equal_latency_to"] = "flops 0.5"
    pair = [dict(flops), equal]
    _time([source, pathlib.Path(flops["path"]), pathlib.Path(equal["path"])], pair, args,
          shapes)
    equal["flops_measured_ratio_same_batch"] = pair[0]["measured_ratio"]
    rows.insert(len(args.targets) + 1, equal)
    for row in rows:
        row["model"] = name
        row["input_shapes"] = shapes
        row["original_p50_ms"] = base
        if name == "digits":
            row["accuracy"] = digits_accuracy(row["path"])
        del row["path"]
    if name == "digits":
        rows.append({"model": name, "metric": "original", "accuracy": digits_accuracy(str(source))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet50,mobilenetv2,digits")
    parser.add_argument("--targets", default="0.3,0.5",
                        type=lambda s: [float(v) for v in s.split(",")])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--table-runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--provider", default="cpu",
                        help="execution provider (cuda, ...); absent from the build: exit 7")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--round-auto", action="store_true",
                        help="also plan latency/flops 0.5 with --round-to auto (measured block)")
    args = parser.parse_args()
    try:  # a provider the build lacks: exit 7 with the reason
        select_providers([args.provider], import_ort())
    except OnnxPruneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(int(exc.exit_code))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        for name in args.models.split(","):
            for row in _model(name, args, pathlib.Path(tmp)):
                print(json.dumps(row), flush=True)
                rows.append(row)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            {"load_average": os.getloadavg(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
