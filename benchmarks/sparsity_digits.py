"""Unstructured / N:M sparsity and INT8 quantization of the digits CNN; QDQ pruning oracle.

    python benchmarks/sparsity_digits.py [--runs 300] [--skip-finetune] [--json out.json]

Everything runs through ``onnxprune.compress`` on ``fixtures/models/digits_cnn.ts.onnx``
with ``--data fixtures/data/digits_train.npz`` (1,257 images, all of them used:
``max_samples=2000``) and ``--eval-data fixtures/data/digits_test.npz`` (540 held-out
images). Prints the markdown tables of docs/sparsity.md:

1. one-shot sparsity (no fine-tuning): unstructured (global / per layer) at several
   targets and N:M patterns: test accuracy, gzip size of the .onnx;
2. progressive sparsity with masked fine-tuning (``steps=4``, 2 epochs per step,
   ``onnxprune.training.finetune``); rows say "not available" when this build has no
   ``onnxprune.training``;
3. pruned + INT8 (static QDQ, per-channel, calibrated on the training images): file
   and gzip size, test accuracy and single-thread CPU latency (p50, batch 1, all models
   timed interleaved, ``--runs`` runs) for original, pruned and pruned+int8;
4. the QDQ masked-equivalence measurements behind ``onnxprune.quantize.tolerance``:
   the QDQ fixtures pruned structurally (l1 and random scores, targets 0.3/0.5/0.7)
   against their masked twin on 256 inputs (2x standard normal; for digits also
   the test images), and a control with one per-channel weight scale mis-sliced.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile

import numpy as np

from onnxprune.compress import compress
from onnxprune.errors import RuntimeMissingError

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL = ROOT / "fixtures" / "models" / "digits_cnn.ts.onnx"
QDQ = ROOT / "fixtures" / "models" / "quantized"
TRAIN = str(ROOT / "fixtures" / "data" / "digits_train.npz")
TEST = str(ROOT / "fixtures" / "data" / "digits_test.npz")
COMMON = {"data": TRAIN, "eval_data": TEST, "max_samples": 2000}


def _row(result) -> dict:
    models = {m["model"]: m for m in result.evaluation["models"]}
    return {"achieved": result.achieved, "models": models,
            "layers": [(r["layer"], r["sparsity"]) for r in (result.sparsity or {})
                       .get("layers", [])],
            "steps": result.steps, "quantization": result.quantization}


def one_shot(tmp: pathlib.Path) -> list[dict]:
    runs = [("unstructured", "global", t) for t in (0.5, 0.7, 0.8, 0.9)]
    runs += [("unstructured", "uniform", t) for t in (0.5, 0.9)]
    runs += [("n:m", "2:4", None), ("n:m", "1:4", None)]
    rows = []
    for mode, scope, target in runs:
        extra = {"scope": scope} if mode == "unstructured" else {"nm": scope}
        result = compress(MODEL, target, output=tmp / "o.onnx", mode=mode, report=False,
                          **extra, **COMMON)
        rows.append({"mode": mode, "setting": scope, "target": target, **_row(result),
                     "gzip_before": result.sparsity["gzip_before"],
                     "gzip_after": result.sparsity["gzip_after"]})
    return rows


def finetuned(tmp: pathlib.Path) -> list[dict]:
    rows = []
    for mode, setting, target in (("unstructured", "global", 0.9), ("n:m", "2:4", None)):
        extra = {"scope": setting} if mode == "unstructured" else {"nm": setting}
        try:
            result = compress(MODEL, target, output=tmp / "f.onnx", mode=mode, steps=4,
                              finetune_epochs=2.0, lr=1e-3, report=False,
                              **extra, **COMMON)
        except RuntimeMissingError as exc:
            rows.append({"mode": mode, "setting": setting, "target": target,
                         "missing": str(exc)})
            continue
        rows.append({"mode": mode, "setting": setting, "target": target, **_row(result),
                     "gzip_before": result.sparsity["gzip_before"],
                     "gzip_after": result.sparsity["gzip_after"]})
    return rows


def quantized(tmp: pathlib.Path, runs: int) -> list[dict]:
    from onnxprune.benchmark import benchmark

    rows = []
    for label, kwargs in (("n:m 2:4", {"mode": "n:m"}),
                          ("unstructured 0.5", {"mode": "unstructured", "target": 0.5}),
                          ("structured 0.3, round_to 8",
                           {"target": 0.3, "round_to": 8, "steps": 1})):
        float_path, int8_path = tmp / "float.onnx", tmp / "int8.onnx"
        compress(MODEL, output=float_path, report=False, **kwargs, **COMMON)
        result = compress(MODEL, output=int8_path, quantize="int8", report=False, **kwargs,
                          **COMMON)
        timed = benchmark([str(MODEL), str(float_path), str(int8_path)], providers=("cpu",),
                          threads=1, batch=(1, 32), runs=runs, warmup=10, memory=False)
        latency = {}
        for config in timed["results"]:
            for name, model in zip(("original", "pruned", "pruned+int8"), config["models"]):
                latency[(name, config["batch"])] = model["latency"]["p50_ms"]
            if config.get("warning"):
                latency[("warning", config["batch"])] = config["warning"]
        rows.append({"pruning": label, **_row(result), "latency": latency})
    return rows


def qdq_oracle() -> list[dict]:
    import onnx
    import onnx_ir as ir
    import onnxruntime as ort

    from onnxprune.analysis import analyze
    from onnxprune.graph import load_model
    from onnxprune.graph.runtime import to_runtime_proto
    from onnxprune.importance import score_units
    from onnxprune.planning import PlanOptions, make_plan
    from onnxprune.rewrite import apply_plan, channel_masks, masked_model

    def session(model):
        options = ort.SessionOptions()
        options.log_severity_level = 3
        return ort.InferenceSession(to_runtime_proto(model).SerializeToString(), options,
                                    providers=["CPUExecutionProvider"])

    rows = []
    for name in ("resnet_basic", "digits_cnn"):
        for criterion in ("l1", "random"):
            for target in (0.3, 0.5, 0.7):
                model = load_model(QDQ / f"{name}.qdq.onnx").model
                original = ir.serde.serialize_model(model)
                analysis = analyze(model)
                plan = make_plan(analysis, score_units(analysis, criterion, 1),
                                 PlanOptions(target))
                masks = channel_masks(analysis, plan.removed_units)
                apply_plan(analysis, plan.removed_units)
                pruned = ir.serde.serialize_model(analysis.model)
                shape = [d.dim_value for d in original.graph.input[0].type.tensor_type
                         .shape.dim][1:]
                inputs = [("2x normal", np.random.default_rng(0).standard_normal(
                    [256, *shape]).astype(np.float32) * 2)]
                if name == "digits_cnn":
                    inputs.append(("test images", np.load(TEST)["input"]))
                twin, new = session(masked_model(original, masks)), session(pruned)
                for label, x in inputs:
                    want = twin.run(None, {"input": x})[0]
                    got = new.run(None, {"input": x})[0]
                    diff = np.abs(got.astype(np.float64) - want)
                    row = {"model": name, "criterion": criterion, "target": target,
                           "inputs": label, "max_rel": float(diff.max() / np.abs(want).max()),
                           "differing": float((diff > 0).mean())}
                    scales = [t for t in pruned.graph.initializer
                              if t.name.endswith("weight_scale") or
                              (t.name.endswith("_scale") and len(t.dims) == 1 and
                               t.dims[0] > 1 and "quantized" not in t.name)]
                    bad = onnx.ModelProto()
                    bad.CopyFrom(pruned)
                    target_scale = next(t for t in bad.graph.initializer
                                        if t.name == scales[0].name)
                    array = onnx.numpy_helper.to_array(target_scale)
                    target_scale.CopyFrom(onnx.numpy_helper.from_array(np.roll(array, 1),
                                                                       target_scale.name))
                    wrong = session(bad).run(None, {"input": x})[0]
                    row["mis_sliced_scale_rel"] = float(np.abs(wrong - want).max() /
                                                        np.abs(want).max())
                    rows.append(row)
    return rows


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--skip-finetune", action="store_true")
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args(argv)
    out: dict = {}
    with tempfile.TemporaryDirectory() as folder:
        tmp = pathlib.Path(folder)
        out["one_shot"] = one_shot(tmp)
        out["finetuned"] = [] if args.skip_finetune else finetuned(tmp)
        out["int8"] = quantized(tmp, args.runs)
    out["qdq_oracle"] = qdq_oracle()
    original = out["one_shot"][0]["models"]["original"]
    print(f"original: test accuracy {_pct(original['accuracy'])}%, "
          f"{original['file_bytes']:,} bytes, gzip {original['gzip_bytes']:,} bytes\n")
    print("### One-shot (no fine-tuning)\n")
    print("| mode | setting | zero weights | test accuracy | gzip bytes | gzip ratio |")
    print("|---|---|---|---|---|---|")
    for r in out["one_shot"]:
        pruned = r["models"]["pruned"]
        print(f"| {r['mode']} | {r['setting']} | {_pct(r['achieved'])}% | "
              f"{_pct(pruned['accuracy'])} | {r['gzip_after']:,} | "
              f"{r['gzip_before'] / r['gzip_after']:.2f}x |")
    print("\nper-layer sparsity, unstructured global 0.9: " + ", ".join(
        f"{layer.split('/')[-2]} {100 * s:.1f}%" for layer, s in out["one_shot"][3]["layers"]))
    print("\n### Progressive with masked fine-tuning (steps=4, 2 epochs per step)\n")
    print("| mode | setting | zero weights | test accuracy | gzip bytes | accuracy per step |")
    print("|---|---|---|---|---|---|")
    for r in out["finetuned"]:
        if "missing" in r:
            print(f"| {r['mode']} | {r['setting']} | not available | - | - | "
                  f"{r['missing'][:80]}... |")
            continue
        steps = " / ".join(_pct(s.get("accuracy")) for s in r["steps"])
        print(f"| {r['mode']} | {r['setting']} | {_pct(r['achieved'])}% | "
              f"{_pct(r['models']['pruned']['accuracy'])} | {r['gzip_after']:,} | {steps} |")
    print("\n### Pruned + INT8 (static QDQ, per-channel), single-thread CPU latency (p50)\n")
    print("| pruning | model | file bytes | gzip bytes | test accuracy | batch 1 | batch 32 |")
    print("|---|---|---|---|---|---|---|")
    warnings = set()
    for r in out["int8"]:
        lat = r["latency"]
        for name, m in r["models"].items():
            cells = []
            for batch in (1, 32):
                ms, base = lat[(name, batch)], lat[("original", batch)]
                cells.append(f"{1000 * ms:.1f} us ({base / ms:.2f}x)")
            print(f"| {r['pruning']} | {name} | {m['file_bytes']:,} | {m['gzip_bytes']:,} | "
                  f"{_pct(m['accuracy'])} | {cells[0]} | {cells[1]} |")
        warnings |= {v for k, v in lat.items() if k[0] == "warning"}
        r["latency"] = {f"{k[0]}@{k[1]}": v for k, v in lat.items()}
    for warning in sorted(warnings):
        print(f"\nwarning: {warning}")
    print("\n### QDQ pruning vs. masked twin (structural, fixtures/models/quantized)\n")
    print("| model | scores | target | inputs | max rel. diff | elements differing | "
          "mis-sliced scale |")
    print("|---|---|---|---|---|---|---|")
    for r in out["qdq_oracle"]:
        print(f"| {r['model']} | {r['criterion']} | {r['target']} | {r['inputs']} | "
              f"{r['max_rel']:.4f} | {100 * r['differing']:.2f}% | "
              f"{r['mis_sliced_scale_rel']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
