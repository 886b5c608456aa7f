"""``--round-to auto`` (per group, measured) against the default multiples of 8 channels.

    python benchmarks/bench_round_auto.py [--models mobilenetv2,...,digits,paddle_digits]
        [--targets 0.3,0.5] [--runs 60] [--repeats 3] [--threads 1] [--provider cpu]
        [--json out.json]

For every model (the full-width MobileNetV2-, MobileNetV3-small-, EfficientNet-B0- and
ResNet-18-like graphs of ``benchmarks/mobile_like.py`` and the ResNet-50-like graph of
``benchmarks/resnet50_like.py`` at 1x3x224x224, batch 1; the pretrained digits CNN and the
Paddle2ONNX digits LCNet of ``fixtures/models`` at batch 256 of 8x8, where a batch-1 run
is only call overhead):

1. plan with ``metric="flops"`` and ``metric="latency"`` at every ``--targets`` value,
   once with the default rounding (multiples of 8 channels) and once with the per-group
   ``--round-to auto`` blocks (``onnxprune.benchmark.layer_steps.auto_group_round``) and,
   for reference, with the one block per provider of the earlier ``auto``
   (``onnxprune.benchmark.round_probe``: ``block`` in the rows; L1
   importance, data-free, no recovery, no fine-tuning; the probe and the latency table
   are measured once per model and then read from the cache, and what they cost is in
   the rows);
2. time the original and all pruned variants **interleaved in one process**, run by run
   (``onnxprune.benchmark.measure_interleaved`` on sessions like ``onnxprune bench``'s:
   ``--provider``, ``--threads``, graph optimization ``all``; 5 warm-up rounds, then as
   many rounds as fit in ``--seconds``, at least ``--runs``, at most ``--max-runs``),
   ``--repeats`` times in separate batches; a row's ``measured`` is the ratio of median
   latencies pruned/original per batch, and ``auto_over_8`` the median (and quartiles)
   over the runs of a batch of the per-run ratio of the auto plan's latency to the
   default plan's in the same round (below 1: auto is faster; ``block_over_8``
   likewise). Per-run pairs cancel the load swings of a shared machine that a ratio of
   medians over a whole batch does not. A byte-identical copy of the original runs in
   every batch too: ``control_copy_over_original`` (the same statistic, copy/original)
   is the noise of the method in that batch;
3. on the digits models also the test accuracy (``fixtures/data/digits_test.npz``).

A ``--provider`` the installed ONNX Runtime lacks (``cuda`` on a CPU build) exits with
code 7 and says so. The numbers are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile

import numpy as np
import onnx
import onnx_ir as ir

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_latency import digits_accuracy, importance_kept
from mobile_like import BUILDERS
from mobile_like import build as build_mobile
from resnet50_like import build as build_resnet

from onnxprune.analysis import analyze
from onnxprune.benchmark import measure_interleaved, select_providers
from onnxprune.benchmark.latency_check import plan_latency
from onnxprune.benchmark.latency_slices import default_input_shapes
from onnxprune.benchmark.latency_table import LatencySettings
from onnxprune.benchmark.layer_steps import auto_group_round
from onnxprune.benchmark.round_probe import auto_block
from onnxprune.benchmark.session import make_runner, open_session
from onnxprune.errors import OnnxPruneError, RuntimeMissingError
from onnxprune.graph import load_model
from onnxprune.graph.runtime import dummy_inputs, import_ort, to_runtime_proto
from onnxprune.importance import score_units
from onnxprune.planning import CostModel, PlanOptions, make_plan
from onnxprune.rewrite import apply_plan

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = {"digits": ROOT / "fixtures" / "models" / "digits_cnn.ts.onnx",
            "paddle_digits": ROOT / "fixtures" / "models" / "thirdparty" /
            "digits_lcnet.paddle.onnx"}
MODELS = [*BUILDERS, "resnet50", *FIXTURES]


def _source(name: str, tmp: pathlib.Path) -> tuple[pathlib.Path, dict | None]:
    if name in FIXTURES:
        return FIXTURES[name], {"input": (256, 1, 8, 8)}
    path = tmp / f"{name}.onnx"
    onnx.save(build_resnet(1) if name == "resnet50" else build_mobile(name), path)
    return path, None


def _prune(path: pathlib.Path, metric: str, target: float, rounding: str, out: pathlib.Path,
           settings: LatencySettings, shapes: dict | None) -> dict:
    """One plan (step 1): the row, with ``path`` set when the plan was written."""
    row: dict = {"metric": metric, "target": target, "round_to": rounding}
    loaded = load_model(path)
    original = ir.serde.serialize_model(loaded.model)
    analysis = analyze(loaded.model)
    scores = score_units(analysis, "l1", 0)
    options = PlanOptions(target, metric, round_to=None)
    if rounding == "auto":
        pairs, info = auto_group_round(to_runtime_proto(original), analysis, settings, shapes)
        options = PlanOptions(target, metric, round_to=None, group_round=pairs)
        row["probe"] = info
    elif rounding == "block":  # the one block per provider of round_probe (two probe convs)
        probe = auto_block(settings)
        options = PlanOptions(target, metric, round_to=probe["block"])
        row["block"] = probe["block"]
    try:
        if metric == "latency":
            plan, section = plan_latency(original, analysis, scores, options, settings, shapes)
            row["predicted"] = section["predicted"]["ratio"]
            row["table_cache_hit"] = section["cache_hit"]
        else:
            plan = make_plan(analysis, scores, options)
    except OnnxPruneError as exc:
        row["error"] = str(exc)
        return row
    cost = CostModel(analysis)
    row["macs_ratio"] = round(cost.evaluate(plan.removed_units).macs / cost.original.macs, 4)
    row["importance_kept"] = round(importance_kept(analysis, scores, plan.removed_units), 4)
    row["kept"] = sorted(plan.kept.values())
    apply_plan(analysis, plan.removed_units)
    ir.save(analysis.model, out)
    row["path"] = str(out)
    return row


def _paired(samples: list[float], reference: list[float]) -> dict:
    """Median and quartiles of the per-run ratios ``samples[k] / reference[k]``."""
    ratios = np.asarray(samples) / np.asarray(reference)
    q25, q50, q75 = (round(float(v), 4) for v in np.percentile(ratios, [25, 50, 75]))
    return {"median": q50, "q25": q25, "q75": q75}


def _batch(paths: list, args: argparse.Namespace, shapes: dict) -> tuple[list, int]:
    """One interleaved batch: per-model samples (seconds) and the number of runs."""
    ort = import_ort()
    choice = select_providers([args.provider], ort)[0]
    sessions = [open_session(ort, str(p), choice, args.threads) for p in paths]
    feeds = dummy_inputs(sessions[0], seed=0, shapes=shapes)
    runners = [make_runner(ort, s, choice, feeds) for s in sessions]
    warm = measure_interleaved(runners, 5)
    per_round = sum(float(np.median(w)) for w in warm)
    runs = int(min(args.max_runs, max(args.runs, args.seconds / max(per_round, 1e-6))))
    return measure_interleaved(runners, runs), runs


def _time(source: pathlib.Path, rows: list[dict], args: argparse.Namespace,
          shapes: dict | None) -> None:
    """Step 2: every written plan and the original, interleaved, ``--repeats`` batches."""
    timed = [r for r in rows if "path" in r]
    shapes = shapes or default_input_shapes(onnx.load(source))
    for row in timed:
        row["measured"], row["speedup_quartiles"] = [], []
    by_plan = {(r["metric"], r["target"], r["round_to"]): i for i, r in enumerate(timed)}
    bases, runs, control = [], [], []
    copy = pathlib.Path(timed[0]["path"]).with_name(f"copy.{source.name}") if timed else None
    if copy is not None:
        shutil.copyfile(source, copy)
    for _ in range(args.repeats):
        samples, count = _batch([source, copy, *[r["path"] for r in timed]], args, shapes)
        runs.append(count)
        base = float(np.median(samples[0]))
        bases.append(round(base * 1e3, 4))
        control.append(_paired(samples[1], samples[0]))
        for i, row in enumerate(timed):
            mine = samples[i + 2]
            row["measured"].append(round(float(np.median(mine)) / base, 4))
            row["speedup_quartiles"].append(_paired(samples[0], mine))
            default = by_plan.get((row["metric"], row["target"], "8"))
            if row["round_to"] != "8" and default is not None:
                row.setdefault(f"{row['round_to']}_over_8", []).append(
                    _paired(mine, samples[default + 2]))
    for row in rows:
        row["original_p50_ms"], row["runs"] = bases, runs
        row["control_copy_over_original"] = control


def _model(name: str, args: argparse.Namespace, tmp: pathlib.Path) -> list[dict]:
    source, shapes = _source(name, tmp)
    settings = LatencySettings(provider=args.provider, threads=args.threads,
                               runs=args.table_runs, cache=args.cache or str(tmp / "cache"))
    rows = []
    for metric in ("flops", "latency"):
        for target in args.targets:
            for rounding in args.roundings:
                out = tmp / f"{name}.{metric}{target}.r{rounding}.onnx"
                rows.append(_prune(source, metric, target, rounding, out, settings, shapes))
    _time(source, rows, args, shapes)
    for row in rows:
        row["model"] = name
        if name in FIXTURES and "path" in row:
            row["accuracy"] = digits_accuracy(row["path"])
        row.pop("path", None)
    if name in FIXTURES:
        rows.append({"model": name, "metric": "original", "accuracy": digits_accuracy(str(source))})
    return rows


def _check_provider(provider: str) -> None:
    """A provider the build lacks is a RuntimeMissingError (exit 7) naming the build."""
    choice = select_providers([provider], import_ort())[0]
    if not choice.available:
        raise RuntimeMissingError(f"--provider {provider}: {choice.reason}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--targets", default="0.3,0.5",
                        type=lambda s: [float(v) for v in s.split(",")])
    parser.add_argument("--runs", type=int, default=60, help="at least this many runs")
    parser.add_argument("--max-runs", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=40.0,
                        help="runs per batch: as many as fit in about this time")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--table-runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--provider", default="cpu")
    parser.add_argument("--roundings", default="8,auto,block", type=lambda s: s.split(","),
                        help="8: the default multiples of 8 channels; auto: per group "
                             "(layer_steps); block: one measured block (round_probe)")
    parser.add_argument("--cache", help="latency/probe cache folder (default: a fresh one)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    try:
        _check_provider(args.provider)
        rows, loads = [], []
        with tempfile.TemporaryDirectory(prefix="bench-round-auto-") as tmp:
            for name in args.models.split(","):
                loads.append(os.getloadavg())
                for row in _model(name, args, pathlib.Path(tmp)):
                    row["load_average_before"] = loads[-1]
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    except OnnxPruneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(int(exc.exit_code))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            {"load_average_end": os.getloadavg(), "cpu_count": os.cpu_count(),
             "args": {k: v for k, v in vars(args).items()}, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
