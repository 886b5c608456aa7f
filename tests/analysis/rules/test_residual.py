"""Unit tests of ``analysis/rules/residual.py``: does a tensor feed a residual stream?

Rule cases: 1 a hidden-axis normalisation (each op of the list, and ReduceMean over
the last axis in both opset forms, but not over the time axis) before a
channel-creating layer; 2 an Add/Sum with a run-time tensor (not with a constant);
the walk stops at channel-creating layers and gives up (True) past its limit.
The LSTM/GRU/Conv1d stops and the embedding decisions are in
``tests/analysis/test_embeddings.py``.
"""

from __future__ import annotations

import onnx_ir as ir
import pytest

from onnxprune.analysis.rules.residual import feeds_residual_stream
from onnxprune.graph.shapes import infer_shapes
from tests.builders import GraphBuilder
from tests.oracle import load

H = 8


def _value(b: GraphBuilder, name: str) -> ir.Value:
    """The value ``name`` of the built model, with shapes inferred (as in analysis)."""
    model = load(b.model())
    infer_shapes(model)
    return next(out for node in model.graph for out in node.outputs if out.name == name)


def _embedded(b: GraphBuilder) -> str:
    """A [N, T, H] tensor made by a Gather on a table (the value under test: 'emb_out')."""
    ids = b.input(["N", 5], name="ids", dtype=7)
    return b.op("Gather", [b.weight(20, H), ids], name="emb")


@pytest.mark.parametrize(("op", "domain"), [
    ("LayerNormalization", ""),
    ("RMSNormalization", ""),
    ("SimplifiedLayerNormalization", "com.microsoft"),
    ("SkipLayerNormalization", "com.microsoft"),
])
def test_a_hidden_axis_normalisation_is_a_residual_stream(op, domain):
    b = GraphBuilder(opset=23)
    h = b.op("Relu", [_embedded(b)])
    b.output(b.op(op, [h, b.positive(H)], domain=domain))
    assert feeds_residual_stream(_value(b, "emb_out"))


@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize(("axes", "expected"), [([-1], True), ([2], True), ([1], False),
                                                (None, True)],
                         ids=["last", "last_positive", "time", "all"])
def test_reduce_mean_counts_only_over_the_last_axis(opset, axes, expected):
    b = GraphBuilder(opset=opset)
    h = _embedded(b)
    if axes is None:
        mean = b.op("ReduceMean", [h], keepdims=1)
    elif opset >= 18:
        mean = b.op("ReduceMean", [h, b.ints(axes)], keepdims=1)
    else:
        mean = b.op("ReduceMean", [h], axes=axes, keepdims=1)
    b.output(b.op("MatMul", [mean, b.weight(H, 3)]))
    assert feeds_residual_stream(_value(b, "emb_out")) is expected


def test_reduce_mean_with_runtime_axes_is_assumed_a_stream():
    b = GraphBuilder(opset=18)
    axes = b.input([1], name="axes", dtype=7)
    b.output(b.op("ReduceMean", [_embedded(b), axes], keepdims=1))
    assert feeds_residual_stream(_value(b, "emb_out"))


@pytest.mark.parametrize("op", ["Add", "Sum"])
def test_a_join_with_a_runtime_tensor_is_a_stream(op):
    b = GraphBuilder()
    h = _embedded(b)
    pos = b.input([1, 5, H], name="pos")
    b.output(b.op("MatMul", [b.op(op, [h, pos]), b.weight(H, 3)]))
    assert feeds_residual_stream(_value(b, "emb_out"))


def test_an_add_with_a_constant_is_no_join():
    b = GraphBuilder()
    h = b.op("Add", [_embedded(b), b.weight(H)])
    b.output(b.op("MatMul", [b.op("Relu", [h]), b.weight(H, 3)]))
    assert not feeds_residual_stream(_value(b, "emb_out"))


def test_a_residual_add_after_the_next_layer_does_not_count():
    """emb -> MatMul(W) -> Add(itself): the Add sits past a channel-creating layer."""
    b = GraphBuilder()
    h = b.op("MatMul", [_embedded(b), b.weight(H, H)], name="fc")
    b.output(b.op("Add", [h, b.op("Relu", [h])]))
    assert not feeds_residual_stream(_value(b, "emb_out"))
    assert feeds_residual_stream(_value(b, "fc_out"))


def test_an_activation_matmul_does_not_stop_the_walk():
    """``x @ x^T`` creates no channels of its own: the walk goes on to the LayerNorm."""
    b = GraphBuilder(opset=17)
    h = _embedded(b)
    scores = b.op("MatMul", [h, b.op("Transpose", [h], perm=[0, 2, 1])])
    mixed = b.op("MatMul", [scores, h])
    b.output(b.op("LayerNormalization", [mixed, b.positive(H)]))
    assert feeds_residual_stream(_value(b, "emb_out"))


@pytest.mark.parametrize("layer", ["Gemm", "Einsum", "ConvTranspose"])
def test_channel_creating_layers_end_the_path(layer):
    b = GraphBuilder(opset=17)
    if layer == "ConvTranspose":
        x = b.input(["N", 3, 4, 4])
        h = b.op("Relu", [b.conv(x, 3, H, name="src")])
        h = b.op("ConvTranspose", [h, b.weight(H, H, 2, 2)], strides=[2, 2])
        b.output(b.op("Add", [h, b.input(["N", H, 8, 8], name="skip")]))
        assert not feeds_residual_stream(_value(b, "src_out"))
        return
    x = b.input(["N", H], name="x")
    h = b.op("Relu", [x], name="src")
    h = (b.op("Gemm", [h, b.weight(H, H)]) if layer == "Gemm"
         else b.op("Einsum", [h, b.weight(H, H)], equation="bi,ij->bj"))
    b.output(b.op("Add", [h, x]))
    assert not feeds_residual_stream(_value(b, "src_out"))


def test_the_walk_gives_up_as_a_stream_past_its_limit():
    b = GraphBuilder()
    h = _embedded(b)
    for _ in range(5):
        h = b.op("Relu", [h])
    b.output(b.op("MatMul", [h, b.weight(H, 3)]))
    value = _value(b, "emb_out")
    assert not feeds_residual_stream(value)
    assert feeds_residual_stream(value, limit=3)
