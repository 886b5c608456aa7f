"""Training losses read the logits of activated outputs; the ONNX graph equals its numpy twin."""

from __future__ import annotations

import numpy as np
import pytest

from onnxprune.errors import DataError, UsageError
from onnxprune.graph import runtime
from onnxprune.graph.outputs import output_heads
from onnxprune.training.loss_rows import class_targets, log_softmax
from onnxprune.training.losses import LOSS, append_loss, plan_loss
from onnxprune.training.trainer import tensor_values
from tests.builders import GraphBuilder

BATCH = 4


def head_model(activation: str | None, opset: int = 17, seed: int = 0, rank: int = 2,
               **attrs):
    """x[N, 3, 4, 4] -> Conv(5, 1x1) -> [Flatten-free rank-4 | GAP+Flatten rank-2]
    -> activation (Softmax/LogSoftmax/Sigmoid or none) -> output."""
    b = GraphBuilder(opset=opset, seed=seed)
    x = b.input(["N", 3, 4, 4], name="x")
    h = b.conv(x, 3, 5, k=1, name="conv")
    if rank == 2:
        h = b.op("Flatten", [b.op("GlobalAveragePool", [h])], name="logits")
    y = b.op(activation, [h], name="head", **attrs) if activation else h
    b.output(b.op("Identity", [y], name="out"))
    return b.model()


def graph_loss(model, plan, feeds, loss_feeds) -> float:
    session = runtime.make_session(append_loss(model, plan), optimize=False)
    names = {i.name for i in session.get_inputs()}
    value = session.run([LOSS], {k: v for k, v in {**feeds, **loss_feeds}.items()
                                 if k in names})[0]
    return float(value)


CASES = [
    pytest.param("Softmax", 17, 2, {"axis": 1}, "kl", id="softmax_rank2"),
    pytest.param("Softmax", 11, 4, {"axis": 1}, "kl", id="softmax_opset11_coerced_rank4"),
    pytest.param("Softmax", 17, 4, {"axis": 1}, "kl", id="softmax_opset17_channel_axis"),
    pytest.param("LogSoftmax", 13, 2, {"axis": -1}, "kl", id="log_softmax"),
    pytest.param("Sigmoid", 17, 4, {}, "bce", id="sigmoid"),
    pytest.param(None, 17, 2, {}, "kl", id="plain_logits"),
    pytest.param(None, 17, 4, {}, "mse", id="plain_values"),
]


@pytest.mark.parametrize("activation,opset,rank,attrs,kind", CASES)
def test_distillation_graph_equals_numpy_twin_and_reads_the_logits(activation, opset, rank,
                                                                   attrs, kind):
    teacher = head_model(activation, opset, seed=0, rank=rank, **attrs)
    student = head_model(activation, opset, seed=1, rank=rank, **attrs)
    heads = output_heads(student)
    feeds = {"x": np.random.default_rng(0).standard_normal((BATCH, 3, 4, 4)).astype(np.float32)}
    values, targets = tensor_values(student, heads, feeds), tensor_values(teacher, heads, feeds)
    plan = plan_loss("distill", heads, values, targets, temperature=2.0)
    (term,) = plan.terms
    assert term.kind == kind
    expected_reads = heads[0].logits if activation else "out_out"
    assert term.reads == expected_reads and plan.to_dict()["terms"][0]["reads"] == expected_reads
    assert term.reason
    loss_feeds = plan.feeds(targets, None)
    numpy_value = plan.value(values, loss_feeds)
    assert graph_loss(student, plan, feeds, loss_feeds) == pytest.approx(numpy_value, rel=1e-4)
    assert numpy_value > 1e-4  # different weights: a real loss
    # the teacher against itself: KL and MSE vanish (BCE keeps the teacher's entropy)
    own = plan.value(targets, loss_feeds)
    assert own < 0.01 * numpy_value if kind != "bce" else own < numpy_value


