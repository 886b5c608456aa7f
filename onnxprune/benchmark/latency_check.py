"""``--metric latency`` in ``compress``: plan from the latency table, then check reality.

Rules:

1. ``plan_latency`` measures (or reads from the cache) the original model's latency
   table on the run's provider, threads and input shapes, and plans with
   :func:`~onnxprune.planning.latency.make_latency_plan`. It returns the plan and the
   report section's first half: the prediction, the table and the cache location.
2. ``check_latency`` times the original and the pruned model interleaved on the same
   provider, threads and input shapes (:func:`onnxprune.benchmark.compare`) and adds
   the measured ratio pruned/original (of median latencies) and the ratio of
   predicted to measured pruned latency.
3. ``plan_latency_step`` is rule 1 for a step of a progressive run: the table
   measured once on the original model (``latency_table``) becomes the step model's
   (:func:`~onnxprune.planning.latency_steps.step_table`, nothing measured), and the
   plan options' ``target``, a fraction of the ORIGINAL predicted latency (the
   schedule's cumulative target), becomes the step's own
   (:func:`~onnxprune.planning.latency_steps.step_target`). The section's
   ``predicted`` ratios are relative to the original; ``step`` holds the step's own
   target and predicted latencies. A step model already at its target gets an empty
   plan.
4. The section (``latency`` in the result, the report and ``--json``)::

       {"provider", "threads", "input_shapes", "target",
        "predicted": {"original_ms", "pruned_ms", "ratio"},
        "measured": {"original_ms", "pruned_ms", "ratio", "runs", "cv"} | null,
        "predicted_over_measured": float | null,
        "cache": path, "cache_hit": bool, "table": {summary..., "layers": {...}}}
"""

from __future__ import annotations

__all__ = ["check_latency", "plan_latency", "plan_latency_step", "settings_of"]

import logging
import os
from typing import Any

import numpy as np
import onnx

from onnxprune.benchmark.latency_table import LatencySettings, latency_table

logger = logging.getLogger(__name__)


def settings_of(options: Any) -> LatencySettings:
    """Latency settings from :class:`~onnxprune.options.CompressOptions`."""
    return LatencySettings(provider=options.provider, threads=options.threads,
                           runs=options.latency_runs, warmup=min(3, options.latency_runs),
                           cache=options.latency_cache, seed=options.seed)


def plan_latency(original: onnx.ModelProto, analysis, scores: np.ndarray, plan_options,
                 settings: LatencySettings, shapes: dict[str, tuple[int, ...]] | None = None,
                 ort: Any = None, **timing: Any) -> tuple[Any, dict]:
    """The latency plan and the prediction half of the report section (rule 1)."""
    from onnxprune.graph.runtime import to_runtime_proto
    from onnxprune.planning.latency import check_latency_options, make_latency_plan

    check_latency_options(plan_options)  # before the table is measured
    table, specs, info = latency_table(to_runtime_proto(original), analysis, settings,
                                       shapes=shapes, ort=ort, **timing)
    plan = make_latency_plan(analysis, scores, plan_options, table, specs)
    return plan, _section(table, table, plan_options.target, plan.original_ms,
                          plan.predicted_ms, info["cache"], info["cache_hit"])


def _section(table, shown, target: float, original_ms: float, pruned_ms: float, cache: str,
             cache_hit: bool) -> dict:
    """Rule 4's section, prediction half: ``table`` is the measured one (its provider,
    threads, shapes), ``shown`` the one planned on (a step's, rule 3)."""
    return {
        "provider": table.provider, "threads": table.threads,
        "input_shapes": table.input_shapes, "target": target,
        "predicted": {"original_ms": round(original_ms, 4), "pruned_ms": round(pruned_ms, 4),
                      "ratio": round(pruned_ms / original_ms, 4)},
        "measured": None, "predicted_over_measured": None,
        "cache": cache, "cache_hit": cache_hit,
        "table": {**shown.summary(), "layers": shown.layers},
    }


def plan_latency_step(table, step_model: onnx.ModelProto, analysis, scores: np.ndarray,
                      plan_options, shapes: dict[str, tuple[int, ...]] | None = None,
                      cache: str = "") -> tuple[Any, dict]:
    """Rule 3: the step's latency plan on the original's ``table``; no measurement.

    ``step_model`` is the proto of the step model ``analysis`` was built on; the
    ``plan_options.target`` is cumulative, in terms of the original predicted latency;
    ``cache`` is the original table's file (``latency_table``'s ``info["cache"]``)."""
    import dataclasses

    from onnxprune.benchmark.latency_slices import default_input_shapes, value_shapes
    from onnxprune.graph.runtime import to_runtime_proto
    from onnxprune.planning.latency import LatencyPlan, make_latency_plan
    from onnxprune.planning.latency_model import layer_specs
    from onnxprune.planning.latency_nodes import node_specs
    from onnxprune.planning.latency_steps import step_table, step_target

    proto = to_runtime_proto(step_model)
    shapes = {k: tuple(v) for k, v in (shapes or table.input_shapes
                                       or default_input_shapes(proto)).items()}
    specs = layer_specs(analysis, value_shapes(proto, shapes))
    step = step_table(table, specs, node_specs(analysis))
    target = step_target(table.whole_ms, step.whole_ms, plan_options.target)
    if target > 0:
        plan = make_latency_plan(analysis, scores, dataclasses.replace(plan_options,
                                                                       target=target),
                                 step, specs)
    else:
        kept = {g.index: g.size for g in analysis.prunable_groups}
        plan = LatencyPlan(np.zeros(analysis.num_units, dtype=bool), 0.0, "latency", kept,
                           0.0, original_ms=step.whole_ms, predicted_ms=step.whole_ms)
    section = _section(table, step, plan_options.target, table.whole_ms, plan.predicted_ms,
                       cache, True)
    section["step"] = {"target": round(target, 6), "before_ms": round(step.whole_ms, 4),
                       "unmatched_layers": step.meta["unmatched"]}
    return plan, section


def check_latency(section: dict, original: str | os.PathLike[str],
                  pruned: str | os.PathLike[str], runs: int = 50, **kwargs: Any) -> dict:
    """``section`` with the measured half filled in (rule 2)."""
    from onnxprune.benchmark import compare

    report = compare(original, pruned, providers=[section["provider"]],
                     threads=[section["threads"]], runs=runs, warmup=min(10, runs),
                     input_shapes={k: tuple(v) for k, v in section["input_shapes"].items()},
                     memory=False, **kwargs)
    rows = report["providers"].get(section["provider"]) or []
    if not rows:
        logger.warning("latency check not timed: %s", report["unavailable"])
        return {**section, "measured": None, "measured_note": report["unavailable"]}
    row = rows[0]
    before, after = row["original"]["latency"], row["pruned"]["latency"]
    measured = after["p50_ms"] / before["p50_ms"] if before["p50_ms"] else None
    predicted = section["predicted"]["ratio"]
    return {**section,
            "measured": {"original_ms": before["p50_ms"], "pruned_ms": after["p50_ms"],
                         "ratio": round(measured, 4) if measured else None, "runs": runs,
                         "cv": max(before["cv"], after["cv"]),
                         "load_average": report["environment"].get("load_average")},
            "predicted_over_measured": round(predicted / measured, 4) if measured else None}
