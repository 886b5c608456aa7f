"""The rows of the sweep document: the original, each point, and the Pareto fronts.

Rules:

1. A passed point's row has its options, achieved fraction, params, MACs, file size,
   the measured latency (filled in by the driver after all points), the task metric
   and where its files are; a failed point's row has ``status: failed``, the error's
   type, message and exit code (1 for an unexpected error) and no numbers.
2. The task metric is the compress result's ``accuracy`` section: accuracy against the
   labels of ``--eval-data``, else the fidelity metric it reports (agreement, cosine
   similarity); ``None`` when nothing was measured.
3. A row is Pareto-optimal on an axis (``latency``: ``latency_ms``, ``size``:
   ``size_bytes``) when no other row with both numbers has a task metric at least as
   high and that number at most as high, one of them strictly. The original takes part.
"""

from __future__ import annotations

__all__ = ["AXES", "failed_row", "mark_pareto", "original_row", "point_row"]

from typing import Any

from onnxprune.parallel import TaskFailure
from onnxprune.sweep.points import Point

AXES = {"latency": "latency_ms", "size": "size_bytes"}


def task_metric(accuracy: dict | None) -> dict | None:
    """Rule 2."""
    if not accuracy or not accuracy.get("measured"):
        return None
    return {key: accuracy.get(key) for key in ("metric", "result", "original", "drop",
                                               "held_out", "samples")}


def point_row(point: Point, result: dict, path: str, report: str | None) -> dict[str, Any]:
    """Rule 1, a passed point."""
    flow = result.get("flow") or {}
    return {
        "name": point.name, "target": point.target, "criterion": point.criterion,
        "status": "ok", "path": path, "report": report, "options": result["options"],
        "achieved": result["achieved"], "params": result["params_after"],
        "macs": result["macs_after"], "size_bytes": result["size_after"],
        "latency_ms": None, "latency": None, "speedup": None,
        "task_metric": task_metric(result.get("accuracy")),
        "steps": len(result.get("steps") or []) or 1, "flow": flow.get("chosen"),
        "seconds": result["seconds"], "notes": result.get("notes") or [],
        "error": None, "error_kind": None, "exit_code": 0,
    }


def failed_row(point: Point, failure: TaskFailure) -> dict[str, Any]:
    """Rule 1, a failed point."""
    return {
        "name": point.name, "target": point.target, "criterion": point.criterion,
        "status": "failed", "path": None, "report": None, "options": point.options,
        "achieved": None, "params": None, "macs": None, "size_bytes": None,
        "latency_ms": None, "latency": None, "speedup": None, "task_metric": None,
        "steps": None, "flow": None, "seconds": None, "notes": [],
        "error": failure.error, "error_kind": failure.kind,
        "exit_code": failure.exit_code if failure.exit_code is not None else 1,
    }


def original_row(model: str, results: list[dict]) -> dict[str, Any]:
    """The reference row: the original's numbers as the first passed point saw them."""
    first = results[0] if results else None
    metric = task_metric(first.get("accuracy")) if first else None
    if metric is not None:
        metric = {**metric, "result": metric["original"], "drop": 0.0}
    return {
        "name": "original", "target": 0.0, "criterion": None, "status": "ok",
        "path": model, "achieved": 0.0,
        "params": first["params_before"] if first else None,
        "macs": first["macs_before"] if first else None,
        "size_bytes": first["size_before"] if first else None,
        "latency_ms": None, "latency": None, "speedup": 1.0 if first else None,
        "task_metric": metric,
    }


def _value(row: dict) -> float | None:
    metric = row.get("task_metric")
    return metric["result"] if metric else None


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """``a`` (cost, metric) is at least as good as ``b`` on both and better on one."""
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


def mark_pareto(rows: list[dict]) -> dict[str, list[str]]:
    """Rule 3: set ``row["pareto"]`` on every row; the optimal names per axis."""
    fronts: dict[str, list[str]] = {}
    for row in rows:
        row["pareto"] = {axis: False for axis in AXES}
    for axis, key in AXES.items():
        scored = [(row, (row[key], _value(row))) for row in rows
                  if row.get(key) is not None and _value(row) is not None]
        for row, mine in scored:
            if not any(_dominates(other, mine) for _, other in scored):
                row["pareto"][axis] = True
        fronts[axis] = [row["name"] for row, _ in scored if row["pareto"][axis]]
    return fronts
