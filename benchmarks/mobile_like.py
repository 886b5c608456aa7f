"""Full-width MobileNetV2-, MobileNetV3-small-, EfficientNet-B0- and ResNet-18-like graphs.

Built with onnx.helper as exporters write them after folding BatchNorm (Conv with bias),
input ``batch x 3 x 224 x 224``, random weights (fixed seed), opset 17:

- ``mobilenetv2``: inverted residuals (expand 1x1, depthwise 3x3, project 1x1), ReLU6 as
  ``Clip``, the torchvision widths (32 ... 320, 1280 head).
- ``mobilenetv3_small``: depthwise blocks with ``HardSwish``, squeeze-excite
  (GAP-Conv-Relu-Conv-HardSigmoid-Mul), 5x5 depthwise kernels, the torchvision-small widths.
- ``efficientnet_b0``: MBConv with SiLU (Sigmoid + Mul) and SE, the B0 widths/repeats.
- ``resnet18``: BasicBlocks [2, 2, 2, 2], widths 64 ... 512.

    python benchmarks/mobile_like.py NAME out.onnx
"""

from __future__ import annotations

__all__ = ["BUILDERS", "build"]

import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Builder:
    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def tensor(self, array: np.ndarray) -> str:
        name = self.name("w")
        self.inits.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name

    def op(self, op: str, inputs: list[str], **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, c_in: int, c_out: int, k: int = 1, stride: int = 1,
             groups: int = 1, act: str | None = "relu") -> str:
        fan_in = c_in // groups * k * k
        w = self.tensor(self.rng.standard_normal((c_out, c_in // groups, k, k))
                        * np.sqrt(2.0 / fan_in))
        b = self.tensor(self.rng.standard_normal(c_out) * 0.1)
        y = self.op("Conv", [x, w, b], kernel_shape=[k, k], strides=[stride, stride],
                    pads=[k // 2] * 4, group=groups)
        return self.act(y, act)

    def act(self, x: str, act: str | None) -> str:
        if act is None:
            return x
        if act == "relu":
            return self.op("Relu", [x])
        if act == "relu6":
            return self.op("Clip", [x, self.tensor(np.array(0.0)), self.tensor(np.array(6.0))])
        if act == "hardswish":
            return self.op("HardSwish", [x])
        if act == "silu":
            return self.op("Mul", [x, self.op("Sigmoid", [x])])
        raise ValueError(act)

    def se(self, x: str, c: int, squeeze: int, gate: str = "sigmoid") -> str:
        s = self.op("GlobalAveragePool", [x])
        s = self.conv(s, c, squeeze, act="relu" if gate != "sigmoid" else "silu")
        s = self.conv(s, squeeze, c, act=None)
        s = self.op("HardSigmoid", [s], alpha=1 / 6) if gate == "hard" else self.op("Sigmoid",
                                                                                   [s])
        return self.op("Mul", [x, s])

    def head(self, x: str, c: int, classes: int = 1000) -> str:
        x = self.op("Flatten", [self.op("GlobalAveragePool", [x])])
        w = self.tensor(self.rng.standard_normal((classes, c)) * 0.02)
        b = self.tensor(np.zeros(classes))
        return self.op("Gemm", [x, w, b], transB=1)

    def model(self, logits: str, name: str) -> onnx.ModelProto:
        self.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="output"))
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000])],
            self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        return model


def mobilenetv2(seed: int = 0) -> onnx.ModelProto:
    b = _Builder(seed)
    x, c = b.conv("input", 3, 32, 3, 2, act="relu6"), 32
    for t, out, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                         (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
        for i in range(n):
            stride = s if i == 0 else 1
            h = b.conv(x, c, c * t, act="relu6") if t != 1 else x
            h = b.conv(h, c * t, c * t, 3, stride, groups=c * t, act="relu6")
            h = b.conv(h, c * t, out, act=None)
            x = b.op("Add", [x, h]) if stride == 1 and c == out else h
            c = out
    x = b.conv(x, c, 1280, act="relu6")
    return b.model(b.head(x, 1280), "mobilenetv2_like")


def mobilenetv3_small(seed: int = 0) -> onnx.ModelProto:
    b = _Builder(seed)
    x, c = b.conv("input", 3, 16, 3, 2, act="hardswish"), 16
    # kernel, expanded, out, se, activation, stride (torchvision mobilenet_v3_small)
    for k, exp, out, se, act, s in (
            (3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2),
            (3, 88, 24, False, "relu", 1), (5, 96, 40, True, "hardswish", 2),
            (5, 240, 40, True, "hardswish", 1), (5, 240, 40, True, "hardswish", 1),
            (5, 120, 48, True, "hardswish", 1), (5, 144, 48, True, "hardswish", 1),
            (5, 288, 96, True, "hardswish", 2), (5, 576, 96, True, "hardswish", 1),
            (5, 576, 96, True, "hardswish", 1)):
        h = b.conv(x, c, exp, act=act) if exp != c else x
        h = b.conv(h, exp, exp, k, s, groups=exp, act=act)
        if se:
            h = b.se(h, exp, _make_divisible(exp // 4), gate="hard")
        h = b.conv(h, exp, out, act=None)
        x = b.op("Add", [x, h]) if s == 1 and c == out else h
        c = out
    x = b.conv(x, c, 576, act="hardswish")
    return b.model(b.head(x, 576), "mobilenetv3_small_like")


def efficientnet_b0(seed: int = 0) -> onnx.ModelProto:
    b = _Builder(seed)
    x, c = b.conv("input", 3, 32, 3, 2, act="silu"), 32
    for t, k, s, out, n in ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2),
                            (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4),
                            (6, 3, 1, 320, 1)):
        for i in range(n):
            stride = s if i == 0 else 1
            exp = c * t
            h = b.conv(x, c, exp, act="silu") if t != 1 else x
            h = b.conv(h, exp, exp, k, stride, groups=exp, act="silu")
            h = b.se(h, exp, max(1, c // 4))
            h = b.conv(h, exp, out, act=None)
            x = b.op("Add", [x, h]) if stride == 1 and c == out else h
            c = out
    x = b.conv(x, c, 1280, act="silu")
    return b.model(b.head(x, 1280), "efficientnet_b0_like")


def resnet18(seed: int = 0) -> onnx.ModelProto:
    b = _Builder(seed)
    x = b.conv("input", 3, 64, 7, 2)
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c = 64
    for stage, width in enumerate((64, 128, 256, 512)):
        for block in range(2):
            stride = 2 if block == 0 and stage > 0 else 1
            h = b.conv(x, c, width, 3, stride)
            h = b.conv(h, width, width, 3, act=None)
            short = b.conv(x, c, width, 1, stride, act=None) if (stride != 1 or c != width) \
                else x
            x, c = b.op("Relu", [b.op("Add", [h, short])]), width
    return b.model(b.head(x, 512), "resnet18_like")


def _make_divisible(v: int, divisor: int = 8) -> int:
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


BUILDERS = {"mobilenetv2": mobilenetv2, "mobilenetv3_small": mobilenetv3_small,
            "efficientnet_b0": efficientnet_b0, "resnet18": resnet18}


def build(name: str, seed: int = 0) -> onnx.ModelProto:
    return BUILDERS[name](seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(BUILDERS))
    parser.add_argument("out")
    args = parser.parse_args()
    onnx.save(build(args.name), args.out)


if __name__ == "__main__":
    main()
