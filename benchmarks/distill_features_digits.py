"""Does intermediate-feature distillation (``--distill-features on``) help on the digits
fixtures? Test accuracy after ``compress --steps 4`` (distillation, no labels) with and
without it.

    PYTHONPATH=. .venv/bin/python benchmarks/distill_features_digits.py [--seeds 0]

Models: ``fixtures/models/digits_cnn.ts.onnx`` at ``--target 0.7`` and (when present)
``fixtures/models/thirdparty/digits_lcnet.paddle.onnx`` at 0.6 (0.7 is beyond what the
planner reaches on that export). Training data ``digits_train.npz`` (10% held out for
the per-step metrics and early stopping), test accuracy on ``digits_test.npz``. Prints a
markdown table (docs/finetune.md); ``distill_features="auto"`` is on only if it helped.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onnxprune.compress import compress  # noqa: E402
from onnxprune.graph import runtime  # noqa: E402

TRAIN = ROOT / "fixtures" / "data" / "digits_train.npz"
TEST = ROOT / "fixtures" / "data" / "digits_test.npz"
MODELS = [(ROOT / "fixtures" / "models" / "digits_cnn.ts.onnx", 0.7),
          (ROOT / "fixtures" / "models" / "thirdparty" / "digits_lcnet.paddle.onnx", 0.6)]


def accuracy(path: pathlib.Path) -> float:
    test = np.load(TEST)
    scores = runtime.make_session(str(path)).run(None, {"input": test["input"]})[0]
    return float((scores.argmax(axis=1) == test["labels"]).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", default="0")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    print("| model | --target | original | features off | features on |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for model, target in MODELS:
            if not model.exists():
                continue
            cells = []
            for mode in ("off", "on"):
                values = []
                for seed in seeds:
                    out = pathlib.Path(folder) / f"{model.stem}_{mode}_{seed}.onnx"
                    compress(str(model), target, output=out, steps=4, seed=seed,
                             data=str(TRAIN), distill_features=mode, report=False)
                    values.append(accuracy(out))
                    print(f"{model.name} {mode} seed {seed}: {values[-1]:.4f}", file=sys.stderr)
                cells.append(f"{100 * np.mean(values):.2f}%")
            print(f"| {model.name} | {target:g} | {100 * accuracy(model):.2f}% | "
                  f"{cells[0]} | {cells[1]} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
