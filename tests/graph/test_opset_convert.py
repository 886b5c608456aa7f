"""Older opsets are converted at load (onnx.version_converter), not refused."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxprune import compress
from onnxprune.errors import UnsupportedModelError
from onnxprune.graph import load_model
from tests.builders import GraphBuilder
from tests.oracle import prune_and_check


def old_cnn() -> onnx.ModelProto:
    """Opset 9, IR 3, as classic converters wrote it: weights made by ConstantOfShape
    and constant arithmetic, every initializer also listed among the graph inputs."""
    b = GraphBuilder(opset=9)
    x = b.input(["N", 3, 8, 8])
    fill = helper.make_tensor("v", TensorProto.FLOAT, [1], [0.1])
    bias = b.op("Add", [b.op("ConstantOfShape", [b.ints([16])], value=fill), b.weight(16)])
    h = b.op("Conv", [x, b.weight(16, 3, 3, 3), bias], pads=[1] * 4)
    h = b.op("Relu", [b.bn(h, 16)])
    half = helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])
    w2 = b.op("Mul", [b.weight(4, 16, 3, 3),
                      b.op("ConstantOfShape", [b.ints([4, 16, 3, 3])], value=half)])
    b.output(b.op("Conv", [h, w2], pads=[1] * 4), shape=["N", 4, 8, 8])
    return ir3(b)


def ir3(b: GraphBuilder) -> onnx.ModelProto:
    """IR version 3: every initializer is also a graph input."""
    model = b.model(ir_version=3)
    for init in model.graph.initializer:
        model.graph.input.append(helper.make_tensor_value_info(
            init.name, init.data_type, list(init.dims)))
    onnx.checker.check_model(model)
    return model


def test_opset9_ir3_model_is_converted_folded_and_pruned(tmp_model):
    path = tmp_model(old_cnn())
    loaded = load_model(path)
    assert loaded.opset == 11
    assert loaded.notes[0].startswith("converted from opset 9 to 11")
    assert [v.name for v in loaded.model.graph.inputs] == ["x"]
    assert {n.op_type for n in loaded.model.graph} == {"Conv", "BatchNormalization", "Relu"}
    checked = prune_and_check(path, 0.4)
    assert checked.plan.achieved > 0.3
    assert checked.pruned.opset_import[0].version == 11


def test_converted_model_is_written_at_the_new_opset(tmp_path, tmp_model):
    path = tmp_model(old_cnn())
    result = compress(path, 0.4, output=tmp_path / "out.onnx")
    assert result.verification["max_rel_diff"] < 1e-4
    written = onnx.load(result.output)
    assert {o.version for o in written.opset_import if o.domain in ("", "ai.onnx")} == {11}
    report = json.loads((tmp_path / "out.onnx.report.json").read_text())
    assert any(n.startswith("converted from opset 9 to 11") for n in report["notes"])


def unconvertible() -> onnx.ModelProto:
    """Opset 6 BatchNormalization with ``spatial=0``: no opset-7+ equivalent."""
    b = GraphBuilder(opset=6)
    x = b.input(["N", 3, 8, 8])
    h = b.op("BatchNormalization", [b.conv(x, 3, 4), b.positive(4), b.weight(4), b.weight(4),
                                    b.positive(4)], spatial=0)
    b.output(h, shape=["N", 4, 8, 8])
    return b.model()


def test_conversion_failure_is_unsupported_with_the_converters_reason(tmp_model):
    with pytest.raises(UnsupportedModelError,
                       match=r"opset 6 is below 11 .* cannot convert .*spatial must have value 1"):
        load_model(tmp_model(unconvertible()))


def test_classic_opset9_ops_convert_and_prune(tmp_model):
    """Upsample (-> Resize), MaxPool, Dropout, Flatten + Gemm, Softmax: as old exports."""
    b = GraphBuilder(opset=9)
    x = b.input(["N", 3, 16, 16])
    h = b.op("MaxPool", [b.op("Relu", [b.bn(b.conv(x, 3, 16), 16)])], kernel_shape=[2, 2],
             strides=[2, 2])
    scales = b.init(np.array([1, 1, 2, 2], np.float32))
    h = b.op("Upsample", [b.op("Relu", [b.conv(h, 16, 16)]), scales], mode="nearest")
    h = b.op("Dropout", [b.op("Relu", [b.conv(b.op("Concat", [h, b.conv(x, 3, 8)], axis=1),
                                              24, 16)])], ratio=0.5)
    h = b.op("Flatten", [b.op("GlobalAveragePool", [h])], axis=1)
    b.output(b.op("Gemm", [h, b.weight(10, 16), b.weight(10)], transB=1), shape=["N", 10])
    path = tmp_model(ir3(b))
    assert "Resize" in {n.op_type for n in load_model(path).model.graph}
    checked = prune_and_check(path, 0.4)
    assert sum(g.prunable for g in checked.analysis.groups) == 4
