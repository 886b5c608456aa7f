"""Data-free pruning on the fixture zoo: plain l1 without recovery, the data-free default
(l1 + bias folding on synthetic inputs), and the ``variation`` criterion without and with
the folding.

Measured on inputs the tool never saw: the digits test set (accuracy, a pretrained
model) and, for the random-weight zoo, fresh standard-normal inputs (seed 123) with the
fidelity module's task metric (agreement, else cosine similarity). Run:

    .venv/bin/python benchmarks/data_free_zoo.py [--target 0.3] [model ...]
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile

import onnx

from onnxprune import compress
from onnxprune.calibration.accuracy import task_metric
from onnxprune.calibration.fidelity import fidelity
from onnxprune.data import open_data, synthetic_source
from onnxprune.graph import load_model

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODELS = ROOT / "fixtures" / "models"
DEFAULT = ["digits_cnn.ts.onnx", "resnet_basic.ts.onnx", "mobilenetv2.ts.onnx",
           "vgg_bn.ts.onnx", "efficientnet_like.ts.onnx", "yolo_neck.ts.onnx",
           "keras_cnn.tf2onnx.onnx", "mlp.ts.onnx"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", default=DEFAULT)
    parser.add_argument("--target", type=float, default=0.3)
    args = parser.parse_args()
    combos = [("l1", "none"), ("l1", "auto"), ("variation", "none"), ("variation", "auto")]
    print("| model | target | " + " | ".join(f"{c} + {r}" for c, r in combos) + " |")
    print("|---|---|" + "---|" * len(combos))
    for name in args.models:
        path = MODELS / name
        ir_model = load_model(path).model
        if name.startswith("digits"):
            data = open_data(ROOT / "fixtures" / "data" / "digits_test.npz", ir_model)
        else:
            data = synthetic_source(ir_model, 64, seed=123)
        original = onnx.load(str(path))
        values = []
        with tempfile.TemporaryDirectory() as folder:
            for criterion, recover in combos:
                out = pathlib.Path(folder) / "p.onnx"
                compress(path, args.target, output=out, report=False, criterion=criterion,
                         recover=recover, round_to=1)  # as measured in docs/calibration.md
                metric = task_metric(fidelity(onnx.load(str(out)), original, data))
                values.append(f"{metric[0]} {metric[1]:.3f}")
        print(f"| {name} | {args.target} | " + " | ".join(values) + " |", flush=True)


if __name__ == "__main__":
    main()
