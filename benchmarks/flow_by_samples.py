"""When does progressive fine-tuning beat one-shot pruning with the best recovery?

On the digits CNN (pretrained, fixtures/models/digits_cnn.ts.onnx), ``compress --target T
--steps 4`` (3 epochs of distillation per step) with N training samples of
fixtures/data/digits_train.npz, measured on the 540 held-out test samples: the
progressive result and the one-shot candidate (taylor scores, ``--recover auto``: the
better of bias/lsq on the same split) are both in the result's ``flow``. Run:

    .venv/bin/python benchmarks/flow_by_samples.py [--target 0.5] [--sizes 32,128,512,1000]

The numbers recorded in docs/finetune.md set ``PROGRESSIVE_MIN_SAMPLES``
(onnxprune/training/outcome.py).
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile
import time

import numpy as np

from onnxprune import compress

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL = ROOT / "fixtures" / "models" / "digits_cnn.ts.onnx"
TRAIN = ROOT / "fixtures" / "data" / "digits_train.npz"
TEST = ROOT / "fixtures" / "data" / "digits_test.npz"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--sizes", default="32,128,512,1000")
    args = parser.parse_args()
    print("| samples | target | progressive | one-shot + best recovery | seconds |")
    print("|---|---|---|---|---|")
    train = dict(np.load(TRAIN))
    order = np.random.default_rng(0).permutation(len(train["labels"]))
    folder = pathlib.Path(tempfile.mkdtemp(prefix="flow-"))
    for size in (int(s) for s in args.sizes.split(",")):
        subset = folder / f"train{size}.npz"
        np.savez(subset, **{k: v[order[:size]] for k, v in train.items()})
        started = time.perf_counter()
        result = compress(MODEL, args.target, data=str(subset), eval_data=str(TEST), steps=4,
                          accept_drop=True, write=False, report=False,
                          round_to=1)  # as measured in docs/finetune.md
        flow = result.flow
        print(f"| {size} | {args.target} | {flow['progressive']:.4f} | {flow['one_shot']:.4f} "
              f"| {time.perf_counter() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
