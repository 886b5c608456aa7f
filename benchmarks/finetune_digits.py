"""Progressive pruning with fine-tuning on the digits CNN: test accuracy at 70% params removed.

    PYTHONPATH=. .venv/bin/python benchmarks/finetune_digits.py [--seeds 0,1,2] [--json out.json]

``fixtures/models/digits_cnn.ts.onnx`` (40,394 parameters, test accuracy 98.70%) is
pruned to ``--target`` (0.7) of its parameters with training data
``fixtures/data/digits_train.npz`` (1,257 images) only; accuracy is measured on the 540
images of ``fixtures/data/digits_test.npz``, passed as ``--eval-data`` (it only adds the
per-step fidelity columns; with it all of the training data trains, nothing is held
out). Rows, each for every seed:

1. one-shot, no fine-tuning (``compress --target 0.7 --steps 1 --data train``: taylor +
   bias);
2. one-shot + fine-tuning for as many epochs as the progressive run uses in total
   (``--steps 1 --finetune-epochs 12``);
3. the documented run, the defaults of ``compress`` with data (``--steps 4``, cubic
   schedule, 3 epochs of distillation from the original after each step, AdamW, lr 1e-3,
   cosine, temperature 4, batch 32): ``onnxprune compress digits_cnn.ts.onnx --target 0.7
   --steps 4 --data digits_train.npz --eval-data digits_test.npz``
4. the same with ``--loss ce`` (the training labels instead of the original's outputs).

Prints markdown tables (docs/finetune.md): accuracy per row (mean, min-max over seeds)
and the per-step metrics of the documented run for the first seed.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL = ROOT / "fixtures" / "models" / "digits_cnn.ts.onnx"
TRAIN = ROOT / "fixtures" / "data" / "digits_train.npz"
TEST = ROOT / "fixtures" / "data" / "digits_test.npz"

ROWS = {
    "one-shot, no fine-tuning": {"steps": 1},
    "one-shot + 12 epochs distillation": {"steps": 1, "finetune_epochs": 12},
    "--steps 4 (distillation, defaults)": {"steps": 4},
    "--steps 4 --loss ce": {"steps": 4, "loss": "ce"},
}


def accuracy(path) -> float:
    from onnxprune.graph.runtime import make_session

    test = np.load(TEST)
    logits = make_session(str(path)).run(None, {"input": test["input"]})[0]
    return float((logits.argmax(axis=1) == test["labels"]).mean())


def run(label: str, options: dict, seed: int, target: float, folder: pathlib.Path) -> dict:
    from onnxprune.compress import compress

    out = folder / f"{len(options)}-{seed}-{label[:8].replace(' ', '_')}.onnx"
    started = time.perf_counter()
    result = compress(MODEL, target, output=out, data=str(TRAIN), eval_data=str(TEST),
                      seed=seed, report=False, **options)
    return {"row": label, "seed": seed, "accuracy": accuracy(out), "achieved": result.achieved,
            "params": result.params_after, "seconds": round(time.perf_counter() - started, 1),
            "steps": result.steps}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", type=float, default=0.7)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    original = accuracy(MODEL)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, options in ROWS.items():
            for seed in seeds:
                results.append(run(label, options, seed, args.target, pathlib.Path(tmp)))
                print(f"{label} seed {seed}: {100 * results[-1]['accuracy']:.2f}% "
                      f"({results[-1]['seconds']} s)", file=sys.stderr)
    print(f"original test accuracy: {100 * original:.2f}%; target {args.target} of params, "
          f"seeds {args.seeds}")
    print("| run | test accuracy % (mean, min-max) | params removed | seconds (mean) |")
    print("|---|---|---|---|")
    for label in ROWS:
        rows = [r for r in results if r["row"] == label]
        acc = [100 * r["accuracy"] for r in rows]
        print(f"| {label} | {statistics.mean(acc):.2f} ({min(acc):.2f}-{max(acc):.2f}) | "
              f"{statistics.mean(r['achieved'] for r in rows):.3f} | "
              f"{statistics.mean(r['seconds'] for r in rows):.1f} |")
    documented = next(r for r in results if r["row"] == "--steps 4 (distillation, defaults)")
    keys = ["step", "target", "achieved", "params", "accuracy_pruned", "accuracy", "kl",
            "loss", "seconds"]
    print(f"\nper step, documented run, seed {documented['seed']} (accuracy on the test set):")
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for step in documented["steps"]:
        cells = [step.get(k) for k in keys]
        print("| " + " | ".join(f"{c:.4g}" if isinstance(c, float) else str(c)
                                for c in cells) + " |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"original": original,
                                                       "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
