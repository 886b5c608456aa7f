"""Structured pruning of QDQ models: QuantizeLinear/DequantizeLinear pass channels through,
DequantizeLinear(int8 constant) is a weight source, per-channel scales are sliced with their
channels; the masked-equivalence oracle holds within QDQ_RTOL (onnxprune.quantize.tolerance)."""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import numpy_helper

from onnxprune.analysis import analyze
from onnxprune.compress import compress
from onnxprune.graph import load_model
from onnxprune.importance import score_units
from onnxprune.planning import CostModel, PlanOptions, make_plan
from onnxprune.quantize.tolerance import QDQ_RTOL, equivalence_rtol
from onnxprune.rewrite import apply_plan, channel_masks, masked_model
from tests.builders import GraphBuilder
from tests.oracle import load, prune_and_check, rel_diff, session

ROOT = pathlib.Path(__file__).resolve().parents[2]
QDQ = ROOT / "fixtures" / "models" / "quantized"
FIXTURES = [QDQ / "resnet_basic.qdq.onnx", QDQ / "digits_cnn.qdq.onnx"]
DIGITS = ROOT / "fixtures" / "models" / "digits_cnn.ts.onnx"
TRAIN = str(ROOT / "fixtures" / "data" / "digits_train.npz")


def _prune(source, target: float, criterion: str = "l1"):
    model = load(source)
    original = ir.serde.serialize_model(model)
    analysis = analyze(model)
    plan = make_plan(analysis, score_units(analysis, criterion, 1), PlanOptions(target))
    masks = channel_masks(analysis, plan.removed_units)
    apply_plan(analysis, plan.removed_units)
    return original, ir.serde.serialize_model(analysis.model), masks


def _inputs(model: onnx.ModelProto, count: int = 256) -> dict[str, np.ndarray]:
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:]
    rng = np.random.default_rng(0)
    return {model.graph.input[0].name: rng.standard_normal([count, *shape]).astype(
        np.float32) * 2}


@pytest.mark.parametrize("target", [0.3, 0.6])
@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_qdq_fixture_passes_the_oracle_within_quantization_tolerance(path, target):
    checked = prune_and_check(path, target, tol=QDQ_RTOL)
    assert checked.plan.achieved == pytest.approx(target, abs=0.05)
    # the big majority of outputs is bit-identical: deviations are rounding flips
    original, pruned, masks = _prune(path, target)
    feeds = _inputs(original)
    want = session(masked_model(original, masks)).run(None, feeds)[0]
    got = session(pruned).run(None, feeds)[0]
    assert rel_diff(got, want) <= QDQ_RTOL
    assert (got == want).mean() >= 0.97


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_per_channel_scales_and_zero_points_follow_their_channels(path):
    original, pruned, _ = _prune(path, 0.5)
    inits = {t.name: numpy_helper.to_array(t) for t in pruned.graph.initializer}
    before = {t.name: tuple(t.dims) for t in original.graph.initializer}
    sliced = 0
    for node in pruned.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        q, scale, zero = (inits[name] for name in node.input[:3])
        if scale.size > 1:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            assert scale.shape == zero.shape == (q.shape[axis],)
            sliced += q.shape != before.get(node.input[0].removesuffix("_pruned"), q.shape)
    assert sliced >= 3


def test_a_mis_sliced_scale_is_caught_by_the_tolerance():
    """The tolerance has teeth: one weight scale rotated by one channel fails it."""
    original, pruned, masks = _prune(FIXTURES[1], 0.5)
    feeds = _inputs(original)
    want = session(masked_model(original, masks)).run(None, feeds)[0]
    for tensor in pruned.graph.initializer:
        if tensor.name.endswith("weight_scale_pruned") or tensor.name == "head.1.weight_scale":
            array = numpy_helper.to_array(tensor)
            tensor.CopyFrom(numpy_helper.from_array(np.roll(array, 1), tensor.name))
            break
    else:
        pytest.fail("no per-channel weight scale found")
    assert rel_diff(session(pruned).run(None, feeds)[0], want) > QDQ_RTOL


def test_quantized_weights_count_as_params_and_score_like_floats():
    float_analysis = analyze(load_model(DIGITS).model)
    qdq_analysis = analyze(load_model(FIXTURES[1]).model)
    assert CostModel(qdq_analysis).original.params == CostModel(float_analysis).original.params
    assert [g.size for g in qdq_analysis.groups] == [g.size for g in float_analysis.groups]
    np.testing.assert_allclose(score_units(qdq_analysis, "l1"),
                               score_units(float_analysis, "l1"), rtol=0.03)


def test_compress_a_qdq_model_with_calibration_data(tmp_path):
    out = tmp_path / "q.pruned.onnx"
    result = compress(FIXTURES[1], 0.4, output=out, data=TRAIN, max_samples=128, steps=1)
    assert result.verification["max_rel_diff"] <= QDQ_RTOL
    assert equivalence_rtol(onnx.load(str(out))) == QDQ_RTOL
    assert equivalence_rtol(onnx.load(str(DIGITS))) == 1e-4
    skipped = result.calibration["recovery"]["skipped"]
    assert skipped and all("DequantizeLinear" in s for s in skipped)  # not refitted


