"""Property: whatever ``analyze`` calls prunable, the rewrite can do.

Every prunable group of a graph loses as many units as its floor allows (one unit
kept, blocked units kept, every Split/Slice part and source keeps one), all groups at
once, with random unit choices; the rewritten model must pass the checker, run in ONNX
Runtime with the original's output shapes at two batch sizes, and equal the masked
original. Graphs: the hypothesis-generated conv/MLP graphs and the field patterns
(stacked recurrent layers with a shared zero state, embeddings feeding RNN/Conv1d,
Einsum linears, channel shuffles, If branches reading outer-scope values).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxprune.analysis import analyze
from onnxprune.importance import score_units
from onnxprune.planning import PlanOptions
from onnxprune.planning.planner import group_options
from onnxprune.rewrite import apply_plan, channel_masks, masked_model
from tests.analysis.test_channel_shuffle import shuffle_model
from tests.analysis.test_einsum import grouped, two_layers
from tests.analysis.test_embeddings import embedding_model
from tests.analysis.test_recurrent_rewrites import VOCAB, recurrent, stacked
from tests.calibration.test_outer_scope import if_model
from tests.oracle import feeds_for, load, rel_diff, session
from tests.property.graphs import conv_graphs, mlp_graphs


def prune_to_the_floor(model: onnx.ModelProto, seed: int = 0, dims: dict | None = None,
                       int_high: dict | None = None) -> int:
    """Remove the most every prunable group allows; check; return the removed units."""
    loaded = load(model)
    original = ir.serde.serialize_model(loaded)
    analysis = analyze(loaded)
    scores = score_units(analysis, "random", seed)
    removed = np.zeros(analysis.num_units, dtype=bool)
    for opts in group_options(analysis, scores, PlanOptions(0.5, min_keep=0.0)):
        removed[opts.group.units[opts.removed(opts.counts[-1])]] = True
    masks = channel_masks(analysis, removed)
    apply_plan(analysis, removed)
    pruned = ir.serde.serialize_model(analysis.model)
    onnx.checker.check_model(pruned)
    ref, new, masked = session(original), session(pruned), session(masked_model(original,
                                                                                masks))
    for batch in (1, 3):
        feeds = feeds_for(ref, batch, seed, dims, int_high)
        for e, g, w in zip(ref.run(None, feeds), new.run(None, feeds),
                           masked.run(None, feeds)):
            assert g.shape == e.shape and g.dtype == e.dtype
            assert rel_diff(g, w) <= 1e-4
    return int(removed.sum())


@settings(max_examples=10)
@given(model=conv_graphs(), seed=st.integers(0, 3))
def test_generated_conv_graphs(model, seed):
    prune_to_the_floor(model, seed)


@settings(max_examples=6)
@given(model=mlp_graphs(), seed=st.integers(0, 3))
def test_generated_mlp_graphs(model, seed):
    prune_to_the_floor(model, seed)


FIELD = {
    "stacked_gru_shared_zero_state": lambda: stacked("GRU").model(),
    "stacked_lstm_shared_zero_state": lambda: stacked("LSTM").model(),
    "bidirectional_gru_zero_state": lambda: recurrent("GRU", 2, "zeros").model(),
    "embedding_lstm": lambda: embedding_model("LSTM").model(),
    "embedding_conv1d": lambda: embedding_model("Conv1d").model(),
    "einsum_bti_ih": lambda: two_layers("bti,ih->bth", "bth,hk->btk", ["N", 7, 6]).model(),
    "einsum_grouped_hidden": lambda: grouped(False).model(),
    "einsum_grouped_groups": lambda: grouped(True).model(),
    "channel_shuffle": lambda: shuffle_model(12, 3).model(),
    "if_outer_scope": if_model,
}


@pytest.mark.parametrize("name", list(FIELD))
def test_field_patterns(name):
    removed = prune_to_the_floor(FIELD[name](), dims={"T": 7}, int_high={"ids": VOCAB})
    assert removed > 0
