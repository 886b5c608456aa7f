"""Transformer and recurrent fixtures (fixtures/generate_transformers.py).

Every file: ``compress`` to 0.3 of the params lands within 0.02, attention heads go
whole, the pruned model runs in ONNX Runtime at sequence lengths 7 and 33 with the
original output names and shapes, and equals the masked original there.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from onnxprune.cli import main
from onnxprune.compress import analyze_file, compress
from tests.conftest import MODELS
from tests.oracle import feeds_for, prune_and_check, session

NAMES = ("bert_tiny", "gpt2_tiny", "vit_tiny", "llama_gqa_tiny", "lstm_classifier", "gru_seq")
FILES = sorted(p for p in MODELS.glob("*.onnx") if p.name.split(".")[0] in NAMES)
IDS = [p.name.removesuffix(".onnx") for p in FILES]
SEQS = ({"seq": 7}, {"seq": 33})
TOKENS = {"input_ids": 96}


def test_every_model_and_exporter_is_present_or_its_failure_recorded():
    present = {p.name for p in FILES}
    failures = json.loads((MODELS / "export_failures.json").read_text())
    for name in NAMES:
        for tag in ("ts", "dynamo"):
            fname = f"{name}.{tag}.onnx"
            assert fname in present or fname in failures, fname
    assert all(p.stat().st_size < 2_000_000 for p in FILES)


def _weight_width(model: onnx.ModelProto, node_name: str) -> int:
    """Output width of a MatMul/Gemm weight in ``model``."""
    node = next(n for n in model.graph.node if n.name == node_name)
    init = next(t for t in model.graph.initializer if t.name == node.input[1])
    trans_b = any(a.name == "transB" and a.i for a in node.attribute)
    return int(init.dims[0] if trans_b else init.dims[1])


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_prune_030_heads_whole_dynamic_seq_and_oracle(path):
    checked = prune_and_check(path, 0.3, dims=SEQS, int_high=TOKENS)
    assert abs(checked.plan.achieved - 0.3) <= 0.02
    original = onnx.load(str(path))
    for group in checked.analysis.groups:
        if group.unit_size == 1:
            continue
        kept, width = checked.plan.kept.get(group.index, group.size), group.unit_size
        for source in group.sources:  # Q/K/V (or fused QKV) projections
            before = _weight_width(original, source.node)
            after = _weight_width(checked.pruned, source.node)
            per_unit = before // (width * group.size)  # heads of this projection per unit
            assert before == per_unit * width * group.size
            assert after == per_unit * width * kept, (source.node, before, after, kept)


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_compress_api_runs_at_two_sequence_lengths(path, tmp_path):
    out = tmp_path / "pruned.onnx"
    result = compress(path, 0.3, output=out, round_to=1)
    assert abs(result.achieved - 0.3) <= 0.02
    assert result.verification["max_rel_diff"] <= 1e-4
    ref, new = session(onnx.load(str(path))), session(onnx.load(str(out)))
    assert [o.name for o in new.get_outputs()] == [o.name for o in ref.get_outputs()]
    for dims in SEQS:
        feeds = feeds_for(ref, 3, 0, dims, TOKENS)
        for want, got in zip(ref.run(None, feeds), new.run(None, feeds)):
            assert got.shape == want.shape and np.isfinite(got).all()


@pytest.mark.parametrize(("name", "expected"), [
    ("bert_tiny.ts", ["layer.0.attention.self attention: 4 heads of 8",
                      "layer.1.attention.self attention: 4 heads of 8",
                      "layer.0.intermediate.dense MLP: 64 neurons"]),
    ("gpt2_tiny.dynamo", ["h.0.attn.c_attn attention: 4 heads of 8",
                          "h.1.mlp.c_fc MLP: 128 neurons"]),
    ("llama_gqa_tiny.ts", ["attention: 2 key/value heads, each shared by 2 query heads of 8",
                           "layers.0.mlp MLP: 64 neurons"]),
    ("lstm_classifier.ts", ["lstm LSTM: 128 hidden units"]),
    ("gru_seq.ts", ["gru GRU: 32 hidden units"]),
])
def test_analyze_describes_heads_mlp_and_recurrent_groups(name, expected):
    report = analyze_file(MODELS / f"{name}.onnx")
    descriptions = [row["description"] for row in report["groups"] if row["prunable"]]
    for text in expected:
        assert any(text in d for d in descriptions), (text, descriptions)
    assert not any("hidden width" in d for d in descriptions)


@pytest.mark.parametrize("tag", ["ts", "dynamo"])
def test_prune_hidden_shrinks_bert_width_everywhere(tag):
    path = MODELS / f"bert_tiny.{tag}.onnx"
    checked = prune_and_check(path, 0.3, dims=SEQS, int_high=TOKENS, prune_hidden=True)
    hidden = next(g for g in checked.analysis.groups if "hidden width" in g.description)
    kept = checked.plan.kept[hidden.index]
    assert kept < 32
    pruned = checked.pruned
    inits = {t.name: tuple(t.dims) for t in pruned.graph.initializer}
    norms = [n for n in pruned.graph.node if n.op_type == "LayerNormalization"]
    assert len(norms) == 5  # embeddings + 2 per layer
    assert all(inits[n.input[1]] == (kept,) and inits[n.input[2]] == (kept,) for n in norms)
    tables = [inits[n.input[0]] for n in pruned.graph.node
              if n.op_type == "Gather" and n.input[0] in inits and len(inits[n.input[0]]) == 2]
    assert len(tables) == 3 and all(t[1] == kept for t in tables)


def test_cli_compress_prune_hidden_flag(tmp_path):
    out = tmp_path / "bert.onnx"
    result = CliRunner().invoke(main, ["compress", str(MODELS / "bert_tiny.ts.onnx"), "-t", "0.3",
                                       "--prune-hidden", "--round-to", "1", "-o", str(out),
                                       "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["options"]["prune_hidden"] is True
    assert any("hidden width" in g["description"] and g["kept"] < 32 for g in report["groups"])
    assert abs(report["achieved"] - 0.3) <= 0.02


@pytest.mark.parametrize("name", ["bert_tiny.ts", "gpt2_tiny.dynamo", "vit_tiny.ts"])
def test_half_the_params_removes_whole_heads(name):
    """At 0.5 the planner takes heads too; the rewritten projections hold whole heads."""
    checked = prune_and_check(MODELS / f"{name}.onnx", 0.5, dims=SEQS, int_high=TOKENS)
    heads = [g for g in checked.analysis.groups if g.unit_size > 1]
    lost = [g for g in heads if checked.plan.kept[g.index] < g.size]
    assert heads and lost
    for group in lost:
        kept = checked.plan.kept[group.index]
        widths = {_weight_width(checked.pruned, s.node) for s in group.sources}
        assert all(w % (group.unit_size * kept) == 0 for w in widths)
        assert all(w // group.unit_size in (kept, 3 * kept) for w in widths)


def test_hidden_oracle_needs_kept_channel_statistics(monkeypatch):
    """With the plain masked twin (LayerNorm statistics over all channels, zeros
    included) the pruned BERT differs clearly: the kept-channel twin is what the
    1e-4 equality of ``test_prune_hidden_shrinks_bert_width_everywhere`` rests on."""
    import onnxprune.rewrite.oracle as oracle

    monkeypatch.setattr(oracle, "_kept_channel_norms", lambda model, masks: None)
    with pytest.raises(AssertionError, match="differs from masked original"):
        prune_and_check(MODELS / "bert_tiny.ts.onnx", 0.3, int_high=TOKENS, prune_hidden=True)


@pytest.mark.parametrize("tag", ["ts", "dynamo"])
def test_prune_hidden_shrinks_vit_width_through_the_class_token(tag):
    """The class token (Expand of a parameter) concatenated to the patch embeddings is
    coupled to the hidden width, so the whole residual stream of the ViT is prunable:
    patch conv, class token, position embedding and every LayerNorm shrink together."""
    checked = prune_and_check(MODELS / f"vit_tiny.{tag}.onnx", 0.3, prune_hidden=True)
    hidden = next(g for g in checked.analysis.groups if "hidden width" in g.description)
    assert hidden.prunable
    kept = checked.plan.kept[hidden.index]
    assert kept < 32
    pruned = checked.pruned
    inits = {t.name: tuple(t.dims) for t in pruned.graph.initializer}
    expand = next(n for n in pruned.graph.node if n.op_type == "Expand")
    assert inits[expand.input[0]][-1] == kept          # the class token
    norms = [n for n in pruned.graph.node if n.op_type == "LayerNormalization"]
    assert norms and all(inits[n.input[1]] == (kept,) for n in norms)
    conv = next(n for n in pruned.graph.node if n.op_type == "Conv")
    assert inits[conv.input[1]][0] == kept              # patch projection filters
