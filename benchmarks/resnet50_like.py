"""Build a full-width ResNet-50-like ONNX graph (about 25.5M parameters) with onnx.helper.

Bottleneck blocks (1x1 -> 3x3 -> 1x1, expansion 4) with BatchNormalization, ReLU and
projection shortcuts, stages [3, 4, 6, 3] times ``depth``; input 1x3x224x224
(batch dynamic), GlobalAveragePool, Flatten, Gemm(1000). Random weights, fixed seed.

    python benchmarks/resnet50_like.py out.onnx [--depth 2]
"""

from __future__ import annotations

import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def tensor(self, array: np.ndarray) -> str:
        self.n += 1
        name = f"t{self.n}"
        self.inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv_bn(self, x: str, c_in: int, c_out: int, k: int, stride: int = 1,
                relu: bool = True) -> str:
        self.n += 1
        tag = self.n
        fan_in = c_in * k * k
        w = self.tensor(self.rng.standard_normal((c_out, c_in, k, k)) * np.sqrt(2.0 / fan_in))
        self.nodes.append(helper.make_node("Conv", [x, w], [f"conv{tag}"], name=f"conv{tag}",
                                           kernel_shape=[k, k], strides=[stride, stride],
                                           pads=[k // 2] * 4))
        gamma = self.tensor(self.rng.uniform(0.2, 1.0, c_out))
        beta = self.tensor(self.rng.standard_normal(c_out) * 0.1)
        mean = self.tensor(self.rng.standard_normal(c_out) * 0.1)
        var = self.tensor(self.rng.uniform(0.5, 1.5, c_out))
        self.nodes.append(helper.make_node("BatchNormalization", [f"conv{tag}", gamma, beta, mean,
                                                                   var], [f"bn{tag}"]))
        if not relu:
            return f"bn{tag}"
        self.nodes.append(helper.make_node("Relu", [f"bn{tag}"], [f"relu{tag}"]))
        return f"relu{tag}"

    def add_relu(self, a: str, b: str) -> str:
        self.n += 1
        self.nodes.append(helper.make_node("Add", [a, b], [f"add{self.n}"]))
        self.nodes.append(helper.make_node("Relu", [f"add{self.n}"], [f"out{self.n}"]))
        return f"out{self.n}"


def build(depth: int = 1, seed: int = 0) -> onnx.ModelProto:
    b = _Builder(seed)
    x = b.conv_bn("input", 3, 64, 7, stride=2)
    b.nodes.append(helper.make_node("MaxPool", [x], ["pool"], kernel_shape=[3, 3], strides=[2, 2],
                                    pads=[1, 1, 1, 1]))
    x, c_in = "pool", 64
    for stage, (width, blocks) in enumerate(STAGES):
        for block in range(blocks * depth):
            stride = 2 if block == 0 and stage > 0 else 1
            h = b.conv_bn(x, c_in, width, 1)
            h = b.conv_bn(h, width, width, 3, stride)
            h = b.conv_bn(h, width, width * 4, 1, relu=False)
            short = b.conv_bn(x, c_in, width * 4, 1, stride, relu=False) if block == 0 else x
            x, c_in = b.add_relu(h, short), width * 4
    b.nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"]))
    b.nodes.append(helper.make_node("Flatten", ["gap"], ["flat"]))
    fc_w = b.tensor(b.rng.standard_normal((1000, 2048)) * 0.02)
    fc_b = b.tensor(np.zeros(1000))
    b.nodes.append(helper.make_node("Gemm", ["flat", fc_w, fc_b], ["logits"], transB=1))
    graph = helper.make_graph(
        b.nodes, "resnet50_like",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000])], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--depth", type=int, default=1)
    args = parser.parse_args()
    onnx.save(build(args.depth), args.out)


if __name__ == "__main__":
    main()
