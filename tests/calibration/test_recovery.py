"""Training-free recovery: bias folding and least-squares refits."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from onnxprune.analysis import analyze
from onnxprune.errors import UsageError
from onnxprune.graph.runtime import to_runtime_proto
from onnxprune.recovery import recover
from onnxprune.recovery.lsq import conv_patches
from onnxprune.rewrite import apply_plan, channel_masks, masked_model
from tests.builders import GraphBuilder
from tests.calibration.models import ir_model, mlp, random_data, small_cnn
from tests.oracle import session


def prune_source(proto: onnx.ModelProto, node: str, channels: list[int]):
    """Remove ``channels`` of source ``node``; return (analysis, removed, original, pruned)."""
    model = ir_model(proto)
    original = to_runtime_proto(ir.serde.serialize_model(model))
    analysis = analyze(model)
    source = next(s for s in analysis.ctx.sources if s.node == node)
    removed = np.zeros(analysis.num_units, dtype=bool)
    removed[analysis.element_unit[source.start + np.array(channels)]] = True
    masks = channel_masks(analysis, removed)
    apply_plan(analysis, removed)
    pruned = to_runtime_proto(ir.serde.serialize_model(analysis.model))
    return analysis, removed, original, pruned, masks


def outputs(proto, data):
    return np.concatenate([session(proto).run(None, f)[0] for f in data.batches(16)])


CASES = {
    "conv": (lambda: small_cnn(dead=(1, 4)), "conv1", [1, 4]),
    "gemm": (lambda: mlp(dead=(0, 5)), "fc1", [0, 5]),
    "matmul": (lambda: mlp(dead=(2,), matmul=True), "fc1", [2]),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("method", ["bias", "lsq"])
def test_recovery_is_identity_when_removed_channels_are_zero(case, method):
    make, node, channels = CASES[case]
    analysis, removed, original, pruned, masks = prune_source(make(), node, channels)
    data = random_data(analysis.model, n=48)
    report = recover(analysis, removed, original, data, method, batch_size=16)
    assert report.layers, report
    recovered = to_runtime_proto(ir.serde.serialize_model(analysis.model))
    onnx.checker.check_model(recovered)
    got, before = outputs(recovered, data), outputs(pruned, data)
    masked = outputs(masked_model(original, masks), data)
    if method == "bias":
        np.testing.assert_array_equal(got, before)   # zero correction, bit for bit
    else:
        np.testing.assert_allclose(got, before, rtol=1e-4, atol=1e-5 * np.abs(before).max())
    np.testing.assert_allclose(got, masked, rtol=1e-4, atol=1e-5 * np.abs(masked).max())


@pytest.mark.parametrize("case", ["gemm", "conv1x1"])
def test_bias_recovery_restores_the_mean_output_of_a_linear_consumer(case):
    if case == "gemm":
        b = GraphBuilder(seed=3)
        x = b.input(["N", 8], name="input")
        h = b.op("Relu", [b.op("Gemm", [x, b.weight(8, 6), b.weight(6)], name="fc1")])
        b.output(b.op("Gemm", [h, b.weight(6, 3), b.weight(3)], name="fc2", alpha=0.7))
        node = "fc1"
    else:  # 1x1 conv (no padding): the mean correction is exact
        b = GraphBuilder(seed=3)
        x = b.input(["N", 3, 6, 6], name="input")
        h = b.op("Relu", [b.conv(x, 3, 6, name="conv1")])
        b.output(b.conv(h, 6, 4, k=1, bias=False, name="conv2"))
        node = "conv1"
    analysis, removed, original, pruned, _ = prune_source(b.model(), node, [1, 2, 4])
    data = random_data(analysis.model, n=200)
    recover(analysis, removed, original, data, "bias", batch_size=64)
    recovered = to_runtime_proto(ir.serde.serialize_model(analysis.model))
    axes = (0,) if case == "gemm" else (0, 2, 3)   # per output feature / channel
    want = outputs(original, data).mean(axis=axes)
    np.testing.assert_allclose(outputs(recovered, data).mean(axis=axes), want, rtol=1e-4,
                               atol=1e-5)
    assert not np.allclose(outputs(pruned, data).mean(axis=axes), want, atol=1e-3)


def test_lsq_beats_bias_beats_none_on_calibration_error():
    analysis, _, original, pruned, _ = prune_source(small_cnn(seed=5), "conv1", [0, 2, 3])
    data = random_data(analysis.model, n=96)
    reference = outputs(original, data)
    errors = {"none": np.square(outputs(pruned, data) - reference).mean()}
    for method in ("bias", "lsq"):
        analysis_m, removed_m, original_m, _, _ = prune_source(small_cnn(seed=5), "conv1",
                                                               [0, 2, 3])
        recover(analysis_m, removed_m, original_m, data, method, batch_size=32)
        model = to_runtime_proto(ir.serde.serialize_model(analysis_m.model))
        errors[method] = np.square(outputs(model, data) - reference).mean()
    assert errors["lsq"] < errors["bias"] < errors["none"], errors


@pytest.mark.parametrize("attrs", [
    {"pads": [1, 0, 2, 1], "strides": [2, 1]},
    {"pads": [2, 2, 2, 2], "dilations": [2, 2]},
    {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
    {"auto_pad": "SAME_LOWER"},
    {"auto_pad": "VALID", "strides": [1, 2]},
], ids=["asym_stride", "dilated", "same_upper", "same_lower", "valid"])
def test_conv_patches_reproduce_the_convolution(attrs):
    b = GraphBuilder(seed=2)
    x = b.input([2, 3, 7, 6], name="input")
    w = b.rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b.output(b.op("Conv", [x, b.init(w)], name="conv", **attrs))
    proto = b.model()
    feeds = {"input": b.rng.standard_normal((2, 3, 7, 6)).astype(np.float32)}
    want = session(proto).run(None, feeds)[0]
    node = next(n for n in ir_model(proto).graph if n.op_type == "Conv")
    patches, out_shape = conv_patches(node, feeds["input"].astype(np.float64), (3, 3), None)
    got = (patches @ w.reshape(4, -1).T).reshape(*out_shape, 4)
    np.testing.assert_allclose(np.moveaxis(got, -1, 1), want, rtol=1e-4, atol=1e-5)


def test_unknown_method_is_a_usage_error():
    analysis, removed, original, _, _ = prune_source(mlp(), "fc1", [0])
    with pytest.raises(UsageError, match="unknown recovery"):
        recover(analysis, removed, original, random_data(analysis.model, 4), "magic")


def _token_mlp_with_bias_add() -> onnx.ModelProto:
    """[N, 4, 8] -> MatMul + Add(bias) -> Relu -> MatMul + Add(bias): how exporters write
    Linear layers on 3-D inputs (the bias in a separate Add)."""
    b = GraphBuilder(seed=7)
    x = b.input(["N", 4, 8], name="input")
    h = b.op("MatMul", [x, b.weight(8, 6)], name="fc1")
    h = b.op("Relu", [b.op("Add", [h, b.weight(6)], name="fc1_add")])
    y = b.op("MatMul", [h, b.weight(6, 5)], name="fc2")
    b.output(b.op("Add", [y, b.weight(5, scale=3.0)], name="fc2_add"))
    return b.model()


@pytest.mark.parametrize("method", ["bias", "lsq"])
def test_recovery_updates_an_existing_matmul_bias_add(method):
    """The bias lives in the Add after the MatMul: recovery writes it there (no second
    Add), and the refit keeps it (its target is the Add's output, bias included)."""
    analysis, removed, original, pruned, _ = prune_source(_token_mlp_with_bias_add(), "fc1",
                                                          [0, 3])
    data = random_data(analysis.model, n=96)
    recover(analysis, removed, original, data, method, batch_size=32)
    recovered = to_runtime_proto(ir.serde.serialize_model(analysis.model))
    assert sum(n.op_type == "Add" for n in recovered.graph.node) == 2
    reference = outputs(original, data)
    error = np.square(outputs(recovered, data) - reference).mean()
    assert error < np.square(outputs(pruned, data) - reference).mean()
    assert error < 0.1 * np.square(reference).mean()   # the 3.0-scale bias is kept


def test_pruning_a_pruned_model_again_keeps_node_names_unique(tmp_path):
    """A second run over onnxprune's own output (progressive steps do this) used to give
    the second recovery Add the name of the first."""
    from onnxprune.compress import compress

    path = tmp_path / "m.onnx"
    b = GraphBuilder(seed=2)
    x = b.input(["N", 8], name="input")
    h = b.op("Relu", [b.op("MatMul", [x, b.weight(8, 16)], name="fc1")])
    h = b.op("Relu", [b.op("MatMul", [h, b.weight(16, 12)], name="fc2")])
    b.output(b.op("MatMul", [h, b.weight(12, 4)], name="fc3"))
    onnx.save(b.model(), path)
    np.savez(tmp_path / "d.npz", input=np.random.default_rng(0).standard_normal((64, 8))
             .astype(np.float32))
    first, second = tmp_path / "a.onnx", tmp_path / "b.onnx"
    compress(path, 0.3, output=first, data=str(tmp_path / "d.npz"), steps=1, recover="bias",
             criterion="l1", round_to=1)
    compress(first, 0.3, output=second, data=str(tmp_path / "d.npz"), steps=1,
             recover="bias", criterion="l1", round_to=1)
    once = sum(n.op_type == "Add" for n in onnx.load(str(first)).graph.node)
    names = [n.name for n in onnx.load(str(second)).graph.node]
    assert len(names) == len(set(names))
    # the second recovery updates the bias Adds of the first instead of adding more
    assert once >= 1 and sum(n.op_type == "Add" for n in onnx.load(str(second)).graph.node) \
        == once
