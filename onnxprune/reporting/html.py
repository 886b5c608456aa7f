"""A self-contained HTML page from a compress report dict.

Rules:

1. The page needs nothing outside itself: inline CSS, no script, plots as inline
   base64 PNG (``data:`` URIs). It holds no ``http``/``https`` reference at all, so it
   can be mailed, archived as a CI artifact or opened offline.
2. The report is validated against :mod:`onnxprune.reporting.schema` first (a
   :class:`DataError` names the first bad key); unknown extra keys are allowed and
   shown in the raw JSON at the end.
3. Sections appear when their data does: summary and channels per layer always;
   MACs per layer with ``layer_macs``; latency with ``benchmark``; fidelity per step
   with ``steps``; sensitivity with ``sensitivity``; mobile with ``mobile``. A missing
   optional section says which key would fill it. *Accuracy* (every flow): the task
   metric of original and result side by side from ``accuracy`` (or that it was not
   measured and how to measure it), a drop beyond the budget in red, the flow chosen
   (``flow``), the recovery candidates (``calibration.recovery.candidates``) and the
   fidelity per output and part.
4. Every string from the report is HTML-escaped.
5. ``plots=False`` writes the same page without plots (no matplotlib needed).
"""

from __future__ import annotations

__all__ = ["render_html", "write_html"]

import html
import json
import os
import pathlib
from collections.abc import Callable
from typing import Any

