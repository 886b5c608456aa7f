"""Learning-rate schedule within one fine-tuning run on the digits fixtures.

    PYTHONPATH=. .venv/bin/python benchmarks/finetune_schedule_digits.py [--seeds 0,1]

Each fixture is pruned once (``--target``, l1, no recovery, no fine-tuning), then
fine-tuned by distillation for ``--epochs`` on ``digits_train.npz`` with each schedule:
constant, cosine (the default), cosine after a linear warm-up over 10% of the steps.
Test accuracy on ``digits_test.npz``; prints a markdown table (docs/finetune.md).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

import numpy as np
import onnx

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onnxprune.compress import compress  # noqa: E402
from onnxprune.data import open_data  # noqa: E402
from onnxprune.graph import load_model, runtime  # noqa: E402
from onnxprune.training import finetune  # noqa: E402

TRAIN = ROOT / "fixtures" / "data" / "digits_train.npz"
TEST = ROOT / "fixtures" / "data" / "digits_test.npz"
MODELS = [(ROOT / "fixtures" / "models" / "digits_cnn.ts.onnx", 0.7),
          (ROOT / "fixtures" / "models" / "thirdparty" / "digits_lcnet.paddle.onnx", 0.6)]
SCHEDULES = {"constant": {"lr_schedule": "constant"}, "cosine (default)": {},
             "warm-up 10% + cosine": {"warmup": 0.1}}


def accuracy(model: onnx.ModelProto) -> float:
    test = np.load(TEST)
    scores = runtime.make_session(model).run(None, {"input": test["input"]})[0]
    return float((scores.argmax(axis=1) == test["labels"]).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--epochs", type=float, default=6)
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    print("| model | --target | pruned | " + " | ".join(SCHEDULES) + " |")
    print("|---|---|---|" + "---|" * len(SCHEDULES))
    with tempfile.TemporaryDirectory() as folder:
        for path, target in MODELS:
            if not path.exists():
                continue
            out = pathlib.Path(folder) / f"{path.stem}.pruned.onnx"
            compress(str(path), target, output=out, criterion="l1", recover="none",
                     steps=1, report=False)
            pruned = onnx.load(out)
            data = open_data(TRAIN, load_model(out).model)
            cells = []
            for settings in SCHEDULES.values():
                values = [accuracy(finetune(pruned, data, teacher=onnx.load(path),
                                            epochs=args.epochs, seed=seed, **settings).model)
                          for seed in seeds]
                cells.append(f"{100 * np.mean(values):.2f}%")
            print(f"| {path.name} | {target:g} | {100 * accuracy(pruned):.2f}% | "
                  + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