def test_kl_on_the_logits_of_a_softmax_head_is_the_kl_of_temperature_softmaxes():
    teacher, student = head_model("Softmax", seed=0, axis=1), head_model("Softmax", seed=1, axis=1)
    heads = output_heads(student)
    feeds = {"x": np.random.default_rng(1).standard_normal((BATCH, 3, 4, 4)).astype(np.float32)}
    s, t = tensor_values(student, heads, feeds), tensor_values(teacher, heads, feeds)
    plan = plan_loss("distill", heads, s, t, temperature=3.0)
    zs, zt = (np.asarray(v[heads[0].logits], np.float64) / 3.0 for v in (s, t))
    p = np.exp(log_softmax(zt, 1))
    expected = 9.0 * float((p * (log_softmax(zt, 1) - log_softmax(zs, 1))).sum()) / BATCH
    assert plan.value(s, plan.feeds(t, None)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("activation,opset,rank,kind", [
    ("Softmax", 11, 2, "ce"), ("Softmax", 17, 4, "ce"), ("Sigmoid", 17, 2, "bce"),
    (None, 17, 2, "ce")])
def test_cross_entropy_with_labels_reads_the_logits(activation, opset, rank, kind):
    model = head_model(activation, opset, rank=rank, **({"axis": 1} if activation == "Softmax"
                                                        else {}))
    heads = output_heads(model)
    feeds = {"x": np.random.default_rng(2).standard_normal((BATCH, 3, 4, 4)).astype(np.float32)}
    values = tensor_values(model, heads, feeds)
    plan = plan_loss("ce", heads, values)
    (term,) = plan.terms
    assert term.kind == kind
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, term.shape) if kind == "bce" else \
        rng.integers(0, 5, term.rows)
    loss_feeds = plan.feeds(None, labels)
    assert graph_loss(model, plan, feeds, loss_feeds) == pytest.approx(
        plan.value(values, loss_feeds), rel=1e-4)


def test_class_targets_follow_the_class_axis():
    onehot = class_targets(np.array([0, 2, 1, 2]), (1, 3, 2, 2), axis=1)
    assert onehot.shape == (1, 3, 2, 2)
    assert onehot.argmax(axis=1).reshape(-1).tolist() == [0, 2, 1, 2]


def test_label_errors_say_what_to_pass():
    model = head_model("Softmax", axis=1)
    heads = output_heads(model)
    feeds = {"x": np.zeros((BATCH, 3, 4, 4), np.float32)}
    plan = plan_loss("ce", heads, tensor_values(model, heads, feeds))
    with pytest.raises(DataError, match="needs labels"):
        plan.feeds(None, None)
    with pytest.raises(DataError, match="one class id per sample"):
        plan.feeds(None, np.zeros(BATCH + 1, np.int64))
    with pytest.raises(UsageError, match="unknown loss"):
        plan_loss("hinge", heads, tensor_values(model, heads, feeds))


@pytest.mark.parametrize("activation,attrs", [("Sigmoid", {}), ("LogSoftmax", {"axis": 1})])
def test_fine_tuning_trains_through_the_logits_loss_of_activated_heads(activation, attrs):
    from onnxprune.data import DataSource, model_input_specs
    from onnxprune.graph.io import model_from_proto
    from onnxprune.training import finetune

    teacher = head_model(activation, rank=4 if activation == "Sigmoid" else 2, **attrs)
    student = head_model(activation, seed=1, rank=4 if activation == "Sigmoid" else 2, **attrs)
    x = np.random.default_rng(0).standard_normal((64, 3, 4, 4)).astype(np.float32)
    data = DataSource.from_arrays({"x": x}, model_input_specs(model_from_proto(teacher)))
    result = finetune(student, data, teacher=teacher, epochs=4, lr=1e-2, batch_size=16,
                      isolate=False)
    (term,) = result.loss["terms"]
    assert term["reads"] == output_heads(teacher)[0].logits != term["output"]
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0], losses
    assert result.exported_loss == pytest.approx(result.eval_loss, rel=1e-4, abs=1e-6)