from onnxprune.reporting import plots as P
from onnxprune.reporting.schema import REPORT_SCHEMA_VERSION, validate_report

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1200px;padding:0 1rem;color:#1f2933;line-height:1.4}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;
border-bottom:1px solid #d9e2ec;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
th,td{border:1px solid #d9e2ec;padding:.25rem .5rem;text-align:right}
th{background:#f0f4f8}td:first-child,th:first-child{text-align:left}
.muted{color:#627d98;font-size:.85rem}.headline{font-size:1.1rem;margin:.6rem 0}
.good{color:#1f7a3f}.warn{color:#a15c07}.bad{color:#b42318}
img{max-width:100%;display:block;margin:.5rem 0}
pre{background:#f5f7fa;padding:.6rem;overflow:auto;font-size:.75rem;max-height:30rem}
code{font-size:.85rem}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, spec: str = ",") -> str:
    if value is None:
        return "-"
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return _e(value)


def _ratio(before: Any, after: Any) -> str:
    return f"{after / before:.3f}x" if before and after is not None else "-"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, _Raw) else _e(c)}</td>"
                                    for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Raw(str):
    """Already-escaped HTML for a table cell."""


def _img(png: str | None, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{png}">' if png else ""


def _missing(key: str, how: str) -> str:
    return f'<p class="muted">No <code>{_e(key)}</code> in this report ({_e(how)}).</p>'


def _summary(r: dict) -> str:
    rows = [
        ["parameters", _num(r["params_before"]), _num(r["params_after"]),
         _ratio(r["params_before"], r["params_after"])],
        ["MACs per item", _num(r["macs_before"], ",.0f"), _num(r["macs_after"], ",.0f"),
         _ratio(r["macs_before"], r["macs_after"])],
        ["file bytes", _num(r["size_before"]), _num(r["size_after"]),
         _ratio(r["size_before"], r["size_after"])],
    ]
    opts = r.get("options") or {}
    out = [_table(["", "before", "after", "after/before"], rows)]
    out.append(f"<p>Removed <b>{100 * r['achieved']:.1f}%</b> of "
               f"{_e(opts.get('metric', 'the metric'))}; options: "
               f"<code>{_e(json.dumps(opts, sort_keys=True))}</code>; took {r['seconds']:.1f} s."
               "</p>")
    shapes = r.get("input_shapes") or {}
    if shapes:  # MACs and every run are at these shapes (onnxprune.graph.input_shapes)
        from onnxprune.graph.input_shapes import format_shapes

        out.append(f"<p>Input shapes (MACs per item at these): {_e(format_shapes(shapes))}</p>")
    check = r.get("verification") or {}
    if check:
        out.append("<p>Verification: " + ", ".join(f"{_e(k)} = {_e(v)}"
                                                    for k, v in check.items()) + "</p>")
    return "".join(out)


def _headline(r: dict) -> str:
    ideal = r["macs_before"] / r["macs_after"] if r.get("macs_after") else None
    text = f"Ideal speed-up (MACs ratio): <b>{ideal:.2f}x</b>" if ideal else ""
    bench = r.get("benchmark") or {}
    measured = [(p, row) for p, rows in (bench.get("providers") or {}).items() for row in rows]
    if measured:
        p, row = measured[0]
        text += (f"; measured on {_e(p)}, {row['threads']} thread(s), batch {row['batch']}: "
                 f"<b class=\"{'good' if row['speedup'] >= 1 else 'warn'}\">"
                 f"{row['speedup']:.2f}x</b> (median latency "
                 f"{row['original']['latency']['p50_ms']:.2f} ms &rarr; "
                 f"{row['pruned']['latency']['p50_ms']:.2f} ms)")
    return f'<p class="headline">{text}</p>' if text else ""


def _layers(r: dict, plot: Callable) -> str:
    changed = [row for row in r["layers"] if row["before"] != row["after"]]
    rows = [[row["layer"], row["kind"], row["before"], row["after"],
             f"{row['after'] / row['before']:.2f}" if row["before"] else "-"]
            for row in r["layers"]]
    return (plot(P.channels_plot, r["layers"], "channels per layer")
            + f"<p>{len(changed)} of {len(r['layers'])} layers changed.</p>"
            + "<details><summary>All layers</summary>"
            + _table(["layer", "kind", "before", "after", "kept"], rows) + "</details>")


def _macs(r: dict, plot: Callable) -> str:
    rows = r.get("layer_macs")
    if not rows:
        return _missing("layer_macs", "add onnxprune.reporting.macs.layer_macs(input, output)")
    table = [[x["node"], x["op_type"], _num(x["before"], ",.0f"), _num(x["after"], ",.0f"),
              _ratio(x["before"], x["after"])] for x in rows]
    return (plot(P.macs_plot, rows, "MACs per layer") + "<details><summary>MACs per node"
            "</summary>" + _table(["node", "op", "before", "after", "after/before"], table)
            + "</details>")


def _benchmark(r: dict, plot: Callable) -> str:
    bench = r.get("benchmark")
    if not bench:
        return _missing("benchmark", "run compress --bench or onnxprune.benchmark.compare()")
    rows = []
    for provider, runs in (bench.get("providers") or {}).items():
        for run in runs:
            o, p = run["original"], run["pruned"]
            rows.append([provider, run["threads"], run["batch"],
                         f"{o['latency']['p50_ms']:.3f}", f"{p['latency']['p50_ms']:.3f}",
                         f"{o['latency']['p90_ms']:.3f}", f"{p['latency']['p90_ms']:.3f}",
                         f"{o['latency']['p99_ms']:.3f}", f"{p['latency']['p99_ms']:.3f}",
                         _num(o.get("peak_memory_mb"), ".1f"), _num(p.get("peak_memory_mb"),
                                                                     ".1f"),
                         f"{run['speedup']:.2f}x", _num(run.get("ideal_speedup"), ".2f") + "x"])
    out = [plot(P.latency_plot, bench, "latency per provider")]
    out.append(_table(["provider", "threads", "batch", "p50 ms before", "p50 ms after",
                       "p90 before", "p90 after", "p99 before", "p99 after", "peak MB before",
                       "peak MB after", "speed-up measured", "speed-up ideal (MACs)"], rows))
    for provider, reason in (bench.get("unavailable") or {}).items():
        out.append(f'<p class="warn">{_e(provider)}: {_e(reason)}</p>')
    settings = bench.get("settings") or {}
    env = bench.get("environment") or {}
    out.append(f'<p class="muted">{_e(settings.get("runs"))} timed runs after '
               f'{_e(settings.get("warmup"))} warm-up runs per model, original and pruned '
               f'interleaved run by run; onnxruntime {_e(env.get("onnxruntime"))} on '
               f'{_e(env.get("cpu"))} ({_e(env.get("cpu_count"))} CPUs); peak memory: '
               f'{_e(settings.get("memory_method"))}.</p>')
    return "".join(out)


def _accuracy(r: dict) -> str:
    """Rule 3: the number a user cares about."""
    accuracy = r.get("accuracy")
    if not accuracy:
        return _missing("accuracy", "pass --eval-data (held-out inputs, labels optional)")
    if not accuracy.get("measured"):
        return f'<p class="warn"><b>{_e(accuracy.get("message"))}</b></p>'
    out = [_table(["metric", "original", "result", "drop", "budget", "samples"],
                  [[accuracy["metric"], _num(accuracy["original"], ".4f"),
                    _num(accuracy["result"], ".4f"), _num(accuracy["drop"], "+.4f"),
                    _num(accuracy.get("max_drop"), "g"), accuracy.get("samples")]])]
    if accuracy.get("exceeded"):
        out.append(f'<p class="bad"><b>{_e(accuracy["message"])}</b></p>')
    flow = r.get("flow")
    if flow:
        out.append(f"<p>Flow: {_e(flow.get('message'))}</p>")
    recovery = (r.get("calibration") or {}).get("recovery") or {}
    if recovery.get("candidates"):
        shown = ", ".join(f"{_e(k)} {_num(v, '.4f')}" for k, v in recovery["candidates"].items())
        out.append(f"<p>Recovery chosen by measurement: <b>{_e(recovery.get('chosen'))}</b> "
                   f"(held-out metric: {shown})</p>")
    rows = []
    for head in (accuracy.get("fidelity") or {}).get("outputs") or []:
        rows.append([head["output"], head["kind"], head["reads"], "all",
                     _num(head.get("agreement"), ".4f"), _num(head.get("cosine"), ".4g"),
                     _num(head.get("rel_mse"), ".4g")])
        for part in head.get("parts") or []:
            first, end = part["channels"]
            rows.append(["", "", "", f"channels {first}-{end - 1} ({part['range']})",
                         _num(part.get("agreement"), ".4f"), _num(part.get("cosine"), ".4g"),
                         _num(part.get("rel_mse"), ".4g")])
    if rows:
        out.append("<p>Fidelity per output and part (cosine distance and relative MSE "
                   "standardised per output channel):</p>" + _table(
                       ["output", "kind", "reads", "part", "agreement", "cosine distance",
                        "rel. MSE"], rows))
    return "".join(out)


def _steps(r: dict, plot: Callable) -> str:
    steps = r.get("steps")
    if not steps:
        return _missing("steps", "a one-shot compression has no progressive steps")
    keys = list(dict.fromkeys(k for s in steps for k in s))
    rows = [[_num(s.get(k), ".4g") if isinstance(s.get(k), float) else s.get(k, "")
             for k in keys] for s in steps]
    return plot(P.steps_plot, steps, "fidelity per step") + _table(keys, rows) + \
        _budget(r.get("budget"))


def _budget(budget: dict | None) -> str:
    """--max-drop: where the schedule stopped, and the final fine-tune."""
    if not budget:
        return ""
    if not budget.get("stopped_at"):
        return (f'<p class="muted">--max-drop {_e(budget.get("max_drop"))}: every step '
                f'stayed within the budget ({_e(budget.get("metric", "-"))}).</p>')
    dropped = budget.get("dropped") or {}
    text = (f'--max-drop {_e(budget.get("max_drop"))}: step {_e(budget["stopped_at"])} '
            f'(removing {_num(dropped.get("achieved"), ".3f")}) lowered the '
            f'{_e(budget.get("metric"))} by {_num(dropped.get("drop"), ".4f")} and was '
            "discarded; the last step within budget was kept.")
    final = budget.get("final")
    if final:
        text += (f' Final fine-tune: {_num(final.get("value_before"), ".4f")} &rarr; '
                 f'{_num(final.get("value_after"), ".4f")} '
                 f'({"kept" if final.get("kept") else "not kept"}).')
    return f'<p class="warn">{text}</p>'


def _sensitivity(r: dict, plot: Callable) -> str:
    data = r.get("sensitivity")
    if data is None:
        return _missing("sensitivity", "no sensitivity analysis was run")
    curves, _, _ = P.sensitivity_curves(data)
    raw = "" if curves else "<pre>" + _e(json.dumps(data, indent=1, default=str)) + "</pre>"
    return plot(P.sensitivity_plot, data, "sensitivity curves") + raw


def _mobile(r: dict) -> str:
    mobile = r.get("mobile")
    if not mobile:
        return ""
    out = [f"<h2>Mobile (ORT format)</h2><p>{_e(mobile.get('output'))}: "
           f"{_num(mobile.get('ort_bytes'))} bytes.</p>"]
    usability = mobile.get("usability") or {}
    rows = [[v["provider"], f"{v['supported_nodes']}/{v['nodes']} ({100 * v['share']:.0f}%)",
             v["partitions"], v["verdict"], "; ".join(v["why_not"]) or "-"]
            for k, v in usability.items() if isinstance(v, dict) and "provider" in v]
    if rows:
        out.append(_table(["provider", "nodes taken", "partitions", "verdict", "why not"],
                          rows))
    return "".join(out)


def render_html(report: dict, *, plots: bool = True, title: str | None = None) -> str:
    """The page as a string (rules 1-5)."""
    validate_report(report)
    if plots:
        P.require_matplotlib()

    def plot(func: Callable, data: Any, alt: str) -> str:
        return _img(func(data), alt) if plots else ""

    r = report
    title = title or f"onnxprune report: {r['input']}"
    versions = r.get("versions") or {"onnxprune": r.get("version")}
    sections = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">{_e(r["input"])} &rarr; {_e(r["output"])}; '
        + ", ".join(f"{_e(k)} {_e(v)}" for k, v in versions.items() if v)
        + f"; report schema {_e(r.get('schema_version', REPORT_SCHEMA_VERSION))}</p>",
        _headline(r),
        "<h2>Summary</h2>", _summary(r),
        "<h2>Accuracy</h2>", _accuracy(r),
        "<h2>Channels per layer</h2>", _layers(r, plot),
        "<h2>MACs per layer</h2>", _macs(r, plot),
        "<h2>Latency</h2>", _benchmark(r, plot),
        "<h2>Fidelity per step</h2>", _steps(r, plot),
        "<h2>Sensitivity</h2>", _sensitivity(r, plot),
        _mobile(r),
        f"<h2>Groups</h2><details><summary>{len(r['groups'])} groups</summary>"
        + _table(["#", "group", "channels", "kept", "prunable", "MACs share"],
                 [[g.get("index"), g.get("name"), g.get("channels"), g.get("kept", "-"),
                   "yes" if g.get("prunable") else "; ".join(g.get("reasons") or []) or "no",
                   _num(g.get("macs_share"), ".3f")] for g in r["groups"]]) + "</details>",
    ]
    if r.get("notes"):
        sections.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in r["notes"])
                        + "</ul>")
    sections.append("<h2>Raw report</h2><details><summary>JSON</summary><pre>"
                    + _e(json.dumps(report, indent=1, default=str)) + "</pre></details>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
            + "\n".join(s for s in sections if s) + "</body></html>\n")


def write_html(report: dict, path: str | os.PathLike[str], *, plots: bool = True,
               title: str | None = None) -> pathlib.Path:
    """Write the self-contained report page to ``path``; return the path."""
    from onnxprune.errors import OutputError

    path = pathlib.Path(path)
    page = render_html(report, plots=plots, title=title)
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the report ({exc.strerror})") from exc
    return path
