"""Fine-tuning throughput: onnxprune (ONNX Runtime training) against a PyTorch CPU loop.

    PYTHONPATH=. .venv/bin/python benchmarks/finetune_throughput.py \
        [--torch-python /work/venvs/torch/bin/python] [--threads 1,2] [--batch 64] \
        [--steps 40] [--rounds 3] [--levels all] [--no-ceiling] [--json out.json]

The same network, a 10-conv ResNet-like CNN with BatchNorm (input 3x32x32, 10
classes, 225,834 parameters), is trained both ways on the same random data with the
same recipe: cross-entropy on labels, AdamW (lr 1e-3, constant), batch ``--batch``,
BatchNorm with batch statistics, data shuffled every epoch.

Ceiling (default, ``--no-ceiling`` skips it): the same network with every
BatchNormalization and ReLU replaced by the identity ("conv-only": the ten
convolutions, the residual additions, pooling and the classifier) is trained the same
way on both sides. Its onnxprune time per step is what ONNX Runtime's convolution
kernels (forward and gradient) alone cost, so ``PyTorch full / onnxprune conv-only``
is the highest ratio any change to the rest of the graph could reach, and
``onnxprune conv-only / PyTorch conv-only`` compares the convolution kernels.

1. PyTorch part (torch==2.13.0 CPU, run by ``--torch-python``, a venv with torch;
   onnxprune's venv needs no torch): builds the network with seed 0, exports it once
   (TorchScript exporter, opset 17, BatchNorm kept) with the data, and times
   ``--steps`` steps of a plain loop (``model.train()``, forward, loss, backward, step)
   after 10 warm-up steps per thread count (``torch.set_num_threads``).
2. onnxprune part (this venv): ``onnxprune.training.finetune(model, data, loss="ce",
   threads=N, optimization=LEVEL)`` for 1 + ``--steps / 20`` epochs of 20 steps; the
   samples/s of the epochs after the first (session warm-up) is the throughput, data
   pipeline included.
3. The machine is shared, so the two parts alternate: each of ``--rounds`` rounds
   measures PyTorch, then onnxprune, for every configuration; the table gives the
   median over rounds of each throughput and of the per-round ratio, and the load
   average at the start of each round.

Prints the markdown tables of docs/finetune.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
TORCH_PYTHON = "/work/venvs/torch/bin/python"
EPOCH_STEPS = 20


# -- PyTorch part (runs in the torch venv) -------------------------------------------
def torch_part(folder: pathlib.Path, threads: list[int], batch: int, steps: int,
               samples: int, variants: list[str]) -> None:
    import numpy as np
    import torch
    from torch import nn

    torch.manual_seed(0)

    def norm(c: int, plain: bool) -> nn.Module:
        return nn.Identity() if plain else nn.BatchNorm2d(c)

    class Block(nn.Module):
        def __init__(self, c_in: int, c_out: int, stride: int, plain: bool) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = norm(c_out, plain)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = norm(c_out, plain)
            self.act = nn.Identity() if plain else nn.ReLU()
            self.down = None
            if stride != 1 or c_in != c_out:
                self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          norm(c_out, plain))

        def forward(self, x):
            y = self.act(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return self.act(y + (x if self.down is None else self.down(x)))

    class Net(nn.Module):  # 10 convolutions
        def __init__(self, plain: bool = False) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1, bias=False),
                                      norm(32, plain), nn.Identity() if plain else nn.ReLU())
            self.blocks = nn.Sequential(Block(32, 32, 1, plain), Block(32, 64, 2, plain),
                                        Block(64, 64, 1, plain), Block(64, 64, 1, plain))
            self.head = nn.Linear(64, 10)

        def forward(self, x):
            y = self.blocks(self.stem(x))
            return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))

    nets = {variant: Net(plain=variant == "conv-only") for variant in variants}
    rng = np.random.default_rng(0)
    count = samples
    x = rng.standard_normal((count, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, count).astype(np.int64)
    if not (folder / "data.npz").exists():
        np.savez(folder / "data.npz", input=x, labels=y)
    for variant, net in nets.items():
        if not (folder / f"{variant}.onnx").exists():
            net.eval()
            torch.onnx.export(net, (torch.from_numpy(x[:2]),), str(folder / f"{variant}.onnx"),
                              dynamo=False, opset_version=17, input_names=["input"],
                              output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                              training=torch.onnx.TrainingMode.PRESERVE)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    results = {}
    for count_threads, variant in ((t, v) for t in threads for v in variants):
        net = nets[variant]
        torch.set_num_threads(count_threads)
        model = Net(plain=variant == "conv-only")
        model.load_state_dict(net.state_dict())
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
        loss_fn = nn.CrossEntropyLoss()
        generator = torch.Generator().manual_seed(0)

        def step(index: torch.Tensor, model=model, opt=opt, loss_fn=loss_fn) -> None:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xt[index]), yt[index])
            loss.backward()
            opt.step()

        order = torch.randperm(len(xt), generator=generator)
        for i in range(10):
            step(order[i * batch:(i + 1) * batch])
        started = time.perf_counter()
        done = 0
        while done < steps:
            order = torch.randperm(len(xt), generator=generator)
            for i in range(min(steps - done, len(xt) // batch)):
                step(order[i * batch:(i + 1) * batch])
                done += 1
        seconds = time.perf_counter() - started
        results[f"{variant}/{count_threads}"] = {"samples_per_second": steps * batch / seconds,
                                                 "step_ms": 1000 * seconds / steps}
    (folder / "torch.json").write_text(json.dumps(
        {"torch": torch.__version__, "results": results,
         "params": sum(p.numel() for p in nets["full"].parameters())}))


# -- onnxprune part (this venv) ----------------------------------------------------------
def onnxprune_part(folder: pathlib.Path, variant: str, threads: int, batch: int, epochs: int,
                   level: str) -> dict:
    import onnx

    from onnxprune.data import open_data
    from onnxprune.graph import load_model
    from onnxprune.training import finetune

    path = folder / f"{variant}.onnx"
    model = onnx.load(path)
    data = open_data(folder / "data.npz", load_model(path).model)
    result = finetune(model, data, loss="ce", epochs=epochs, lr=1e-3, batch_size=batch,
                      threads=threads, optimization=level, isolate=False,
                      lr_schedule="constant")
    later = [h["samples_per_second"] for h in result.history[1:]]
    rate = sum(later) / len(later)
    return {"samples_per_second": rate, "step_ms": 1000 * batch / rate}


def _load() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return float("nan")


def _median_row(pairs: list[tuple[float, float]]) -> dict:
    ratios = [o / t for t, o in pairs]
    return {"torch": statistics.median(t for t, _ in pairs),
            "onnxprune": statistics.median(o for _, o in pairs),
            "ratio": statistics.median(ratios), "ratios": ratios}


def _print_tables(rows: list[dict], ceiling: list[dict]) -> None:
    print("| threads | ORT graph optimization | PyTorch samples/s | onnxprune samples/s | "
          "onnxprune / PyTorch (median, min-max of rounds) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['threads']} | {row['optimization']} | {row['torch']:.1f} | "
              f"{row['onnxprune']:.1f} | {row['ratio']:.2f}x "
              f"({min(row['ratios']):.2f}-{max(row['ratios']):.2f}) |")
    if not ceiling:
        return
    print()
    print("| threads | PyTorch conv-only samples/s | onnxprune conv-only samples/s | "
          "conv-only onnxprune / PyTorch | ceiling: PyTorch full step / onnxprune conv-only "
          "step |")
    print("|---|---|---|---|---|")
    for row in ceiling:
        print(f"| {row['threads']} | {row['torch']:.1f} | {row['onnxprune']:.1f} | "
              f"{row['ratio']:.2f}x ({min(row['ratios']):.2f}-{max(row['ratios']):.2f}) | "
              f"{row['ceiling']:.2f}x ({min(row['ceilings']):.2f}-"
              f"{max(row['ceilings']):.2f}) |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--torch-python", default=TORCH_PYTHON)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--levels", default="all", help="ORT graph optimization levels to try")
    ap.add_argument("--no-ceiling", action="store_true",
                    help="skip the conv-only twin (BatchNorm and ReLU replaced by identity)")
    ap.add_argument("--variants", default="full,conv-only", help=argparse.SUPPRESS)
    ap.add_argument("--json")
    ap.add_argument("--torch-part", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    samples = args.batch * EPOCH_STEPS
    if args.torch_part:
        torch_part(pathlib.Path(args.torch_part), threads, args.batch, args.steps, samples,
                   args.variants.split(","))
        return 0
    variants = ["full"] if args.no_ceiling else ["full", "conv-only"]
    levels = args.levels.split(",")
    epochs = 1 + max(1, args.steps // EPOCH_STEPS)
    measured: dict[tuple, list] = {}
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        for _ in range(args.rounds):
            loads.append(_load())
            subprocess.run([args.torch_python, __file__, "--torch-part", str(folder),
                            "--threads", args.threads, "--batch", str(args.batch),
                            "--steps", str(args.steps), "--variants", ",".join(variants)],
                           check=True)
            reference = json.loads((folder / "torch.json").read_text())
            for count in threads:
                for variant in variants:
                    torch_rate = reference["results"][f"{variant}/{count}"]["samples_per_second"]
                    for level in levels if variant == "full" else ["all"]:
                        ours = onnxprune_part(folder, variant, count, args.batch, epochs, level)
                        measured.setdefault((variant, count, level), []).append(
                            (torch_rate, ours["samples_per_second"]))
    print(f"PyTorch {reference['torch']}, {reference['params']:,} parameters, batch "
          f"{args.batch}, {args.rounds} rounds, load average at round start: {loads}")
    rows, ceiling = [], []
    for (variant, count, level), pairs in measured.items():
        row = {"variant": variant, "threads": count, "optimization": level,
               **_median_row(pairs)}
        if variant == "full":
            rows.append(row)
            continue
        # per round: PyTorch's full-network step time / onnxprune's conv-only step time,
        # i.e. onnxprune conv-only samples/s over PyTorch full-network samples/s
        full = measured[("full", count, "all" if "all" in levels else levels[0])]
        row["ceilings"] = [o_conv / t_full for (t_full, _), (_, o_conv) in zip(full, pairs)]
        row["ceiling"] = statistics.median(row["ceilings"])
        ceiling.append(row)
    _print_tables(rows, ceiling)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"rows": rows, "ceiling": ceiling,
                                                       "loads": loads, "torch": reference},
                                                      indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
