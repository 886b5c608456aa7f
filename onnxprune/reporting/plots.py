"""Report plots as base64 PNG strings (matplotlib, imported only here, only when used).

Rules:

1. ``require_matplotlib`` imports matplotlib with the non-interactive Agg backend, or
   raises :class:`RuntimeMissingError` saying to install ``onnxprune[report]``.
2. Every plot function takes plain report data and returns a base64 PNG string, or
   ``None`` when there is nothing to plot. Figures are ``matplotlib.figure.Figure``
   objects (no pyplot global state); PNG metadata is left empty so the page holds no
   link of any kind.
3. ``sensitivity_curves`` accepts ``{name: {"x": [...], "y": [...]}}``,
   ``{name: [[x, y], ...]}``, ``[{"name", "x", "y"}, ...]`` or any of these under a
   ``"curves"`` key (with optional ``"x_label"``/``"y_label"``); anything else gives
   no curves and the page shows the raw data instead.
"""

from __future__ import annotations

__all__ = [
    "channels_plot",
    "latency_plot",
    "macs_plot",
    "require_matplotlib",
    "sensitivity_curves",
    "sensitivity_plot",
    "steps_plot",
]

import base64
import io
import math
from typing import Any

from onnxprune.errors import RuntimeMissingError

BEFORE, AFTER = "#9aa5b1", "#2f6fb0"


def require_matplotlib() -> Any:
    """The ``matplotlib.figure`` module (rule 1)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.figure
    except ImportError as exc:
        raise RuntimeMissingError(
            "matplotlib is not installed, so the HTML report cannot draw plots: "
            "pip install 'onnxprune[report]' (or call write_html(..., plots=False))") from exc
    return matplotlib.figure


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight",
                metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _bars(title: str, labels: list[str], before: list[float], after: list[float],
          ylabel: str) -> str:
    figure = require_matplotlib()
    n = len(labels)
    fig = figure.Figure(figsize=(min(max(6.0, 0.22 * n + 2), 18.0), 3.6))
    ax = fig.add_subplot()
    xs = list(range(n))
    ax.bar([x - 0.2 for x in xs], before, width=0.4, color=BEFORE, label="before")
    ax.bar([x + 0.2 for x in xs], after, width=0.4, color=AFTER, label="after")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_xticks(xs)
    if n <= 40:
        ax.set_xticklabels(labels, rotation=70, ha="right", fontsize=7)
    else:
        ax.set_xticklabels([str(i) if i % 5 == 0 else "" for i in xs], fontsize=7)
        ax.set_xlabel("layer index (see table)")
    ax.legend(frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def channels_plot(layers: list[dict]) -> str | None:
    if not layers:
        return None
    return _bars("Channels per layer", [r["layer"] for r in layers],
                 [r["before"] for r in layers], [r["after"] for r in layers], "channels")


def macs_plot(rows: list[dict]) -> str | None:
    if not rows:
        return None
    return _bars("MACs per layer (millions, per item)", [r["node"] for r in rows],
                 [r["before"] / 1e6 for r in rows],
                 [(r["after"] or 0.0) / 1e6 for r in rows], "MMACs")


def latency_plot(comparison: dict) -> str | None:
    """Median latency (bars) and p90 (whiskers) per provider/configuration."""
    runs = [(f"{p}\n{r['threads']}t b{r['batch']}", r)
            for p, rows in (comparison.get("providers") or {}).items() for r in rows]
    if not runs:
        return None
    figure = require_matplotlib()
    fig = figure.Figure(figsize=(max(5.0, 1.6 * len(runs) + 2), 3.6))
    ax = fig.add_subplot()
    for i, (_, r) in enumerate(runs):
        for offset, key, color in ((-0.2, "original", BEFORE), (0.2, "pruned", AFTER)):
            lat = r[key]["latency"]
            ax.bar(i + offset, lat["p50_ms"], width=0.4, color=color,
                   yerr=[[0], [lat["p90_ms"] - lat["p50_ms"]]], capsize=3,
                   label=key if i == 0 else None)
        ideal = f" (ideal {r['ideal_speedup']:.2f}x)" if r.get("ideal_speedup") else ""
        top = max(r["original"]["latency"]["p90_ms"], r["pruned"]["latency"]["p90_ms"])
        ax.annotate(f"{r['speedup']:.2f}x{ideal}", (i, top), ha="center", va="bottom",
                    fontsize=8, xytext=(0, 3), textcoords="offset points")
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels([label for label, _ in runs], fontsize=8)
    ax.set_ylabel("latency ms (bar p50, whisker p90)")
    ax.set_title("Latency before/after, measured speed-up (ideal = MACs ratio)")
    ax.margins(y=0.15)
    ax.legend(frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def steps_plot(steps: list[dict]) -> str | None:
    """Each numeric metric of the steps against the step (``achieved`` when present)."""
    if not steps:
        return None
    x_key = "achieved" if all(_number(s.get("achieved")) for s in steps) else None
    xs = [s[x_key] for s in steps] if x_key else list(range(1, len(steps) + 1))
    skip = {x_key, "step", "index"}
    keys = [k for k in dict.fromkeys(k for s in steps for k in s)
            if k not in skip and all(_number(s.get(k)) for s in steps)][:6]
    if not keys:
        return None
    figure = require_matplotlib()
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = figure.Figure(figsize=(4.2 * cols, 2.8 * rows))
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.plot(xs, [s[key] for s in steps], marker="o", color=AFTER)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel(x_key or "step", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _pairs(value: Any) -> tuple[list[float], list[float]] | None:
    if isinstance(value, dict) and "x" in value and "y" in value:
        xs, ys = list(value["x"]), list(value["y"])
    elif isinstance(value, list) and all(isinstance(p, list | tuple) and len(p) == 2
                                         for p in value):
        xs, ys = [p[0] for p in value], [p[1] for p in value]
    else:
        return None
    if len(xs) != len(ys) or not xs or not all(_number(v) for v in xs + ys):
        return None
    return xs, ys


def sensitivity_curves(data: Any) -> tuple[list[tuple[str, list, list]], str, str]:
    """Normalised curves, x label, y label (rule 3)."""
    x_label, y_label = "fraction removed", "metric"
    if isinstance(data, dict) and "curves" in data:
        x_label = str(data.get("x_label", x_label))
        y_label = str(data.get("y_label", data.get("metric", y_label)))
        data = data["curves"]
    items: list[tuple[str, Any]] = []
    if isinstance(data, dict):
        items = [(str(k), v) for k, v in data.items()]
    elif isinstance(data, list):
        items = [(str(c.get("name", i)), c) for i, c in enumerate(data) if isinstance(c, dict)]
    curves = []
    for name, value in items:
        pairs = _pairs(value)
        if pairs:
            curves.append((name, *pairs))
    return curves, x_label, y_label


def sensitivity_plot(data: Any) -> str | None:
    curves, x_label, y_label = sensitivity_curves(data)
    if not curves:
        return None
    figure = require_matplotlib()
    fig = figure.Figure(figsize=(7.0, 4.0))
    ax = fig.add_subplot()
    for name, xs, ys in curves[:20]:
        ax.plot(xs, ys, marker=".", label=name)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title("Sensitivity" + (f" ({len(curves)} curves, first 20 shown)"
                                  if len(curves) > 20 else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, ncol=2)
    return _png(fig)
