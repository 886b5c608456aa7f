"""Per-sample gate gradients where a probe's rows are not the batch (tokens, sequences)."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from onnxprune.analysis import analyze
from onnxprune.calibration.gradients import row_layouts
from onnxprune.calibration.probes import Probe, find_probes
from onnxprune.errors import UnsupportedModelError
from onnxprune.graph.runtime import to_runtime_proto
from onnxprune.importance.data_criteria import taylor_scores
from tests.builders import GraphBuilder
from tests.calibration.models import ir_model, random_data
from tests.calibration.test_criteria import per_sample_loss

T, C, HIDDEN, K = 3, 4, 6, 5


def token_mlp(sequence_first: bool) -> onnx.ModelProto:
    """x [N, T, C] -> rows of tokens -> MatMul -> Relu -> MatMul -> mean over tokens.

    ``sequence_first`` flattens ``[T, N, C]`` (rows sample-minor), else ``[N, T, C]``
    (rows sample-major); the hidden layer's input is a ``[N*T, HIDDEN]`` probe."""
    b = GraphBuilder(seed=3)
    x = b.input(["N", T, C], name="input")
    if sequence_first:
        x = b.op("Transpose", [x], perm=[1, 0, 2])
    rows = b.op("Reshape", [x, b.ints([-1, C])])
    h = b.op("Relu", [b.op("MatMul", [rows, b.weight(C, HIDDEN)])], name="act")
    y = b.op("MatMul", [h, b.weight(HIDDEN, K)], name="fc2")
    y = b.op("Reshape", [y, b.ints([T, -1, K] if sequence_first else [-1, T, K])])
    b.output(b.op("ReduceMean", [y], axes=[0 if sequence_first else 1], keepdims=0))
    return b.model()


def _hidden_probe(analysis) -> Probe:
    return next(p for p in find_probes(analysis) if p.name == "act_out")


@pytest.mark.parametrize("sequence_first,layout", [(False, "major"), (True, "minor")])
def test_row_layout_is_measured(sequence_first, layout):
    model = ir_model(token_mlp(sequence_first))
    analysis = analyze(model)
    proto = to_runtime_proto(ir.serde.serialize_model(model))
    feeds = next(random_data(model, n=4).batches(4))
    probe = _hidden_probe(analysis)
    assert row_layouts(proto, [probe], feeds, 4) == {probe.name: (layout, 4 * T)}


def test_rows_mixing_samples_are_refused():
    b = GraphBuilder()
    x = b.input(["N", C], name="input")
    mixed = b.op("CumSum", [x, b.ints(0)], name="mix")
    b.output(b.op("MatMul", [mixed, b.weight(C, K)]))
    proto = b.model()
    feeds = {"input": np.random.default_rng(0).standard_normal((4, C)).astype(np.float32)}
    probe = Probe("mix_out", 1, np.arange(C), 2)
    with pytest.raises(UnsupportedModelError, match=r"separate rows.*--criterion activation"):
        row_layouts(proto, [probe], feeds, 4)


@pytest.mark.parametrize("sequence_first", [False, True])
def test_token_rows_give_per_sample_fisher(sequence_first):
    """mean over samples of (dL_n/dg)^2, g scaling a hidden unit in every token of the
    sample, checked by central differences; batches of 5 over 12 samples (padding)."""
    model = ir_model(token_mlp(sequence_first))
    analysis = analyze(model)
    data = random_data(model, n=12, labels=K)
    scores = taylor_scores(analysis, data, batch_size=5, use_labels=True)
    proto = to_runtime_proto(ir.serde.serialize_model(model))
    probe = _hidden_probe(analysis)
    feeds, labels = next(data.batches(12)), data.labels
    eps = 1e-2
    checked = 0
    for unit in range(HIDDEN):
        element = probe.ids[unit]
        up = per_sample_loss(proto, probe, unit, 1 + eps, feeds, labels)
        down = per_sample_loss(proto, probe, unit, 1 - eps, feeds, labels)
        fisher = np.mean(((up - down) / (2 * eps)) ** 2)
        score = scores[analysis.element_unit[element]]
        if fisher > 1e-8:
            assert score == pytest.approx(fisher, rel=2e-2)
            checked += 1
    assert checked >= 3


@pytest.mark.parametrize("name", ["gpt2_tiny.ts", "gpt2_tiny.dynamo", "llama_gqa_tiny.ts",
                                  "bert_tiny.ts"])
def test_taylor_scores_sequence_models(name):
    """Token-row probes (Gemm over batch*sequence rows) and sequence-first RNN layouts:
    every prunable unit gets a finite score and some score is positive."""
    import onnxruntime as ort

    from onnxprune.data import DataSource, model_input_specs
    from onnxprune.graph import load_model
    from tests.conftest import MODELS
    from tests.oracle import feeds_for

    path = MODELS / f"{name}.onnx"
    model = load_model(path).model
    inputs = ort.InferenceSession(str(path)).get_inputs()
    feeds = feeds_for(ort.InferenceSession(str(path)), 6, dims={"seq": 5, "sequence": 5},
                      int_high={arg.name: 50 if arg.name == "input_ids" else 2 for arg in inputs})
    data = DataSource.from_arrays(feeds, model_input_specs(model))
    analysis = analyze(model)
    scores = taylor_scores(analysis, data, 4)
    prunable = np.concatenate([g.units[~g.blocked] for g in analysis.prunable_groups])
    assert np.all(np.isfinite(scores)) and scores[prunable].max() > 0


def test_taylor_refuses_scoring_through_a_recurrent_layer():
    """gru_seq's embedding is a prunable group whose channels feed the GRU: their
    gradient would run through ORT training's GRU gradient, which segfaults (1.19.2).
    Taylor refuses before building anything, so ``auto`` falls back to activations."""
    from onnxprune.data import DataSource, model_input_specs
    from onnxprune.errors import UnsupportedModelError
    from onnxprune.graph import load_model
    from tests.conftest import MODELS

    model = load_model(MODELS / "gru_seq.ts.onnx").model
    ids = np.random.default_rng(0).integers(0, 50, (6, 5)).astype(np.int64)
    data = DataSource.from_arrays({"input_ids": ids}, model_input_specs(model))
    analysis = analyze(model)
    with pytest.raises(UnsupportedModelError, match="through GRU"):
        taylor_scores(analysis, data, 4)
