#!/usr/bin/env python
"""One fine-tuning step of onnxprune against the same step in the source framework.

For a pretrained fixture, the first ``--batch`` samples of ``digits_train`` (in order, no
augmentation), cross-entropy on the logits with the labels, AdamW (lr 1e-3, no weight
decay): compare the loss, every parameter's gradient norm and the norm of its first
update. Same loss value and gradient norms within ``--rtol`` means the training graph
(loss on the pre-Softmax logits, BatchNormalization mode, no dropout) is the framework's.

Frameworks:

* ``torch`` (default): ``fixtures/models/digits_cnn.ts.onnx`` (BN folded into the convs,
  ends in logits). The reference runs in a torch venv (``--torch-python``, default
  ``/work/venvs/torch/bin/python``; ``pip install torch==2.13.0 numpy onnx``): the
  ``DigitsCNN`` of ``fixtures/train_digits_cnn.py`` rebuilt from the ONNX initializers.
* ``paddle``: ``fixtures/models/thirdparty/digits_lcnet.paddle.onnx`` against
  ``fixtures/models/thirdparty/reference/digits_lcnet_step.json`` (Paddle's CE loss and
  per-parameter gradient norms on the same batch, BN in train and eval mode; produced
  by the Paddle fixture branch). Until that file exists this prints onnxprune's side only.

Usage::

    .venv/bin/python benchmarks/finetune_vs_framework.py [--framework torch|paddle]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

import onnx

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from onnxprune.data import open_data  # noqa: E402
from onnxprune.graph import load_model  # noqa: E402
from onnxprune.training.finetune import first_step  # noqa: E402

DIGITS = ROOT / "fixtures" / "models" / "digits_cnn.ts.onnx"
PADDLE = ROOT / "fixtures" / "models" / "thirdparty" / "digits_lcnet.paddle.onnx"
PADDLE_REF = ROOT / "fixtures" / "models" / "thirdparty" / "reference" / "digits_lcnet_step.json"
TRAIN = ROOT / "fixtures" / "data" / "digits_train.npz"
UPDATE_RTOL = 0.05

TORCH_STEP = r'''
import json, sys
import numpy as np, onnx, torch
from onnx import numpy_helper
from torch import nn
model_path, data_path, batch, lr = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
proto = onnx.load(model_path)
inits = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in proto.graph.initializer}
layers, names = [], []
for node in proto.graph.node:
    if node.op_type == "Conv":
        conv = nn.Conv2d(inits[node.input[1]].shape[1], inits[node.input[1]].shape[0], 3, padding=1)
        conv.weight.data, conv.bias.data = inits[node.input[1]], inits[node.input[2]]
        layers.append(conv); names += [node.input[1], node.input[2]]
    elif node.op_type == "Relu":
        layers.append(nn.ReLU())
    elif node.op_type == "MaxPool":
        layers.append(nn.MaxPool2d(2))
    elif node.op_type == "Flatten":
        layers.append(nn.Flatten())
    elif node.op_type == "Gemm":
        w, b = inits[node.input[1]], inits[node.input[2]]
        linear = nn.Linear(w.shape[1], w.shape[0])
        linear.weight.data, linear.bias.data = w, b
        layers.append(linear); names += [node.input[1], node.input[2]]
net = nn.Sequential(*layers)
data = np.load(data_path)
x = torch.from_numpy(data["input"][:batch]); y = torch.from_numpy(data["labels"][:batch]).long()
params = [p for p in net.parameters()]
before = [p.detach().clone() for p in params]
opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
loss = nn.functional.cross_entropy(net(x), y)
opt.zero_grad(); loss.backward()
grads = {n: float(p.grad.norm()) for n, p in zip(names, params)}
opt.step()
updates = {n: float((p.detach() - b).norm()) for n, p, b in zip(names, params, before)}
print(json.dumps({"loss": float(loss), "grad_norms": grads, "update_norms": updates}))
'''


def torch_reference(model: pathlib.Path, batch: int, lr: float, python: str) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(TORCH_STEP)
    out = subprocess.run([python, handle.name, str(model), str(TRAIN), str(batch), str(lr)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def onnxprune_step(model: pathlib.Path, batch: int, lr: float, bn: str) -> dict:
    data = open_data(TRAIN, load_model(model).model)
    return first_step(onnx.load(model), data, loss="ce", batch_size=batch, lr=lr,
                      weight_decay=0.0, warmup=0.0, bn=bn, isolate=True)


def paddle_reference(bn: str) -> dict:
    """Paddle's loss and gradient norms (``fixtures/paddle_reference_step.py``) for the BN
    mode of ``bn``, keyed by ONNX initializer name (the step runs on the file as exported)."""
    document = json.loads(PADDLE_REF.read_text())
    mode = document["modes"]["bn_train" if bn == "batch" else "bn_eval"]
    return {"loss": mode["loss"], "grad_norms": dict(mode["grad_l2"])}


def compare(ours: dict, reference: dict, rtol: float) -> bool:
    rel = abs(ours["loss"] - reference["loss"]) / max(abs(reference["loss"]), 1e-12)
    print(f"loss: onnxprune {ours['loss']:.6f}  framework {reference['loss']:.6f}  "
          f"(relative difference {rel:.1e})")
    ok = rel <= rtol
    print(f"{'parameter':40s} {'grad onnxprune':>15s} {'grad framework':>15s} {'rel':>8s} "
          f"{'update ours':>12s} {'update fw':>12s}")
    for name, grad in reference["grad_norms"].items():
        mine = ours["grad_norms"].get(name)
        if mine is None:
            print(f"{name:40s} {'(not trained)':>15s} {grad:15.6g}")
            ok = False
            continue
        g_rel = abs(mine - grad) / max(grad, 1e-12)
        ok &= g_rel <= rtol
        up = reference.get("update_norms", {}).get(name)
        if up is not None:  # AdamW's first step: elements with |g| near eps differ a little
            ok &= abs(ours["update_norms"][name] - up) <= UPDATE_RTOL * max(up, 1e-12)
        print(f"{name:40s} {mine:15.6g} {grad:15.6g} {g_rel:8.1e} "
              f"{ours['update_norms'].get(name, float('nan')):12.6g} "
              f"{up if up is not None else float('nan'):12.6g}")
    print("MATCH" if ok else "DIFFERENT", f"(loss and gradients rtol {rtol:g}, updates "
                                          f"{UPDATE_RTOL:g})")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--framework", choices=["torch", "paddle"], default="torch")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--rtol", type=float, default=1e-3)
    ap.add_argument("--torch-python", default="/work/venvs/torch/bin/python")
    args = ap.parse_args(argv)
    if args.framework == "torch":
        ours = onnxprune_step(DIGITS, args.batch, args.lr, "auto")
        print(f"onnxprune: {ours['plan']['terms']}, bn={ours['bn']}")
        reference = torch_reference(DIGITS, args.batch, args.lr, args.torch_python)
        return 0 if compare(ours, reference, args.rtol) else 1
    for bn in ("batch", "frozen"):
        ours = onnxprune_step(PADDLE, args.batch, args.lr, bn)
        print(f"onnxprune bn={bn}: loss {ours['loss']:.6f}, {ours['plan']['terms']}")
        if not PADDLE_REF.exists():
            print(f"  (no Paddle reference: {PADDLE_REF.relative_to(ROOT)} is missing)")
            continue
        compare(ours, paddle_reference(bn), args.rtol)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
