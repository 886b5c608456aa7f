"""The masked-equivalence oracle as a test helper.

``prune_and_check`` prunes a model through the library's layers, then checks
independently of ``compress``'s own verification that the pruned model

- passes ``onnx.checker``,
- keeps the original's output names, dtypes and shapes at two batch sizes,
- equals the original with the removed channels masked, within ``tol``.

Inputs: floats are standard normal, integers uniform in ``[0, int_high[name])``
(default ``[0, 2)``: valid token ids, token types and attention masks alike). Symbolic
dimensions are the batch size, except those named in ``dims`` (e.g. ``{"seq": 33}``).
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from onnxprune.analysis import Analysis, analyze
from onnxprune.graph.io import load_model, model_from_proto, normalize
from onnxprune.graph.runtime import to_runtime_proto
from onnxprune.importance import score_units
from onnxprune.planning import Plan, PlanOptions, make_plan
from onnxprune.rewrite import apply_plan, channel_masks, masked_model


@dataclasses.dataclass
class Checked:
    analysis: Analysis
    plan: Plan
    pruned: onnx.ModelProto
    original: onnx.ModelProto


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(to_runtime_proto(model).SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def feeds_for(sess: ort.InferenceSession, batch: int, seed: int = 0,
              dims: dict[str, int] | None = None,
              int_high: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for arg in sess.get_inputs():
        shape = [d if isinstance(d, int) else (dims or {}).get(d, batch) for d in arg.shape]
        if arg.type == "tensor(float)":
            feeds[arg.name] = rng.standard_normal(shape).astype(np.float32)
        else:
            high = (int_high or {}).get(arg.name, 2)
            feeds[arg.name] = rng.integers(0, high, shape).astype(np.int64)
    return feeds


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(float(np.abs(b).max()), 1e-6)
    return float(np.abs(a.astype(np.float64) - b).max()) / scale


def load(source: onnx.ModelProto | str | pathlib.Path) -> ir.Model:
    if isinstance(source, onnx.ModelProto):
        model = model_from_proto(source)
        normalize(model)
        return model
    return load_model(source).model


def prune_and_check(source, target: float = 0.5, *, metric: str = "params",
                    criterion: str = "l1", scope: str = "global", round_to: int = 1,
                    min_keep: float = 0.1, seed: int = 0, tol: float = 1e-4,
                    batches: tuple[int, ...] = (1, 3), dims: tuple[dict, ...] = ({},),
                    int_high: dict[str, int] | None = None,
                    prune_hidden: bool = False, planner=None) -> Checked:
    """``planner(analysis, scores, plan_options)`` replaces ``make_plan`` when given."""
    model = load(source)
    original = ir.serde.serialize_model(model)
    analysis = analyze(model, prune_hidden=prune_hidden)
    scores = score_units(analysis, criterion, seed)
    plan = (planner or make_plan)(analysis, scores,
                                  PlanOptions(target, metric, scope, round_to, min_keep))
    masks = channel_masks(analysis, plan.removed_units)
    apply_plan(analysis, plan.removed_units)
    pruned = ir.serde.serialize_model(analysis.model)
    onnx.checker.check_model(pruned)
    ref, new, masked = session(original), session(pruned), session(masked_model(original, masks))
    assert [o.name for o in new.get_outputs()] == [o.name for o in ref.get_outputs()]
    for batch, named in ((b, d) for b in batches for d in dims):
        feeds = feeds_for(ref, batch, seed, named, int_high)
        expected_shapes = ref.run(None, feeds)
        got = new.run(None, feeds)
        want = masked.run(None, feeds)
        for e, g, w in zip(expected_shapes, got, want):
            assert g.shape == e.shape and g.dtype == e.dtype
            assert rel_diff(g, w) <= tol, f"pruned differs from masked original by {rel_diff(g, w)}"
    return Checked(analysis, plan, pruned, original)


def initializer_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    return {t.name: tuple(t.dims) for t in model.graph.initializer}


def node_input_shape(model: onnx.ModelProto, node_name: str, index: int) -> tuple[int, ...]:
    inits = initializer_shapes(model)
    node = next(n for n in model.graph.node if n.name == node_name)
    return inits[node.input[index]]
