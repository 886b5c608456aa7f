"""Write a synthetic MLP of a given size with external data (for large-model tests).

    python benchmarks/large_model.py OUT.onnx --gigabytes 2.5

Layers: input 1024 -> ``layers`` Gemms of width H (all but the first square) -> 10
classes, with H chosen so the square weights total about ``gigabytes``. Weights are
streamed into ``OUT.onnx.data`` in chunks, so writing a multi-GB model needs little
memory.
"""

from __future__ import annotations

import argparse
import math
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper

INPUT = 1024
CHUNK_ROWS = 1024


def _external(name: str, shape: tuple[int, ...], location: str, offset: int) -> TensorProto:
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(shape))
    tensor.data_location = TensorProto.EXTERNAL
    length = int(np.prod(shape)) * 4
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, str(value)
    return tensor


def _write(handle, rng: np.random.Generator, rows: int, cols: int, scale: float) -> None:
    for start in range(0, rows, CHUNK_ROWS):
        count = min(CHUNK_ROWS, rows - start)
        block = rng.random((count, cols), dtype=np.float32)
        block -= 0.5
        block *= scale
        handle.write(block.tobytes())


def build(path: pathlib.Path, gigabytes: float, layers: int = 3, seed: int = 0) -> pathlib.Path:
    """Write the model at ``path`` (external data beside it) and return the path."""
    rng = np.random.default_rng(seed)
    width = int(math.sqrt(gigabytes * 2**30 / 4 / max(layers - 1, 1))) // 64 * 64
    location = path.name + ".data"
    nodes, inits, x, fan_in, offset = [], [], "input", INPUT, 0
    with open(path.parent / location, "wb") as handle:
        for i in range(layers + 1):
            fan_out = width if i < layers else 10
            for name, shape in ((f"fc{i}.weight", (fan_out, fan_in)), (f"fc{i}.bias", (fan_out,))):
                inits.append(_external(name, shape, location, offset))
                if name.endswith("weight"):
                    _write(handle, rng, fan_out, fan_in, 2 / math.sqrt(fan_in))
                else:
                    handle.write(np.zeros(fan_out, np.float32).tobytes())
                offset += int(np.prod(shape)) * 4
            nodes.append(helper.make_node("Gemm", [x, f"fc{i}.weight", f"fc{i}.bias"],
                                          [f"fc{i}"], name=f"fc{i}", transB=1))
            x = f"fc{i}"
            if i < layers:
                nodes.append(helper.make_node("Relu", [x], [f"relu{i}"]))
                x = f"relu{i}"
            fan_in = fan_out
    graph = helper.make_graph(
        nodes, "large_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", INPUT])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--gigabytes", type=float, default=2.5)
    args = parser.parse_args()
    build(args.out, args.gigabytes)


if __name__ == "__main__":
    main()