# -- tiny graphs -------------------------------------------------------------------------
def _qweight(b: GraphBuilder, array: np.ndarray, axis: int) -> str:
    """DequantizeLinear of a symmetric per-channel int8 copy of ``array``."""
    other = tuple(i for i in range(array.ndim) if i != axis)
    scale = (np.abs(array).max(axis=other) / 127).astype(np.float32)
    shape = [1] * array.ndim
    shape[axis] = -1
    q = np.clip(np.round(array / scale.reshape(shape)), -127, 127).astype(np.int8)
    return b.op("DequantizeLinear", [b.init(q), b.init(scale),
                                     b.init(np.zeros(scale.shape, np.int8))], axis=axis)


def _qdq(b: GraphBuilder, x: str, channels: int | None = None) -> str:
    """Per-tensor (or, with ``channels``, per-channel on axis 1) int8 Q -> DQ."""
    scale = np.float32(0.05) if channels is None else \
        np.linspace(0.03, 0.08, channels).astype(np.float32)
    zero = np.zeros(np.shape(scale), np.int8)
    q = b.op("QuantizeLinear", [x, b.init(scale), b.init(zero)], axis=1)
    return b.op("DequantizeLinear", [q, b.init(scale), b.init(zero)], axis=1)


def test_per_channel_activation_quantization_is_sliced_with_the_channels():
    b = GraphBuilder(opset=17)
    x = _qdq(b, b.input(["N", 3, 8, 8]))
    h = b.op("Conv", [x, _qweight(b, b.rng.standard_normal((16, 3, 3, 3)), 0),
                      b.weight(16)], name="c1", pads=[1] * 4)
    h = _qdq(b, b.op("Relu", [h]), channels=16)
    b.output(b.op("Conv", [h, _qweight(b, b.rng.standard_normal((4, 16, 3, 3)), 0)],
                  name="c2", pads=[1] * 4))
    checked = prune_and_check(b.model(), 0.4, tol=QDQ_RTOL)
    kept = [t for t in checked.pruned.graph.initializer if len(t.dims) == 1]
    assert any(t.data_type == onnx.TensorProto.INT8 and t.dims[0] < 16 for t in kept)
    roles = {c.role for c in checked.analysis.ctx.couplings}
    assert "qparam" in roles


def test_quantized_gemm_and_matmul_weights_with_int32_bias():
    b = GraphBuilder(opset=17)
    x = b.input(["N", 8])
    w1 = b.rng.standard_normal((12, 8)).astype(np.float32)
    bias = (b.rng.standard_normal(12) * 100).astype(np.int32)
    bias_dq = b.op("DequantizeLinear", [b.init(bias), b.init(np.full(12, 0.01, np.float32)),
                                        b.init(np.zeros(12, np.int32))], axis=0)
    h = b.op("Gemm", [x, _qweight(b, w1, 0), bias_dq], name="fc1", transB=1)
    h = _qdq(b, b.op("Relu", [h]))
    w2 = b.rng.standard_normal((12, 5)).astype(np.float32)
    b.output(b.op("MatMul", [h, _qweight(b, w2, 1)], name="mm"))
    checked = prune_and_check(b.model(), 0.5, tol=QDQ_RTOL)
    inits = {t.name: numpy_helper.to_array(t) for t in checked.pruned.graph.initializer}
    kept = checked.plan.kept[0]
    assert kept < 12
    assert sorted(a.shape for a in inits.values() if a.ndim == 2) == [(kept, 5), (kept, 8)]
    assert [a.shape for a in inits.values() if a.dtype == np.int32] == [(kept,)] * 2


def _reasons(b: GraphBuilder) -> str:
    analysis = analyze(ir.serde.deserialize_model(b.model()))
    first = next(g for g in analysis.groups if g.sources[0].node == "a")
    assert not first.prunable
    return " ".join(first.reasons)


def test_a_quantized_weight_read_by_two_layers_blocks_its_input():
    b = GraphBuilder(opset=17)
    h = b.conv(b.input(["N", 4, 8, 8]), 4, 4, name="a")
    shared = _qweight(b, b.rng.standard_normal((4, 4, 3, 3)), 0)
    left = b.op("Conv", [h, shared], name="b", pads=[1] * 4)
    right = b.op("Conv", [h, shared], name="d", pads=[1] * 4)
    b.output(b.conv(b.op("Add", [left, right]), 4, 2, name="c"))
    assert "weight is not a constant initializer" in _reasons(b)


def test_blocked_quantization_blocks_the_channels():
    b = GraphBuilder(opset=21)
    h = b.conv(b.input(["N", 4, 8, 8]), 4, 4, name="a")
    scale = b.init(np.full((1, 4, 8, 4), 0.1, np.float32))
    q = b.op("QuantizeLinear", [h, scale], axis=3, block_size=2)
    h = b.op("DequantizeLinear", [q, scale], axis=3, block_size=2)
    b.output(b.conv(h, 4, 2, name="c"))
    assert "blocked quantization" in _reasons(b)
