"""Test accuracy of the digits CNN pruned to half its parameters, without fine-tuning.

    python benchmarks/calibration_digits.py [--target 0.5] [--samples 512] [--json out.json]

For every criterion (random, l1, activation, taylor) and recovery (none, bias, lsq),
``onnxprune.compress`` prunes ``fixtures/models/digits_cnn.ts.onnx`` to ``--target`` of
its parameters with calibration data ``fixtures/data/digits_train.npz`` (a seeded
random ``--samples`` of the 1,257 training images) and the accuracy on the 540 test
images of ``fixtures/data/digits_test.npz`` is measured with ONNX Runtime. ``random``
is repeated over seeds 0-4 (mean, min, max). Two more rows use
``--allocation sensitivity`` (ratios 0.1,0.3,0.5,0.7,0.9). One last line prunes with
``taylor`` scores computed from the *given* labels (``use_labels=True``) instead of labels
sampled from the model. Prints a markdown table (the one in docs/calibration.md).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

import numpy as np

from onnxprune.compress import compress
from onnxprune.graph.runtime import make_session

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL = ROOT / "fixtures" / "models" / "digits_cnn.ts.onnx"
TRAIN = ROOT / "fixtures" / "data" / "digits_train.npz"
TEST = ROOT / "fixtures" / "data" / "digits_test.npz"
RECOVERIES = ("none", "bias", "lsq")


def accuracy(path: str | pathlib.Path) -> float:
    test = np.load(TEST)
    logits = make_session(str(path)).run(None, {"input": test["input"]})[0]
    return float((logits.argmax(axis=1) == test["labels"]).mean())


def run_one(criterion: str, recover: str, seed: int, target: float, samples: int,
            allocation: str, tmp: pathlib.Path) -> dict:
    out = tmp / f"{criterion}-{recover}-{seed}-{allocation}.onnx"
    started = time.perf_counter()
    result = compress(MODEL, target, output=out, criterion=criterion, recover=recover,
                      seed=seed, data=str(TRAIN), max_samples=samples, allocation=allocation,
                      steps=1, sensitivity_ratios=(0.1, 0.3, 0.5, 0.7, 0.9))
    return {"criterion": criterion, "recover": recover, "seed": seed, "allocation": allocation,
            "accuracy": accuracy(out), "achieved": result.achieved,
            "seconds": round(time.perf_counter() - started, 2)}


def taylor_with_given_labels(target: float, samples: int) -> float:
    """Accuracy without recovery when taylor uses cross-entropy on the data's labels."""
    import onnx_ir as ir

    from onnxprune.analysis import analyze
    from onnxprune.data import open_data
    from onnxprune.graph import load_model
    from onnxprune.importance.data_criteria import taylor_scores
    from onnxprune.planning import PlanOptions, make_plan
    from onnxprune.rewrite import apply_plan

    loaded = load_model(MODEL)
    data = open_data(TRAIN, loaded.model).take(samples, seed=0)
    analysis = analyze(loaded.model)
    scores = taylor_scores(analysis, data, 32, seed=0, use_labels=True)
    apply_plan(analysis, make_plan(analysis, scores, PlanOptions(target)).removed_units)
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "labels.onnx"
        ir.save(analysis.model, path)
        return accuracy(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", type=float, default=0.5)
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = pathlib.Path(folder)
        plans = [("random", s, "threshold") for s in range(5)]
        plans += [(c, 0, "threshold") for c in ("l1", "activation", "taylor")]
        plans += [(c, 0, "sensitivity") for c in ("l1", "taylor")]
        for criterion, seed, allocation in plans:
            for recover in RECOVERIES:
                rows.append(run_one(criterion, recover, seed, args.target, args.samples,
                                    allocation, tmp))
    original = accuracy(MODEL)
    print(f"original test accuracy: {100 * original:.2f}%  (target {args.target} of params, "
          f"{args.samples} calibration samples)\n")
    print("| criterion | allocation | none | bias | lsq |")
    print("|---|---|---|---|---|")
    for criterion, allocation in [("random", "threshold"), ("l1", "threshold"),
                                  ("activation", "threshold"), ("taylor", "threshold"),
                                  ("l1", "sensitivity"), ("taylor", "sensitivity")]:
        cells = []
        for recover in RECOVERIES:
            accs = [r["accuracy"] for r in rows if (r["criterion"], r["recover"],
                                                    r["allocation"]) ==
                    (criterion, recover, allocation)]
            cell = f"{100 * np.mean(accs):.2f}"
            if len(accs) > 1:
                cell += f" ({100 * min(accs):.1f}-{100 * max(accs):.1f})"
            cells.append(cell)
        label = criterion + (" (seeds 0-4: mean (min-max))" if criterion == "random" else "")
        print(f"| {label} | {allocation} | " + " | ".join(cells) + " |")
    labelled = taylor_with_given_labels(args.target, args.samples)
    print(f"\ntaylor with the given labels (use_labels=True), threshold, none: "
          f"{100 * labelled:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"original": original, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
