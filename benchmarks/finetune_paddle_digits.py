"""Progressive pruning with fine-tuning on the Paddle-pretrained digits classifier.

    PYTHONPATH=. .venv/bin/python benchmarks/finetune_paddle_digits.py [--targets 0.7,0.6]

``fixtures/models/thirdparty/digits_lcnet.paddle.onnx`` (Paddle2ONNX, opset 11, hardswish
as ``x * Clip(x + 3, 0, 6) / 6`` with Constant bounds, BN, SE blocks, ends in Softmax;
test accuracy 98.15%) is pruned with the defaults of ``compress`` with data: ``--steps 4``,
3 epochs of fine-tuning after each step on 90% of ``fixtures/data/digits_train.npz``
(10% held out: per-step metrics and early stopping), distillation without labels, and
the same with ``--loss ce``. Test accuracy on the 540 images of
``fixtures/data/digits_test.npz``, which the run never sees. Prints a markdown table
(docs/finetune.md) with the trainable share and the tensor the loss reads; a target the
planner cannot reach on this export is reported as such.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onnxprune.compress import compress  # noqa: E402
from onnxprune.errors import OnnxPruneError  # noqa: E402
from onnxprune.graph import runtime  # noqa: E402

MODEL = ROOT / "fixtures" / "models" / "thirdparty" / "digits_lcnet.paddle.onnx"
TRAIN = ROOT / "fixtures" / "data" / "digits_train.npz"
TEST = ROOT / "fixtures" / "data" / "digits_test.npz"


def accuracy(path: pathlib.Path) -> float:
    test = np.load(TEST)
    probabilities = runtime.make_session(str(path)).run(None, {"input": test["input"]})[0]
    return float((probabilities.argmax(axis=1) == test["labels"]).mean())


def run(target: float, loss: str, folder: pathlib.Path, seed: int,
        epochs: float | None = None) -> dict:
    out = folder / f"{loss}_{target}.onnx"
    started = time.perf_counter()
    try:
        result = compress(str(MODEL), target, output=out, steps=4, loss=loss, seed=seed,
                          data=str(TRAIN), report=False, finetune_epochs=epochs)
    except OnnxPruneError as exc:
        return {"target": target, "loss": loss, "error": str(exc)}
    last = result.steps[-1]
    return {"target": target, "loss": loss, "epochs": epochs or "default (3)",
            "achieved": result.achieved,
            "accuracy": accuracy(out), "trainable": last.get("trainable"),
            "reads": last.get("loss_reads"), "seconds": round(time.perf_counter() - started, 1),
            "steps": result.steps}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="0.7,0.6")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=float, default=None,
                    help="fine-tuning epochs per step (default: the tool's, 3)")
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args(argv)
    original = accuracy(MODEL)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for target in [float(t) for t in args.targets.split(",")]:
            for loss in ("distill", "ce"):
                rows.append(run(target, loss, pathlib.Path(folder), args.seed, args.epochs))
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "steps"}),
                      file=sys.stderr)
    print(f"original test accuracy {100 * original:.2f}%\n")
    print("| --target | loss | epochs/step | removed | test accuracy | drop (points) | "
          "trainable | loss reads | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['target']:g} | {row['loss']} | - | - | - | - | - | - | "
                  f"unreachable on this export: {row['error']} |")
            continue
        print(f"| {row['target']:g} | {row['loss']} | {row['epochs']} | "
              f"{100 * row['achieved']:.1f}% | "
              f"{100 * row['accuracy']:.2f}% | {100 * (original - row['accuracy']):.2f} | "
              f"{row['trainable']} | {row['reads']} | {row['seconds']} |")
    if args.json:
        args.json.write_text(json.dumps({"original": original, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
