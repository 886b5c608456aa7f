"""Decomposed LayerNorm / RMSNorm: fused (opset >= 17) or recognised, hint and pruning."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnxprune import analyze_file, compress
from onnxprune.analysis.analyze import HIDDEN_HINT
from onnxprune.graph import load_model
from onnxprune.graph.norms import find_norm_chains
from tests.builders import GraphBuilder
from tests.oracle import prune_and_check


def mean_last(b: GraphBuilder, x: str) -> str:
    if b.opset >= 18:
        return b.op("ReduceMean", [x, b.ints([-1])], keepdims=1)
    return b.op("ReduceMean", [x], axes=[-1], keepdims=1)


def layer_norm(b: GraphBuilder, x: str, width: int, reciprocal: bool = False) -> str:
    """ReduceMean -> Sub -> Pow(2) -> ReduceMean -> Add eps -> Sqrt -> Div -> Mul -> Add."""
    d = b.op("Sub", [x, mean_last(b, x)])
    var = mean_last(b, b.op("Pow", [d, b.init(np.float32(2.0))]))
    std = b.op("Sqrt", [b.op("Add", [var, b.init(np.float32(1e-5))])])
    if reciprocal:
        n = b.op("Mul", [d, b.op("Reciprocal", [std])])
    else:
        n = b.op("Div", [d, std])
    return b.op("Add", [b.op("Mul", [n, b.positive(width)]), b.weight(width)])


def rms_norm(b: GraphBuilder, x: str, width: int, div: bool = False) -> str:
    """Pow(2) -> ReduceMean -> Add eps -> Sqrt -> Reciprocal -> Mul (or Div) -> Mul gamma."""
    ms = mean_last(b, b.op("Pow", [x, b.init(np.float32(2.0))]))
    rms = b.op("Sqrt", [b.op("Add", [ms, b.init(np.float32(1e-6))])])
    n = b.op("Div", [x, rms]) if div else b.op("Mul", [x, b.op("Reciprocal", [rms])])
    return b.op("Mul", [n, b.positive(width)])


def rms_norm_div(b: GraphBuilder, x: str, width: int) -> str:
    return rms_norm(b, x, width, div=True)


def block(opset: int, norm=layer_norm, hidden: int = 16) -> onnx.ModelProto:
    """Stem projection, pre-norm MLP with a residual Add, final norm, head."""
    b = GraphBuilder(opset=opset)
    x = b.input(["N", "S", 8])
    h = b.op("MatMul", [x, b.weight(8, hidden)])
    f = b.op("Relu", [b.op("MatMul", [norm(b, h, hidden), b.weight(hidden, 32)])])
    h = b.op("Add", [h, b.op("MatMul", [f, b.weight(32, hidden)])])
    b.output(b.op("MatMul", [norm(b, h, hidden), b.weight(hidden, 4)]))
    return b.model()


@pytest.mark.parametrize("opset,norm,fused", [
    (18, layer_norm, 2), (17, layer_norm, 2), (13, layer_norm, 0), (18, rms_norm, 0),
    (13, rms_norm_div, 0),
], ids=["ln_opset18", "ln_opset17", "ln_opset13_matched", "rms_matched", "rms_div_opset13"])
def test_decomposed_norm_gets_the_hint_and_prunes_hidden(tmp_model, opset, norm, fused):
    path = tmp_model(block(opset, norm))
    loaded = load_model(path)
    ops = [n.op_type for n in loaded.model.graph]
    assert ops.count("LayerNormalization") == fused
    if not fused:
        assert len(find_norm_chains(loaded.model.graph, opset)) == 2
    report = analyze_file(path)
    hidden = [g for g in report["groups"] if g["channels"] == 16]
    assert hidden and not hidden[0]["prunable"] and hidden[0]["reasons"][0] == HIDDEN_HINT
    checked = prune_and_check(path, 0.3, prune_hidden=True, dims=({"S": 5},))
    groups = {g.size: g for g in checked.analysis.groups}
    assert groups[16].prunable
    assert checked.plan.kept.get(groups[16].index, 16) < 16  # the hidden width is pruned
    result = compress(path, 0.3, write=False, prune_hidden=True, round_to=1)
    assert abs(result.achieved - 0.3) <= 0.02
    assert result.verification["max_rel_diff"] < 1e-4


@pytest.mark.parametrize("reciprocal", [False, True], ids=["div", "reciprocal"])
def test_fused_layer_norm_computes_what_the_chain_computed(tmp_model, reciprocal):
    proto = block(17, lambda b, x, w: layer_norm(b, x, w, reciprocal))
    path = tmp_model(proto)
    loaded = load_model(path)
    assert "fused 2 decomposed LayerNorm chain(s) into LayerNormalization" in loaded.notes
    import onnx_ir as ir

    canonical = ir.serde.serialize_model(loaded.model)
    feeds = {"x": np.random.default_rng(0).standard_normal((3, 5, 8)).astype(np.float32)}
    raw = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    new = ort.InferenceSession(canonical.SerializeToString(),
                               providers=["CPUExecutionProvider"])
    want, got = raw.run(None, feeds)[0], new.run(None, feeds)[0]
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())


def test_a_mean_over_another_axis_is_not_a_norm(tmp_model):
    b = GraphBuilder(opset=13)
    x = b.input(["N", 6, 8])
    d = b.op("Sub", [x, b.op("ReduceMean", [x], axes=[1], keepdims=1)])
    var = b.op("ReduceMean", [b.op("Pow", [d, b.init(np.float32(2.0))])], axes=[1], keepdims=1)
    std = b.op("Sqrt", [b.op("Add", [var, b.init(np.float32(1e-5))])])
    b.output(b.op("Div", [d, std]))
    loaded = load_model(tmp_model(b.model()))
    assert find_norm_chains(loaded.model.graph, 13) == []
