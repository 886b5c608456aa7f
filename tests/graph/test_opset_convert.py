"""Older opsets are converted at load (onnx.version_converter), not refused."""

from __future__ import annotations

import json

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
