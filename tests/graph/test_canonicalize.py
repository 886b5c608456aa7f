"""Canonicalization at load: constant subexpressions folded, dead nodes removed.

Each graph is written inline the way the exporter writes it (Paddle2ONNX conv biases
and squeeze-excite branches through ``Reshape`` of constants, the dynamo exporter's
gate reorder of LSTM weights through ``Slice``/``Concat``); the tests check that the
hidden weights become prunable and that the masked oracle holds on the canonical graph.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune import compress
from onnxprune.analysis import analyze
from onnxprune.graph import load_model
from onnxprune.graph.io import model_from_proto, normalize
from tests.builders import GraphBuilder
from tests.oracle import prune_and_check


def const(b: GraphBuilder, array: np.ndarray) -> str:
    """A ``Constant`` node, as Paddle2ONNX writes every weight and shape."""
    return b.op("Constant", [], value=numpy_helper.from_array(np.asarray(array)))


def paddle_conv(b: GraphBuilder, x: str, c_in: int, c_out: int, k: int = 3) -> str:
    """Conv without bias, then ``Add(conv, Reshape(Constant bias, Constant [1,C,1,1]))``."""
    w = const(b, b.rng.standard_normal((c_out, c_in, k, k)).astype(np.float32) * 0.3)
    y = b.op("Conv", [x, w], pads=[k // 2] * 4)
    bias = const(b, b.rng.standard_normal(c_out).astype(np.float32))
    shape = const(b, np.array([1, c_out, 1, 1], dtype=np.int64))
    return b.op("Add", [y, b.op("Reshape", [bias, shape])])


def paddle_cnn(se: bool = False) -> onnx.ModelProto:
    b = GraphBuilder(opset=11)
    x = b.input(["N", 3, 16, 16])
    h = b.op("Relu", [paddle_conv(b, x, 3, 16)])
    if se:  # squeeze-excite: pool -> conv+bias -> relu -> conv+bias -> hardsigmoid -> mul
        s = b.op("GlobalAveragePool", [h])
        s = b.op("Relu", [paddle_conv(b, s, 16, 4, k=1)])
        s = b.op("HardSigmoid", [paddle_conv(b, s, 4, 16, k=1)], alpha=0.2, beta=0.5)
        h = b.op("Mul", [h, s])
    h = b.op("Relu", [paddle_conv(b, h, 16, 16)])
    b.output(paddle_conv(b, h, 16, 8))
    return b.model()


def raw_analysis(proto: onnx.ModelProto):
    """The analysis as it was before canonicalization (normalize only)."""
    model = model_from_proto(proto)
    normalize(model)
    return analyze(model)


def test_paddle_conv_bias_by_reshape_becomes_prunable(tmp_model):
    proto = paddle_cnn()
    assert not any(g.prunable for g in raw_analysis(proto).groups)
    path = tmp_model(proto)
    loaded = load_model(path)
    assert "Reshape" not in {n.op_type for n in loaded.model.graph}
    assert "folded 3 constant subexpressions (Reshape x3)" in loaded.notes
    checked = prune_and_check(path, 0.4)
    assert sum(g.prunable for g in checked.analysis.groups) == 2
    assert checked.plan.achieved > 0.3


def test_paddle_squeeze_excite_by_reshape_becomes_prunable(tmp_model):
    proto = paddle_cnn(se=True)
    assert not any(g.prunable for g in raw_analysis(proto).groups)
    checked = prune_and_check(tmp_model(proto), 0.4)
    prunable = [g for g in checked.analysis.groups if g.prunable]
    assert len(prunable) == 3  # the SE bottleneck, the SE-gated block, the next conv
    assert checked.plan.achieved > 0.3


def reordered(b: GraphBuilder, weight: str, hidden: int, split: bool = False) -> str:
    """torch's gate order (i, f, g, o) -> ONNX's (i, o, f, c) by Slice (or one Split) and
    Concat, as the dynamo exporter writes it."""
    if split:
        gates = b.op("Split", [weight, b.ints([hidden] * 4)], n_out=4, axis=0)
        return b.op("Concat", [gates[i] for i in (0, 3, 1, 2)], axis=0)
    parts = []
    for gate in (0, 3, 1, 2):
        parts.append(b.op("Slice", [weight, b.ints([gate * hidden]),
                                    b.ints([(gate + 1) * hidden]), b.ints([0])]))
    return b.op("Concat", parts, axis=0)


def dynamo_lstm(hidden: int = 12, features: int = 6, split: bool = False) -> onnx.ModelProto:
    b = GraphBuilder(opset=18)
    x = b.input(["T", "N", features])
    axes = b.ints([0])
    w = b.op("Unsqueeze", [reordered(b, b.weight(4 * hidden, features), hidden, split), axes])
    r = b.op("Unsqueeze", [reordered(b, b.weight(4 * hidden, hidden), hidden, split), axes])
    bias = b.op("Concat", [reordered(b, b.weight(4 * hidden), hidden, split),
                           reordered(b, b.weight(4 * hidden), hidden, split)], axis=0)
    bias = b.op("Unsqueeze", [bias, axes])
    _, y_h, _ = b.op("LSTM", [x, w, r, bias], n_out=3, hidden_size=hidden)
    h = b.op("Squeeze", [y_h, axes])
    b.output(b.op("Gemm", [h, b.weight(5, hidden), b.weight(5)], transB=1))
    return b.model()


@pytest.mark.parametrize("split", [False, True], ids=["slices", "split"])
def test_dynamo_lstm_with_reordered_gates_becomes_prunable(tmp_model, split):
    proto = dynamo_lstm(split=split)
    assert not any(g.prunable for g in raw_analysis(proto).groups)
    path = tmp_model(proto)
    loaded = load_model(path)
    assert {"Slice", "Split", "Concat", "Unsqueeze"}.isdisjoint(
        n.op_type for n in loaded.model.graph)
    checked = prune_and_check(path, 0.4, dims=({"T": 5},))
    lstm = [g for g in checked.analysis.groups if g.prunable and "LSTM" in g.description]
    assert lstm and lstm[0].size == 12
    result = compress(path, 0.4, write=False)
    assert result.macs_before >= 4 * 12 * (6 + 12)  # per step: the LSTM's gates, not 0


def test_shape_of_a_dynamic_input_is_never_folded(tmp_model):
    b = GraphBuilder(opset=13)
    x = b.input(["N", 4])
    y = b.input([2, 4], name="y")
    z = b.input([8], name="z")
    relu = b.op("Relu", [x])
    batch = b.op("Gather", [b.op("Shape", [relu]), b.ints(0)], axis=0)
    shape = b.op("Concat", [b.op("Unsqueeze", [batch, b.ints([0])]), b.ints([-1])], axis=0)
    b.output(b.op("Reshape", [x, shape]), shape=["N", 4])
    fixed = b.op("Shape", [y])  # static: folds into a constant
    b.output(b.op("Add", [y, b.op("Reshape", [z, fixed])]), shape=[2, 4])
    proto = b.model()
    # an exporter's value_info traced at batch 1 must not count as proof
    proto.graph.value_info.append(helper.make_tensor_value_info(relu, TensorProto.FLOAT, [1, 4]))
    loaded = load_model(tmp_model(proto))
    ops = [n.op_type for n in loaded.model.graph]
    assert ops.count("Shape") == 1 and ops.count("Reshape") == 2
    shape_node = next(n for n in loaded.model.graph if n.op_type == "Shape")
    assert shape_node.inputs[0].name == relu
    assert list(shape_node.inputs[0].shape) == [1, 4]  # the declared shape is kept


def test_unknown_input_dims_count_as_dynamic(tmp_model):
    """``dim_value`` -1 / 0 (as Paddle2ONNX writes them) are not folded as constants."""
    b = GraphBuilder(opset=13)
    b.input([1, 4])
    b.output(b.op("Reshape", ["x", b.op("Shape", ["x"])]), shape=["M", 4])
    proto = b.model()
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    dims[0].Clear()
    dims[0].dim_value = -1
    loaded = load_model(tmp_model(proto))
    assert "Shape" in {n.op_type for n in loaded.model.graph}
    assert loaded.model.graph.inputs[0].shape[0] == -1  # declared as it was


def test_dead_nodes_are_removed_and_reported(tmp_model):
    b = GraphBuilder(opset=13)
    x = b.input(["N", 3, 8, 8])
    b.op("Relu", [b.op("Sigmoid", [x])])  # nothing reads these
    b.output(b.conv(b.op("Relu", [b.conv(x, 3, 8)]), 8, 4))
    loaded = load_model(tmp_model(b.model()))
    assert "removed 2 dead nodes" in loaded.notes
    assert {n.op_type for n in loaded.model.graph} == {"Conv", "Relu"}


def test_large_constant_of_shape_is_kept(tmp_model):
    b = GraphBuilder(opset=13)
    x = b.input(["N", 4096, 8192])
    big = b.op("ConstantOfShape", [b.ints([1, 4096, 8192])],
               value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]))
    small = b.op("ConstantOfShape", [b.ints([1, 1, 8192])],
                 value=helper.make_tensor("v", TensorProto.FLOAT, [1], [2.0]))
    b.output(b.op("Mul", [b.op("Add", [x, big]), small]))
    loaded = load_model(tmp_model(b.model()))
    ops = [n.op_type for n in loaded.model.graph]
    assert ops.count("ConstantOfShape") == 1  # 128 MiB kept, 32 KiB folded
    assert sum(v.const_value.nbytes for v in loaded.model.graph.initializers.values()) < 2**20


def test_pruned_output_keeps_names_dtypes_and_dynamic_axes(tmp_path, tmp_model):
    path = tmp_model(paddle_cnn(se=True))
    result = compress(path, 0.4, output=tmp_path / "out.onnx")
    original, pruned = onnx.load(path), onnx.load(result.output)
    for before, after in ((original.graph.input, pruned.graph.input),
                          (original.graph.output, pruned.graph.output)):
        assert [(v.name, v.type.tensor_type.elem_type) for v in before] == \
            [(v.name, v.type.tensor_type.elem_type) for v in after]
        assert before[0].type.tensor_type.shape.dim[0].dim_param == "N"
        assert after[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert any("folded" in note for note in result.notes)
    assert result.verification["max_rel_diff"] < 1e-4


def test_analyze_reports_what_canonicalization_did(tmp_model):
    import json

    from click.testing import CliRunner

    from onnxprune.cli import main

    path = tmp_model(paddle_cnn())
    result = CliRunner().invoke(main, ["analyze", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["canonicalization"] == {"folded": {"Reshape": 3}, "removed": 0, "fused": {}}
    assert "folded 3 constant subexpressions (Reshape x3)" in report["notes"]
    text = CliRunner().invoke(main, ["analyze", str(path)])
    assert "note: folded 3 constant subexpressions (Reshape x3)" in text.stdout


def test_a_failing_canonicalization_is_skipped_with_a_note(tmp_model, monkeypatch):
    import onnxprune.graph.io as io

    def broken(model):
        raise RuntimeError("folder bug")

    monkeypatch.setattr(io, "canonicalize", broken)
    loaded = load_model(tmp_model(paddle_cnn()))
    assert "canonicalization skipped (RuntimeError: folder bug)" in loaded.notes
    assert [n.op_type for n in loaded.model.graph].count("Reshape") == 3  # as loaded


def test_dequantized_constant_weights_stay_quantized(tmp_model):
    b = GraphBuilder(opset=13)
    x = b.input(["N", 3, 8, 8])
    q = b.init(np.random.default_rng(0).integers(-100, 100, (8, 3, 3, 3)).astype(np.int8))
    w = b.op("DequantizeLinear", [q, b.init(np.float32(0.01)), b.init(np.int8(0))])
    b.output(b.op("Conv", [x, w], pads=[1] * 4))
    loaded = load_model(tmp_model(b.model()))
    assert [n.op_type for n in loaded.model.graph] == ["DequantizeLinear", "Conv"]


def test_the_folders_own_notices_are_not_warnings(tmp_model, caplog):
    import logging

    with caplog.at_level(logging.INFO):
        load_model(tmp_model(dynamo_lstm(split=True)))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
