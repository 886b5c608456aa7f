"""Pareto plots of a sweep document as base64 PNG strings (matplotlib, imported here only).

Rules:

1. One plot per axis of :data:`onnxprune.sweep.rows.AXES`: the task metric (y) against
   the measured latency or the file size (x). Each criterion is one colour, its points
   joined in target order and labelled with their target; the original is a black star
   labelled ``original``; Pareto-optimal rows get a red ring and the front a dashed red
   step line.
2. Rows without both numbers are left out; with fewer than one such point the plot is
   ``None`` (the page says why).
"""

from __future__ import annotations

__all__ = ["pareto_plot"]

import base64
import io
from typing import Any

from onnxprune.reporting.plots import require_matplotlib
from onnxprune.sweep.rows import AXES

LABELS = {"latency": "measured latency, p50 (ms)", "size": "file size (KiB)"}
FRONT = "#b42318"


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _xy(row: dict, axis: str) -> tuple[float, float] | None:
    x, metric = row.get(AXES[axis]), row.get("task_metric")
    if x is None or not metric:
        return None
    return (x / 1024 if axis == "size" else x), metric["result"]


def pareto_plot(document: dict, axis: str) -> str | None:
    """Rule 1 for ``axis`` (``latency`` or ``size``)."""
    original = document["original"]
    points = [(row, _xy(row, axis)) for row in document["points"]]
    points = [(row, xy) for row, xy in points if xy is not None]
    if not points:
        return None
    figure = require_matplotlib()
    fig = figure.Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    for criterion in dict.fromkeys(row["criterion"] for row, _ in points):
        mine = sorted(((row, xy) for row, xy in points if row["criterion"] == criterion),
                      key=lambda item: item[0]["target"])
        ax.plot([xy[0] for _, xy in mine], [xy[1] for _, xy in mine], marker="o",
                label=str(criterion))
        for row, (x, y) in mine:
            ax.annotate(f"{row['target']:g}", (x, y), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)
    reference = _xy(original, axis)
    if reference is not None:
        ax.plot(*reference, marker="*", markersize=14, color="black", linestyle="none",
                label="original")
    rows = [(original, reference)] + points if reference is not None else points
    front = sorted((xy for row, xy in rows if row.get("pareto", {}).get(axis)))
    if front:
        ax.scatter([x for x, _ in front], [y for _, y in front], s=160, facecolors="none",
                   edgecolors=FRONT, linewidths=1.5, label="Pareto-optimal", zorder=3)
        ax.step([x for x, _ in front], [y for _, y in front], where="post", color=FRONT,
                linestyle="--", linewidth=1, alpha=0.7)
    metric = (original.get("task_metric") or points[0][0]["task_metric"])["metric"]
    ax.set_xlabel(LABELS[axis])
    ax.set_ylabel(str(metric))
    ax.set_title(f"{metric} vs {LABELS[axis].split(',')[0].split(' (')[0]}")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    return _png(fig)
