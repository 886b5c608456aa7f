"""What was tried to speed up fine-tuning on ONNX Runtime training (docs/finetune.md).

    PYTHONPATH=. .venv/bin/python benchmarks/finetune_alternatives.py [EXPERIMENT ...] \
        [--threads 1,2] [--torch-python /work/venvs/torch/bin/python]

Experiments (default: all), each printing one small table:

``profile``   per-op ORT kernel time per training step of the benchmark network
              (``finetune`` with ORT profiling), ms per step by op type
``relu``      added cost of ReLU forms (forward + gradient) on a 64x64x16x16 tensor
``conv``      one 3x3 convolution layer (forward + weight and input gradients):
              ``Conv`` vs im2col + ``MatMul`` (NCHW, NHWC) vs the batch stacked into
              taller images
``parallel``  ``Conv`` vs the batch split into two ``Conv`` branches, sequential and
              parallel executor (2 inter-op threads)
``gil``       two ORT training ``Module`` objects on half batches from two Python
              threads vs one after the other
``settings``  session options on the benchmark network: samples/s of ``finetune``
``raw``       a plain ORT training loop (``generate_artifacts`` with its built-in
              cross-entropy, no onnxprune rewrites) on the benchmark network

The benchmark network and data come from ``finetune_throughput.py``'s PyTorch part
(run with ``--torch-python``). Timings on a shared 2-vCPU machine move by a few
percent between runs; compare rows of one run.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import json
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onnxprune.training import ort as training_ort  # noqa: E402
from onnxprune.training import setup as training_setup  # noqa: E402

TORCH_PYTHON = "/work/venvs/torch/bin/python"


# -- helpers -------------------------------------------------------------------------
def _graph(nodes, inputs, inits, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info("loss", TensorProto.FLOAT, [])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _session(model: onnx.ModelProto, trainable: list[str], threads: int,
             parallel: bool = False):
    _, api = training_ort.import_training()
    built = training_ort.build_artifacts(model, trainable, [], tempfile.mkdtemp())
    state = api.CheckpointState.load_checkpoint(built.checkpoint)
    options = training_ort.training_session_options(threads)
    if parallel:
        import onnxruntime as ort

        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        options.inter_op_num_threads, options.intra_op_num_threads = 2, 1
    module = api.Module(built.training_model, state, built.eval_model, session_options=options)
    optimizer = api.Optimizer(built.optimizer_model, module)
    module.train()
    return module, optimizer


def _step_ms(module, optimizer, feeds: list[np.ndarray], steps: int = 30) -> float:
    def step() -> None:
        module.lazy_reset_grad()
        module(*feeds)
        optimizer.step()

    for _ in range(5):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps * 1000


def _loss_tail(y: str) -> list:
    return [helper.make_node("Mul", [y, "g"], ["yg"]),
            helper.make_node("ReduceSum", ["yg"], ["loss"], keepdims=0)]


def _ints(inits: list, name: str, values) -> str:
    if not any(t.name == name for t in inits):
        inits.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
    return name


# -- conv layer formulations ---------------------------------------------------------
def conv_layer(kind: str, n: int, c: int, h: int) -> tuple[onnx.ModelProto, list[str]]:
    """One 3x3, stride-1, pad-1 convolution ``c -> c`` whose input also needs a
    gradient (``x * s`` with a trainable ``s``), then ``sum(y * g)``."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((c, c, 3, 3)) * 0.1)
                                     .astype(np.float32), "W"),
             numpy_helper.from_array(np.ones((1, c, 1, 1), np.float32), "s")]
    nodes = [helper.make_node("Mul", ["x", "s"], ["xs"])]
    out_shape = [n, c, h, h]
    if kind == "conv":
        nodes.append(helper.make_node("Conv", ["xs", "W"], ["y"], pads=[1, 1, 1, 1],
                                      kernel_shape=[3, 3]))
    elif kind in ("im2col-nchw", "im2col-nhwc"):
        nodes += _im2col(kind, n, c, h, inits)
    elif kind.startswith("tall"):  # k images stacked per tall image, zero rows between
        k = int(kind[4:])
        nodes += [helper.make_node("Pad", ["xs", _ints(inits, "p", [0, 0, 1, 0, 0, 0, 1, 0])],
                                   ["xp"]),
                  helper.make_node("Reshape", ["xp", _ints(inits, "tall", [n // k, c, -1, h])],
                                   ["xt"]),
                  helper.make_node("Conv", ["xt", "W"], ["y"], pads=[0, 1, 0, 1],
                                   kernel_shape=[3, 3])]
        out_shape = [n // k, c, k * (h + 2) - 2, h]
    else:
        raise ValueError(kind)
    nodes += _loss_tail("y")
    return _graph(nodes, [("x", [n, c, h, h]), ("g", out_shape)], inits), ["W", "s"]


def _im2col(kind: str, n: int, c: int, h: int, inits: list) -> list:
    nhwc = kind.endswith("nhwc")
    nodes = []
    x = "xs"
    if nhwc:
        nodes.append(helper.make_node("Transpose", [x], ["xt"], perm=[0, 2, 3, 1]))
        x = "xt"
    pads = [0, 1, 1, 0, 0, 1, 1, 0] if nhwc else [0, 0, 1, 1, 0, 0, 1, 1]
    nodes.append(helper.make_node("Pad", [x, _ints(inits, "pads", pads)], ["xp"]))
    axes = _ints(inits, "axes", [1, 2] if nhwc else [2, 3])
    cols = []
    for kh, kw in itertools.product(range(3), range(3)):
        nodes.append(helper.make_node(
            "Slice", ["xp", _ints(inits, f"st{kh}{kw}", [kh, kw]),
                      _ints(inits, f"en{kh}{kw}", [kh + h, kw + h]), axes], [f"s{kh}{kw}"]))
        cols.append(f"s{kh}{kw}")
    nodes.append(helper.make_node("Concat", cols, ["col"], axis=3 if nhwc else 1))
    if nhwc:
        nodes += [
            helper.make_node("Reshape", ["col", _ints(inits, "r1", [n * h * h, 9 * c])],
                             ["col2"]),
            helper.make_node("Transpose", ["W"], ["Wt"], perm=[2, 3, 1, 0]),
            helper.make_node("Reshape", ["Wt", _ints(inits, "r2", [9 * c, c])], ["Wm"]),
            helper.make_node("MatMul", ["col2", "Wm"], ["ym"]),
            helper.make_node("Reshape", ["ym", _ints(inits, "r3", [n, h, h, c])], ["yt"]),
            helper.make_node("Transpose", ["yt"], ["y"], perm=[0, 3, 1, 2])]
    else:
        nodes += [
            helper.make_node("Reshape", ["col", _ints(inits, "r1", [n, 9 * c, h * h])],
                             ["col3"]),
            helper.make_node("Transpose", ["W"], ["Wt"], perm=[0, 2, 3, 1]),
            helper.make_node("Reshape", ["Wt", _ints(inits, "r2", [c, 9 * c])], ["Wm"]),
            helper.make_node("MatMul", ["Wm", "col3"], ["ym"]),
            helper.make_node("Reshape", ["ym", _ints(inits, "r3", [n, c, h, h])], ["y"])]
    return nodes


def _feeds(model: onnx.ModelProto) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim])
            .astype(np.float32) for i in model.graph.input]


def experiment_conv(threads: list[int]) -> None:
    print("| layer | threads | Conv ms | im2col NCHW | im2col NHWC | 4 per tall image | "
          "16 per tall image |")
    print("|---|---|---|---|---|---|---|")
    for c, h in ((32, 32), (64, 16)):
        for count in threads:
            times = {}
            for kind in ("conv", "im2col-nchw", "im2col-nhwc", "tall4", "tall16"):
                model, trainable = conv_layer(kind, 64, c, h)
                module, optimizer = _session(model, trainable, count)
                times[kind] = _step_ms(module, optimizer, _feeds(model))
            base = times["conv"]
            print(f"| {c}x{h}x{h}, batch 64 | {count} | {base:.1f} | " + " | ".join(
                f"{times[k]:.1f} ({times[k] / base:.2f}x)"
                for k in ("im2col-nchw", "im2col-nhwc", "tall4", "tall16")) + " |")


def experiment_parallel(threads: list[int]) -> None:
    del threads  # two threads by construction
    print("| layer | Conv, 2 intra-op threads | 2 Conv branches, 2 intra-op | Conv, parallel "
          "executor | 2 branches, parallel executor |")
    print("|---|---|---|---|---|")
    for c, h in ((32, 32), (64, 16)):
        row = []
        for split, parallel in ((False, False), (True, False), (False, True), (True, True)):
            model = _split_conv(64, c, h) if split else conv_layer("conv", 64, c, h)[0]
            module, optimizer = _session(model, ["W", "s"], 2, parallel=parallel)
            row.append(_step_ms(module, optimizer, _feeds(model)))
        print(f"| {c}x{h}x{h} | " + " | ".join(f"{t:.1f} ms" for t in row) + " |")


def _split_conv(n: int, c: int, h: int) -> onnx.ModelProto:
    model, _ = conv_layer("conv", n, c, h)
    inits = list(model.graph.initializer)
    nodes = [helper.make_node("Mul", ["x", "s"], ["xs"]),
             helper.make_node("Split", ["xs", _ints(inits, "sp", [n // 2, n // 2])],
                              ["xa", "xb"], axis=0),
             helper.make_node("Conv", ["xa", "W"], ["ya"], pads=[1, 1, 1, 1],
                              kernel_shape=[3, 3]),
             helper.make_node("Conv", ["xb", "W"], ["yb"], pads=[1, 1, 1, 1],
                              kernel_shape=[3, 3]),
             helper.make_node("Concat", ["ya", "yb"], ["y"], axis=0), *_loss_tail("y")]
    return _graph(nodes, [("x", [n, c, h, h]), ("g", [n, c, h, h])], inits)


def experiment_relu(threads: list[int]) -> None:
    forms = {
        "Identity (baseline)": lambda: [helper.make_node("Identity", ["xs"], ["y"])],
        "Relu (ReluGrad)": lambda: [helper.make_node("Relu", ["xs"], ["y"])],
        "x * Cast(x > 0) (onnxprune)": lambda: [
            helper.make_node("Greater", ["xs", "z"], ["m"]),
            helper.make_node("Cast", ["m"], ["mf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["xs", "mf"], ["y"])],
        "Clip(x, 0)": lambda: [helper.make_node("Clip", ["xs", "z"], ["y"])],
        "Max(x, 0)": lambda: [helper.make_node("Max", ["xs", "z"], ["y"])],
        "Where(x > 0, x, 0)": lambda: [helper.make_node("Greater", ["xs", "z"], ["m"]),
                                       helper.make_node("Where", ["m", "xs", "z"], ["y"])],
        "LeakyRelu(alpha=0)": lambda: [helper.make_node("LeakyRelu", ["xs"], ["y"],
                                                        alpha=0.0)],
    }
    shape = [64, 64, 16, 16]
    print("| form | " + " | ".join(f"{t} thread(s): ms, added" for t in threads) + " |")
    print("|---|" + "---|" * len(threads))
    base: dict[int, float] = {}
    for name, make in forms.items():
        cells = []
        for count in threads:
            inits = [numpy_helper.from_array(np.ones((1, 64, 1, 1), np.float32), "s"),
                     numpy_helper.from_array(np.array(0, np.float32), "z")]
            nodes = [helper.make_node("Mul", ["x", "s"], ["xs"]), *make(), *_loss_tail("y")]
            model = _graph(nodes, [("x", shape), ("g", shape)], inits)
            module, optimizer = _session(model, ["s"], count)
            ms = _step_ms(module, optimizer, _feeds(model), steps=40)
            base.setdefault(count, ms)
            cells.append(f"{ms:.2f}, +{ms - base[count]:.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def experiment_gil(threads: list[int]) -> None:
    del threads
    c, h = 64, 16
    full = _session(conv_layer("conv", 64, c, h)[0], ["W", "s"], 1)
    halves = [_session(conv_layer("conv", 32, c, h)[0], ["W", "s"], 1) for _ in range(2)]
    feeds_full = _feeds(conv_layer("conv", 64, c, h)[0])
    feeds_half = _feeds(conv_layer("conv", 32, c, h)[0])
    one = _step_ms(*full, feeds_full)

    def both() -> None:
        workers = [threading.Thread(target=_step_ms, args=(*half, feeds_half, 1))
                   for half in halves]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    both()
    started = time.perf_counter()
    for _ in range(10):
        both()
    concurrent = (time.perf_counter() - started) / 10 * 1000 / 6  # _step_ms runs 6 steps
    half = _step_ms(*halves[0], feeds_half)
    print("| batch 64 in one Module, 1 thread | one half-batch Module alone | two half-batch "
          "Modules from two Python threads |")
    print("|---|---|---|")
    print(f"| {one:.1f} ms | {half:.1f} ms | {concurrent:.1f} ms (no overlap: about 2x a "
          "half when the GIL is held) |")


# -- the benchmark network -------------------------------------------------------------
def _network(folder: pathlib.Path, torch_python: str) -> pathlib.Path:
    if not (folder / "full.onnx").exists():
        subprocess.run([torch_python, str(ROOT / "benchmarks" / "finetune_throughput.py"),
                        "--torch-part", str(folder), "--threads", "1", "--steps", "1",
                        "--variants", "full"], check=True, capture_output=True)
    return folder


def _finetune(folder: pathlib.Path, threads: int, epochs: int = 3):
    from onnxprune.data import open_data
    from onnxprune.graph import load_model
    from onnxprune.training import finetune

    path = folder / "full.onnx"
    return finetune(onnx.load(path), open_data(folder / "data.npz", load_model(path).model),
                    loss="ce", epochs=epochs, lr=1e-3, batch_size=64, threads=threads,
                    isolate=False, lr_schedule="constant")


@contextlib.contextmanager
def _patched_options(**changes):
    """``training_setup.training_session_options`` with attributes / config entries changed."""
    original = training_setup.training_session_options

    def patched(threads, optimize="all"):
        options = original(threads, optimize)
        for key, value in changes.items():
            if key.startswith("config:"):
                options.add_session_config_entry(key[len("config:"):], value)
            else:
                setattr(options, key, value)
        return options

    training_setup.training_session_options = patched
    try:
        yield
    finally:
        training_setup.training_session_options = original


def experiment_settings(folder: pathlib.Path, threads: list[int]) -> None:
    variants = {"defaults": {}, "denormals as zero": {"config:session.set_denormal_as_zero": "1"},
                "no memory pattern": {"enable_mem_pattern": False},
                "no CPU memory arena": {"enable_cpu_mem_arena": False},
                "no thread spinning": {"config:session.intra_op.allow_spinning": "0"}}
    print("| session options | " + " | ".join(f"{t} thread(s) samples/s" for t in threads)
          + " |")
    print("|---|" + "---|" * len(threads))
    for name, changes in variants.items():
        cells = []
        for count in threads:
            with _patched_options(**changes):
                history = _finetune(folder, count).history[1:]
            cells.append(f"{np.mean([h['samples_per_second'] for h in history]):.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def experiment_profile(folder: pathlib.Path, threads: list[int]) -> None:
    for count in threads:
        with tempfile.TemporaryDirectory() as tmp:
            with _patched_options(enable_profiling=True, profile_file_prefix=f"{tmp}/p"):
                result = _finetune(folder, count, epochs=2)
            per_op = _kernel_ms(pathlib.Path(tmp).glob("*.json"), result.steps)
        total = sum(per_op.values())
        print(f"\n{count} thread(s), {result.steps} steps, kernel ms per training step "
              f"(total {total:.0f}):")
        print("| op | ms/step | share |")
        print("|---|---|---|")
        for op, ms in sorted(per_op.items(), key=lambda kv: -kv[1])[:12]:
            print(f"| {op} | {ms:.1f} | {100 * ms / total:.0f}% |")


def _kernel_ms(files, steps: int) -> dict[str, float]:
    """Kernel time per op type per step. The training, eval and optimizer sessions share
    the options and may write the same file (second-resolution names), so events are
    read one line at a time and damaged lines skipped."""
    totals: dict[str, float] = collections.Counter()
    for file in files:
        for line in pathlib.Path(file).read_text(errors="replace").splitlines():
            line = line.strip().rstrip(",")
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
                totals[event["args"].get("op_name", "?")] += event["dur"] / 1000
    return {op: ms / steps for op, ms in totals.items()}


def experiment_raw(folder: pathlib.Path, threads: list[int]) -> None:
    artifacts, api = training_ort.import_training()
    model = onnx.load(folder / "full.onnx")
    for value in (*model.graph.input, *model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_param")
        dim.dim_value = 64
    model.ir_version = 8
    trainable = [t.name for t in model.graph.initializer
                 if t.data_type == TensorProto.FLOAT and "running" not in t.name]
    frozen = [t.name for t in model.graph.initializer if t.name not in trainable]
    tmp = tempfile.mkdtemp()
    saved = artifacts.onnx
    artifacts.onnx = training_ort._LoweringOnnx(10)
    try:
        with training_ort._quiet_stderr(pathlib.Path(tmp) / "generate_artifacts.log"):
            artifacts.generate_artifacts(model, requires_grad=trainable, frozen_params=frozen,
                                         loss=artifacts.LossType.CrossEntropyLoss,
                                         optimizer=artifacts.OptimType.AdamW,
                                         artifact_directory=tmp)
    finally:
        artifacts.onnx = saved
    data = np.load(folder / "data.npz")
    x, y = data["input"], data["labels"]
    print("| threads | plain ORT training loop samples/s | onnxprune finetune samples/s |")
    print("|---|---|---|")
    for count in threads:
        state = api.CheckpointState.load_checkpoint(f"{tmp}/checkpoint")
        module = api.Module(f"{tmp}/training_model.onnx", state, f"{tmp}/eval_model.onnx",
                            session_options=training_ort.training_session_options(count))
        optimizer = api.Optimizer(f"{tmp}/optimizer_model.onnx", module)
        module.train()
        batches = [(x[i * 64:(i + 1) * 64], y[i * 64:(i + 1) * 64]) for i in range(len(x) // 64)]
        for xb, yb in batches[:5]:
            module(xb, yb)
            optimizer.step()
            module.lazy_reset_grad()
        started = time.perf_counter()
        for xb, yb in batches * 2:
            module(xb, yb)
            optimizer.step()
            module.lazy_reset_grad()
        raw = 2 * len(batches) * 64 / (time.perf_counter() - started)
        ours = np.mean([h["samples_per_second"] for h in _finetune(folder, count).history[1:]])
        print(f"| {count} | {raw:.1f} | {ours:.1f} |")


EXPERIMENTS = ("profile", "relu", "conv", "parallel", "gil", "settings", "raw")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiments", nargs="*", metavar="EXPERIMENT",
                    help=f"any of {', '.join(EXPERIMENTS)} (default: all)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--torch-python", default=TORCH_PYTHON)
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    chosen = args.experiments or list(EXPERIMENTS)
    unknown = sorted(set(chosen) - set(EXPERIMENTS))
    if unknown:
        ap.error(f"unknown experiment(s) {', '.join(unknown)}; choose from "
                 f"{', '.join(EXPERIMENTS)}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        for name in chosen:
            print(f"\n## {name}\n", flush=True)
            if name in ("profile", "settings", "raw"):
                globals()[f"experiment_{name}"](_network(folder, args.torch_python), threads)
            else:
                globals()[f"experiment_{name}"](threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
