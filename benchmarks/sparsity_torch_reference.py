"""Reference for masked fine-tuning of the digits CNN, simulated in PyTorch (not onnxprune).

    /work/venvs/torch/bin/python benchmarks/sparsity_torch_reference.py

onnxprune fine-tunes with ONNX Runtime training (``onnxprune.training.finetune``, another
branch). Until that runs here, this script shows what the same recipe reaches when the
training loop is PyTorch's: the weights of ``fixtures/models/digits_cnn.ts.onnx`` (BatchNorm
already folded) are loaded into an equivalent torch module; each of ``steps`` steps zeroes
the smallest-magnitude Conv/Linear weights globally to the cubic-schedule sparsity (masks
only grow; N:M: the two smallest of every 4 consecutive input weights), then trains
``epochs`` epochs on the 1,257 training images (AdamW, lr 1e-3, batch 32, seed 0) with
the dense model as teacher (KL divergence of the softmax outputs; ``ce``: cross-entropy
on the labels) and re-applies the masks after every optimizer step. Test accuracy on the
540 test images after each step. Needs torch (2.13.0 CPU), onnx and numpy.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parents[1]
NAMES = [("c1", "onnx::Conv_42", "onnx::Conv_43"), ("c2", "onnx::Conv_45", "onnx::Conv_46"),
         ("c3", "onnx::Conv_48", "onnx::Conv_49"), ("f1", "head.1.weight", "head.1.bias"),
         ("f2", "head.3.weight", "head.3.bias")]


class Digits(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
        self.c3, self.f1, self.f2 = nn.Conv2d(32, 64, 3, padding=1), nn.Linear(256, 64), \
            nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = nn.functional.max_pool2d
        x = pool(torch.relu(self.c2(torch.relu(self.c1(x)))), 2)
        x = pool(torch.relu(self.c3(x)), 2)
        return self.f2(torch.relu(self.f1(x.flatten(1))))


def load() -> Digits:
    proto = onnx.load(str(ROOT / "fixtures" / "models" / "digits_cnn.ts.onnx"))
    arrays = {t.name: torch.tensor(numpy_helper.to_array(t)) for t in proto.graph.initializer}
    model = Digits()
    for attr, weight, bias in NAMES:
        getattr(model, attr).weight.data = arrays[weight].clone()
        getattr(model, attr).bias.data = arrays[bias].clone()
    return model


def masks_for(params, masks, level: float, nm: bool) -> list[torch.Tensor]:
    if nm:  # 2:4 along the input axis (axis 1 of every weight here); 1-channel conv stays
        out = []
        for p in params:
            if p.shape[1] % 4:
                out.append(torch.ones_like(p, dtype=torch.bool))
                continue
            groups = p.detach().abs().movedim(1, -1).reshape(-1, 4)
            keep = torch.ones_like(groups, dtype=torch.bool)
            keep.scatter_(1, groups.argsort(1)[:, :2], False)
            out.append(keep.reshape(p.detach().movedim(1, -1).shape).movedim(-1, 1))
        return out
    scores = torch.cat([torch.where(m, p.detach().abs(), torch.tensor(-1.0)).flatten()
                        for p, m in zip(params, masks)])
    keep = torch.ones(scores.numel(), dtype=torch.bool)
    keep[scores.argsort()[:round(level * scores.numel())]] = False
    out, start = [], 0
    for p in params:
        out.append(keep[start:start + p.numel()].view_as(p))
        start += p.numel()
    return out


def run(final: float, steps: int, epochs: int, loss: str, nm: bool, data) -> tuple:
    torch.manual_seed(0)
    (xt, yt), (xe, ye) = data
    teacher, model = load().eval(), load()
    params = [getattr(model, a).weight for a, _, _ in NAMES]
    masks = [torch.ones_like(p, dtype=torch.bool) for p in params]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    accs = []
    for t in range(1, steps + 1):
        masks = masks_for(params, masks, final * (1 - (1 - t / steps) ** 3), nm)
        with torch.no_grad():
            for p, m in zip(params, masks):
                p.mul_(m)
        for _ in range(epochs):
            model.train()
            order = torch.randperm(len(xt))
            for s in range(0, len(order), 32):
                i = order[s:s + 32]
                out = model(xt[i])
                if loss == "distill":
                    with torch.no_grad():
                        target = teacher(xt[i]).softmax(1)
                    value = nn.functional.kl_div(out.log_softmax(1), target,
                                                 reduction="batchmean")
                else:
                    value = nn.functional.cross_entropy(out, yt[i])
                opt.zero_grad()
                value.backward()
                opt.step()
                with torch.no_grad():
                    for p, m in zip(params, masks):
                        p.mul_(m)
        with torch.no_grad():
            accs.append(float((model.eval()(xe).argmax(1) == ye).float().mean()))
    zeros = sum(int((p == 0).sum()) for p in params) / sum(p.numel() for p in params)
    return zeros, accs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.parse_args(argv)
    torch.set_num_threads(1)
    tr = np.load(ROOT / "fixtures" / "data" / "digits_train.npz")
    te = np.load(ROOT / "fixtures" / "data" / "digits_test.npz")
    data = ((torch.tensor(tr["input"]), torch.tensor(tr["labels"])),
            (torch.tensor(te["input"]), torch.tensor(te["labels"])))
    with torch.no_grad():
        base = float((load()(data[1][0]).argmax(1) == data[1][1]).float().mean())
    print(f"original test accuracy {100 * base:.2f}%\n")
    print("| recipe | zero weights | test accuracy after each step |")
    print("|---|---|---|")
    for label, args in (("unstructured 0.9, 1 step x 8 epochs, distill", (0.9, 1, 8, "distill",
                                                                          False)),
                        ("unstructured 0.9, 4 steps x 2 epochs, distill", (0.9, 4, 2,
                                                                           "distill", False)),
                        ("unstructured 0.9, 4 steps x 2 epochs, cross-entropy",
                         (0.9, 4, 2, "ce", False)),
                        ("2:4, 1 step x 4 epochs, distill", (0.5, 1, 4, "distill", True))):
        zeros, accs = run(*args, data)
        print(f"| {label} | {100 * zeros:.2f}% | "
              + " / ".join(f"{100 * a:.2f}" for a in accs) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
