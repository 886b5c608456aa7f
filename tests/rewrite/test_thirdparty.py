"""Third-party exports (Paddle, tf2onnx, jax2onnx, older and newer PyTorch exporters) prune.

Every model in `fixtures/models/thirdparty/manifest.json`: `compress` at targets 0.3 and
0.5, params and flops, `--round-to 8`, writes a model that passes the checker and the
masked-equivalence oracle (within 1e-4), runs in ONNX Runtime at batch 1 and 3 on the
fixture's reference inputs with the original's output names and shapes, and lands within
0.02 of the target or, where these 16-64-channel-wide fixtures leave too few widths that
are multiples of 8, within 0.01 of the smallest feasible value reaching it (found here by
brute force); or the target is above the reachable maximum, which the error states.
Without rounding, every plan lands within 0.02. Costs are taken at the run-time input
shapes compress chooses (`onnxprune.pipeline.run_shapes`).
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import onnx
import pytest

from onnxprune.analysis import analyze
from onnxprune.compress import compress
from onnxprune.errors import UnreachableTargetError
from onnxprune.graph import input_shapes, load_model
from onnxprune.graph.runtime import make_session
from onnxprune.importance import score_units
from onnxprune.pipeline.run_shapes import resolve_run_shapes
from onnxprune.planning import CostModel, PlanOptions, make_plan
from onnxprune.planning.capacity import capacity
from onnxprune.planning.planner import group_options
from tests.conftest import MODELS

THIRDPARTY = MODELS / "thirdparty"
ENTRIES = json.loads((THIRDPARTY / "manifest.json").read_text())
CASES = [(e["file"], t, m) for e in ENTRIES for t in (0.3, 0.5) for m in ("params", "flops")]


def _reference_inputs(entry_file: str) -> dict[str, np.ndarray]:
    name = next(e["name"] for e in ENTRIES if e["file"] == entry_file)
    with np.load(THIRDPARTY / "reference" / f"{name}.npz") as ref:
        inputs = [i.name for i in onnx.load(str(THIRDPARTY / entry_file)).graph.input]
        return {k: ref[k] for k in inputs if k in ref.files}


def _closest_feasible(path, target: float, metric: str, round_to: int) -> float | None:
    """The smallest achievable value >= target over every combination of feasible
    per-group counts (None when there are too many to try)."""
    with input_shapes.using(resolve_run_shapes(path)):
        analysis = analyze(load_model(path).model)
        scores = score_units(analysis, "l1")
        options = group_options(analysis, scores, PlanOptions(target, metric,
                                                              round_to=round_to))
        if np.prod([len(o.counts) for o in options], dtype=float) > 20000:
            return None
        cost, best = CostModel(analysis), None
        for combo in itertools.product(*(o.counts for o in options)):
            removed = np.zeros(analysis.num_units, dtype=bool)
            for opts, count in zip(options, combo):
                removed[opts.group.units[opts.removed(count)]] = True
            value = cost.reduction(removed, metric)
            if value + 1e-12 >= target and (best is None or value < best):
                best = value
    return best


def _limit(path, target: float, metric: str, round_to: int | None) -> float:
    with input_shapes.using(resolve_run_shapes(path)):
        analysis = analyze(load_model(path).model)
        return capacity(analysis, PlanOptions(target, metric, round_to=round_to)).maximum[metric]


def _batch(feeds: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    return {k: np.concatenate([v] * n)[:n] for k, v in feeds.items()}


@pytest.mark.parametrize(("file", "target", "metric"), CASES,
                         ids=[f"{f.removesuffix('.onnx')}-{t}-{m}" for f, t, m in CASES])
def test_thirdparty_export_prunes_to_target(tmp_path, file, target, metric):
    path, out = THIRDPARTY / file, tmp_path / "pruned.onnx"
    try:
        result = compress(path, target, metric=metric, round_to=8, output=out, report=False)
    except UnreachableTargetError as exc:
        limit = _limit(path, target, metric, 8)
        assert target > limit and exc.maximum == pytest.approx(limit, abs=1e-6)
        return
    assert result.verification["max_rel_diff"] <= 1e-4
    if abs(result.achieved - target) > 0.02:
        closest = _closest_feasible(path, target, metric, 8)
        assert closest is not None and result.achieved - closest <= 0.01, (result.achieved,
                                                                           closest)
    onnx.checker.check_model(str(out))
    feeds = _reference_inputs(file)
    original, pruned = make_session(str(path)), make_session(str(out))
    for n in (1, 3):
        batch = _batch(feeds, n)
        want, got = original.run(None, batch), pruned.run(None, batch)
        assert [o.name for o in pruned.get_outputs()] == [o.name for o in original.get_outputs()]
        assert [g.shape for g in got] == [w.shape for w in want]
        assert all(np.isfinite(g).all() for g in got if np.issubdtype(g.dtype, np.floating))


PLAN_CASES = [(e["file"], m) for e in ENTRIES for m in ("params", "flops")]


@pytest.mark.parametrize(("file", "metric"), PLAN_CASES,
                         ids=[f"{f.removesuffix('.onnx')}-{m}" for f, m in PLAN_CASES])
def test_without_rounding_the_plan_lands_within_002(file, metric):
    path = THIRDPARTY / file
    with input_shapes.using(resolve_run_shapes(path)):
        analysis = analyze(load_model(path).model)
        limit = capacity(analysis, PlanOptions(0.5, metric)).maximum[metric]
        target = min(0.5, limit - 0.01)
        plan = make_plan(analysis, score_units(analysis, "l1"), PlanOptions(target, metric))
    assert abs(plan.achieved - target) <= 0.02
