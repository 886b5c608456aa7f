"""Output semantics: which tensor every comparison with the original reads."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import pytest

from onnxprune.graph.outputs import output_heads, softmax_rows, with_logit_outputs
from onnxprune.graph.runtime import make_session


def _model(body: str, opset: int = 17, outputs: str = "float[N, 4] y") -> onnx.ModelProto:
    text = f"""
    <ir_version: 8, opset_import: ["" : {opset}]>
    g (float[N, 8] x) => ({outputs})
    <float[8, 4] w = {{{", ".join(["0.1"] * 32)}}}>
    {{
        z = MatMul(x, w)
        {body}
    }}
    """
    return onnx.parser.parse_model(text)


@pytest.mark.parametrize("body, kind", [
    ("y = Softmax<axis=-1>(z)", "softmax"),
    ("y = LogSoftmax<axis=1>(z)", "log_softmax"),
    ("y = Sigmoid(z)", "sigmoid"),
    ("y = Relu(z)", "plain"),
], ids=["softmax", "log_softmax", "sigmoid", "relu_is_plain"])
def test_activation_before_the_output_names_its_input_as_logits(body: str, kind: str) -> None:
    (head,) = output_heads(_model(body))
    assert head.kind == kind
    assert head.logits == ("z" if kind != "plain" else "y")
    assert (head.axis == 1) if kind in ("softmax", "log_softmax") else head.axis is None


def test_softmax_behind_layout_ops_is_found() -> None:
    model = _model("p = Softmax<axis=1>(z)\n t = Transpose<perm=[1, 0]>(p)\n"
                   "y = Identity(t)", outputs="float[4, N] y")
    (head,) = output_heads(model)
    assert (head.kind, head.logits, head.path) == ("softmax", "z", ("Transpose", "Identity"))


def test_a_tensor_read_elsewhere_stops_the_walk() -> None:
    model = _model("p = Softmax<axis=1>(z)\n y = Identity(p)\n q = Relu(p)",
                   outputs="float[N, 4] y, float[N, 4] q")
    heads = output_heads(model)
    assert [h.kind for h in heads] == ["plain", "plain"]


def test_opset_11_softmax_defaults_to_axis_1_and_flattens() -> None:
    (head,) = output_heads(_model("y = Softmax(z)", opset=11))
    assert (head.axis, head.coerced) == (1, True)
    logits = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    assert softmax_rows(logits, head).shape == (2, 12)


def test_opset_13_softmax_rows_move_the_axis_last() -> None:
    model = _model("y = Softmax<axis=1>(z)", opset=13)
    (head,) = output_heads(model)
    logits = np.random.default_rng(0).standard_normal((2, 3, 5))
    rows = softmax_rows(logits, head)
    assert rows.shape == (10, 3)
    np.testing.assert_array_equal(rows[0], logits[0, :, 0])


def test_integer_outputs_are_ignored() -> None:
    model = _model("p = Softmax<axis=1>(z)\n y = ArgMax<axis=1>(p)", outputs="int64[N, 1] y")
    (head,) = output_heads(model)
    assert head.kind == "ignored"


def test_logit_outputs_run_and_equal_the_pre_activation() -> None:
    model = _model("y = Softmax<axis=-1>(z)")
    heads = output_heads(model)
    session = make_session(with_logit_outputs(model, heads))
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    y, z = session.run(None, {"x": x})
    np.testing.assert_allclose(z, x @ np.full((8, 4), 0.1, np.float32), rtol=1e-5)
    np.testing.assert_allclose(y, np.exp(z) / np.exp(z).sum(1, keepdims=True), rtol=1e-5)
