"""The sweep's self-contained HTML page: Pareto plots and the table of points.

Rules:

1. Self-contained like :mod:`onnxprune.reporting.html` (its CSS; inline base64 PNG,
   no script, no link, no ``http`` reference): it can be mailed or archived.
2. Sections: a summary (points passed/failed, executor, how latency was measured),
   the two Pareto plots of :mod:`onnxprune.sweep.plots` (or why one is missing), the
   table (original first; failed rows in red with their error and exit code;
   Pareto-optimal cells marked), and the raw document.
3. Every string from the document is HTML-escaped.
"""

from __future__ import annotations

__all__ = ["render_sweep_html", "write_sweep_html"]

import html
import json
import os
import pathlib
from typing import Any

from onnxprune.errors import OutputError
from onnxprune.reporting.html import CSS
from onnxprune.sweep.plots import pareto_plot

_CSS = "td.error{text-align:left;max-width:32rem}"
COLUMNS = ["point", "target", "criterion", "status", "achieved", "params", "MACs",
           "file bytes", "latency p50 (ms)", "speed-up", "task metric", "Pareto (latency)",
           "Pareto (size)", "error"]


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _cells(row: dict) -> list[str]:
    metric = row.get("task_metric")
    pareto = row.get("pareto") or {}
    error = (f"exit {row['exit_code']}: {row['error_kind']}: {row['error']}"
             if row.get("status") == "failed" else "")
    return [row["name"], _num(row.get("target"), "g"), row.get("criterion") or "-",
            row["status"], _num(row.get("achieved"), ".3f"), _num(row.get("params"), ","),
            _num(row.get("macs"), ",.0f"), _num(row.get("size_bytes"), ","),
            _num(row.get("latency_ms"), ".4f"), _num(row.get("speedup"), ".2f"),
            _num(metric["result"], ".4f") if metric else "-",
            "yes" if pareto.get("latency") else "", "yes" if pareto.get("size") else "",
            error]


def _table(document: dict) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in COLUMNS)
    body = []
    for row in [document["original"], *document["points"]]:
        cls = ' class="bad"' if row["status"] == "failed" else ""
        cells = _cells(row)
        body.append(f"<tr{cls}>" + "".join(f"<td>{_e(c)}</td>" for c in cells[:-1])
                    + f'<td class="error">{_e(cells[-1])}</td></tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _summary(document: dict) -> str:
    latency = document.get("latency") or {}
    executor = document.get("executor") or {}
    parts = [f"<p class=\"headline\"><b>{document['passed']}</b> point(s) passed, "
             f"<b>{document['failed']}</b> failed (exit code {document['exit_code']}); "
             f"executor {_e(executor.get('name'))} with {_e(executor.get('workers'))} "
             f"worker(s); metric {_e(document.get('metric'))}.</p>"]
    if latency.get("error"):
        parts.append(f"<p class=\"warn\">Latency not measured: {_e(latency['error'])}</p>")
    else:
        parts.append(f"<p>Latency: original and every point timed interleaved on "
                     f"{_e(latency.get('provider'))} with {_e(latency.get('threads'))} "
                     f"thread(s), {_e(latency.get('runs'))} runs after "
                     f"{_e(latency.get('warmup'))} warm-up runs, "
                     f"{_e(latency.get('where'))}.</p>")
        if latency.get("warning"):
            parts.append(f"<p class=\"warn\">{_e(latency['warning'])}</p>")
    return "".join(parts)


def _plots(document: dict, plots: bool) -> str:
    if not plots:
        return '<p class="muted">Plots were not drawn (plots=False).</p>'
    out = []
    for axis, alt in (("latency", "task metric vs latency"), ("size", "task metric vs size")):
        png = pareto_plot(document, axis)
        if png is None:
            out.append(f'<p class="muted">No {_e(alt)} plot: no point has both a task metric '
                       "and this number (pass --eval-data to measure the task metric).</p>")
        else:
            out.append(f'<img alt="{_e(alt)}" src="data:image/png;base64,{png}">')
    return "".join(out)


def render_sweep_html(document: dict, plots: bool = True) -> str:
    """Rules 1-3: the page as a string."""
    title = f"onnxprune sweep: {document['model']}"
    raw = json.dumps(document, indent=2, sort_keys=True, default=str)
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{CSS}{_CSS}</style></head><body>"
            f"<h1>{_e(title)}</h1>{_summary(document)}"
            f"<h2>Pareto plots</h2>{_plots(document, plots)}"
            f"<h2>Points</h2>{_table(document)}"
            f"<h2>Raw document</h2><details><summary>JSON</summary><pre>{_e(raw)}</pre>"
            "</details></body></html>")


def write_sweep_html(document: dict, path: str | os.PathLike[str], plots: bool = True,
                     ) -> pathlib.Path:
    """Write the page; an unwritable path is an :class:`OutputError` (exit 9)."""
    path = pathlib.Path(path)
    page = render_sweep_html(document, plots)
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the HTML page: {exc}") from exc
    return path
