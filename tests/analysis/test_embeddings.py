"""Embeddings (Gather on a 2-D initializer) as ordinary channel sources.

An embedding that feeds no residual stream (Embedding -> LSTM/GRU/Conv1d -> Linear) is
a source without any flag: its width is pruned with the table's columns and the first
layer's input axis. One that feeds a residual stream (token + position Add, LayerNorm)
stays the hidden width that only ``--prune-hidden`` prunes, with the hint.
"""

from __future__ import annotations

import onnx_ir as ir
import pytest
from onnx import TensorProto

import onnxprune
from onnxprune.analysis import analyze
from onnxprune.analysis.analyze import HIDDEN_HINT
from onnxprune.analysis.rules.residual import feeds_residual_stream
from tests.builders import GraphBuilder
from tests.oracle import load, node_input_shape, prune_and_check

VOCAB, EMBED, HID = 300, 32, 8
SEQS = ({"T": 7},)


def embedding_model(layer: str) -> GraphBuilder:
    """ids [N, T] -> Embedding -> LSTM/GRU (last state) or Conv1d (mean over time) -> Linear."""
    b = GraphBuilder(opset=17)
    ids = b.input(["N", "T"], name="ids", dtype=TensorProto.INT64)
    emb = b.op("Gather", [b.weight(VOCAB, EMBED), ids], name="embed")
    if layer == "Conv1d":
        x = b.op("Transpose", [emb], perm=[0, 2, 1])
        y = b.op("Conv", [x, b.weight(HID, EMBED, 3), b.weight(HID)], pads=[1, 1], name="conv")
        last = b.op("ReduceMean", [b.op("Relu", [y])], axes=[2], keepdims=0)
    else:
        g = 4 if layer == "LSTM" else 3
        x = b.op("Transpose", [emb], perm=[1, 0, 2])
        extra = {"linear_before_reset": 1} if layer == "GRU" else {}
        outs = b.op(layer, [x, b.weight(1, g * HID, EMBED), b.weight(1, g * HID, HID),
                            b.weight(1, 2 * g * HID, scale=0.1)], n_out=2, name="rnn",
                    hidden_size=HID, **extra)
        last = b.op("Squeeze", [outs[1], b.ints([0])])
    b.output(b.op("Gemm", [last, b.weight(5, HID), b.weight(5)], transB=1, name="head"))
    return b


@pytest.mark.parametrize("layer", ["LSTM", "GRU", "Conv1d"])
def test_embedding_feeding_a_recurrent_or_conv_layer_is_a_source(layer):
    checked = prune_and_check(embedding_model(layer).model(), 0.3, dims=SEQS,
                              int_high={"ids": VOCAB})
    group = next(g for g in checked.analysis.prunable_groups
                 if g.sources[0].kind == "embedding table")
    kept = checked.plan.kept[group.index]
    assert group.description.endswith(f"embedding: {EMBED} features")
    assert kept < EMBED
    assert node_input_shape(checked.pruned, "embed", 0) == (VOCAB, kept)


@pytest.mark.parametrize("layer", ["LSTM", "GRU"])
def test_embedding_rnn_reaches_target_without_flags(tmp_model, tmp_path, layer):
    """The field case: at most ~0.1 removable while only the hidden units were sources."""
    result = onnxprune.compress(str(tmp_model(embedding_model(layer).model())), 0.3,
                                output=str(tmp_path / "p.onnx"))
    assert result.achieved >= 0.3
    assert result.verification["max_rel_diff"] <= 1e-4


def transformer_like() -> GraphBuilder:
    """token + position embeddings -> LayerNorm -> MLP with a residual Add -> head."""
    b = GraphBuilder(opset=17)
    ids = b.input(["N", 7], name="ids", dtype=TensorProto.INT64)
    tok = b.op("Gather", [b.weight(VOCAB, EMBED), ids], name="tok")
    pos = b.op("Gather", [b.weight(7, EMBED), b.ints(list(range(7)))], name="pos")
    x = b.op("LayerNormalization", [b.op("Add", [tok, pos]), b.positive(EMBED),
                                    b.weight(EMBED)], axis=-1)
    h = b.op("Relu", [b.op("MatMul", [x, b.weight(EMBED, 16)], name="fc1")])
    x = b.op("Add", [x, b.op("MatMul", [h, b.weight(16, EMBED)], name="fc2")])
    b.output(b.op("MatMul", [x, b.weight(EMBED, 5)], name="head"))
    return b


def test_embedding_into_a_residual_stream_needs_prune_hidden():
    model = transformer_like().model()
    plain = analyze(load(model))
    assert not any(s.kind.startswith("embedding") for g in plain.groups for s in g.sources)
    assert any(HIDDEN_HINT in g.reasons for g in plain.groups)
    hidden = analyze(load(model), prune_hidden=True)
    group = next(g for g in hidden.groups if g.sources[0].kind == "embedding")
    assert group.prunable and group.description.startswith("hidden width (residual stream)")


@pytest.mark.parametrize("layer", ["LSTM", "GRU", "Conv1d"])
def test_feeds_residual_stream_stops_at_channel_creating_layers(layer):
    model = ir.from_proto(embedding_model(layer).model())
    embed = next(n for n in model.graph if n.name == "embed")
    assert not feeds_residual_stream(embed.outputs[0])


def test_mean_over_the_hidden_axis_is_a_residual_stream():
    """A written-out LayerNorm starts with ReduceMean over the last axis."""
    b = GraphBuilder(opset=18)
    ids = b.input(["N", 7], name="ids", dtype=TensorProto.INT64)
    emb = b.op("Gather", [b.weight(VOCAB, EMBED), ids], name="embed")
    mean = b.op("ReduceMean", [emb, b.ints([-1])])
    b.output(b.op("MatMul", [b.op("Sub", [emb, mean]), b.weight(EMBED, 5)]))
    embed = next(n for n in ir.from_proto(b.model()).graph if n.name == "embed")
    assert feeds_residual_stream(embed.outputs[0])
