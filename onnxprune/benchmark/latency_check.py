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
3. The section (``latency`` in the result, the report and ``--json``)::

       {"provider", "threads", "input_shapes", "target",
        "predicted": {"original_ms", "pruned_ms", "ratio"},
        "measured": {"original_ms", "pruned_ms", "ratio", "runs", "cv"} | null,
        "predicted_over_measured": float | null,
        "cache": path, "cache_hit": bool, "table": {summary..., "layers": {...}}}
"""

from __future__ import annotations

__all__ = ["check_latency", "plan_latency", "settings_of"]

import logging
import os
from typing import Any

import numpy as np
import onnx

from onnxprune.benchmark.latency_table import LatencySettings, latency_table
from onnxprune.errors import UsageError

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
    from onnxprune.planning.latency import make_latency_plan

    if plan_options.scope != "global":
        raise UsageError("--metric latency plans globally; drop --scope uniform")
    table, specs, info = latency_table(to_runtime_proto(original), analysis, settings,
                                       shapes=shapes, ort=ort, **timing)
    plan = make_latency_plan(analysis, scores, plan_options, table, specs)
    section = {
        "provider": table.provider, "threads": table.threads,
        "input_shapes": table.input_shapes, "target": plan_options.target,
        "predicted": {"original_ms": round(plan.original_ms, 4),
                      "pruned_ms": round(plan.predicted_ms, 4),
                      "ratio": round(plan.predicted_ms / plan.original_ms, 4)},
        "measured": None, "predicted_over_measured": None,
        "cache": info["cache"], "cache_hit": info["cache_hit"],
        "table": {**table.summary(), "layers": table.layers},
    }
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
