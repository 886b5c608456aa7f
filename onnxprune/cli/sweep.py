"""``onnxprune sweep``: compress at every target x criterion; JSON, HTML Pareto page.

Rules:

1. Takes every ``compress`` option except those a point cannot have (``--target``,
   ``--criterion``, ``-o``, ``--report``, ``--bench``, ``--mobile``, ``--work-dir``,
   ``--resume``): the same click options, so they stay in step with ``compress``.
   ``--config`` reads a compress recipe (it may also hold ``targets`` and ``criteria``);
   flags typed on the command line override it.
2. ``--targets``/``--criteria`` span the points; ``--workers N`` / ``--ray-address``
   choose the executor (:mod:`onnxprune.parallel`); ``-o DIR`` the folder (default
   ``<model stem>.sweep`` next to the model; ``--force`` to write into a non-empty one);
   ``--html PATH`` the page (default ``DIR/sweep.html``; ``--no-html`` for none).
3. ``--json`` prints the document; otherwise a table. Exit 0 when every point passed,
   12 when some failed (after everything was written), the usual codes for errors that
   stop the whole sweep before it runs.
"""

from __future__ import annotations

__all__ = ["command"]

import copy
from typing import Any

import click
from click.core import ParameterSource
from rich.table import Table

from onnxprune.cli import compress as compress_cli
from onnxprune.cli.common import emit_json, guard, stdout
from onnxprune.cli.data_options import parse_floats
from onnxprune.cli.task_progress import task_progress
from onnxprune.errors import SweepPointsError, UsageError
from onnxprune.sweep.run import NOT_PER_POINT

# compress parameters the sweep does not pass on (rule 1): its own MODEL/--config/-o/--json,
# the point's target and criterion, the options a point cannot have, and --workers /
# --ray-address, which the sweep itself takes (they dispatch the points)
_NOT_PASSED = {*compress_cli.CLI_ONLY, "target", "criterion", *NOT_PER_POINT,
               "workers", "ray_address"}
_SWEEP_KEYS = ("targets", "criteria")
_EXECUTOR_KEYS = ("workers", "ray_address")


def _criteria(ctx: click.Context, param: click.Parameter, value: str | None,
              ) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(v for v in value.replace(" ", "").split(",") if v)


# the sweep's own defaults where they differ from compress's
_HELP = {"steps": "Prune every point in N steps on the cubic schedule, fine-tuning after each "
                  "[default: 1, one-shot, also with --data].",
         "bench_runs": "Timed runs of the original and of every point (interleaved, after "
                       "all points)."}


def _passed(param: click.Parameter) -> click.Parameter:
    if param.name not in _HELP:
        return param
    mine = copy.copy(param)
    mine.help = _HELP[param.name]
    return mine


def _passed_params() -> list[click.Parameter]:
    return [p for p in compress_cli.command.params if p.name not in _NOT_PASSED]


def _explicit(ctx: click.Context) -> dict[str, Any]:
    """Compress options typed on the command line (they override the recipe)."""
    given = {}
    for param in _passed_params():
        if ctx.get_parameter_source(param.name) != ParameterSource.COMMANDLINE:
            continue
        key, value = compress_cli.option_key(param.name, ctx.params[param.name])
        given[key] = value
    return given


@click.command("sweep")
@click.argument("model", type=click.Path(path_type=str), required=False)
@click.option("--config", "config", type=click.Path(path_type=str),
              help="Compress recipe (.yaml/.yml/.json); may also hold 'targets' and "
                   "'criteria'.")
@click.option("--targets", callback=parse_floats,
              help="Comma-separated targets, e.g. 0.3,0.5,0.7 (one point per target and "
                   "criterion).")
@click.option("--criteria", callback=_criteria,
              help="Comma-separated criteria, e.g. l1,taylor [default: --config's criterion, "
                   "else auto].")
@click.option("-o", "--output", type=click.Path(path_type=str),
              help="Output folder [default: <model stem>.sweep next to the model].")
@click.option("--force", is_flag=True,
              help="Write into a non-empty output folder (files of the same names are "
                   "replaced).")
@click.option("--workers", type=int,
              help="Run the points on a local Ray instance with N workers (needs "
                   "onnxprune[distributed]).")
@click.option("--ray-address",
              help="Run the points on an existing Ray cluster (auto, ray://host:10001).")
@click.option("--html", "html_path", type=click.Path(path_type=str),
              help="Write the Pareto page here [default: <folder>/sweep.html].")
@click.option("--no-html", is_flag=True, help="Write no HTML page (no matplotlib needed).")
@click.option("--json", "as_json", is_flag=True, help="Print the sweep document.")
@click.pass_context
@guard
def command(ctx: click.Context, model: str | None, config: str | None,
            targets: tuple[float, ...] | None, criteria: tuple[str, ...] | None,
            output: str | None, force: bool, workers: int | None, ray_address: str | None,
            html_path: str | None, no_html: bool, as_json: bool, **_: Any) -> None:
    """Compress MODEL at every target (x criterion); write the pruned models, sweep.json
    and a Pareto page of the task metric against measured latency and size."""
    from onnxprune.options import load_recipe, merge_options
    from onnxprune.sweep import default_folder, sweep

    recipe = load_recipe(config) if config else {}
    model = model or recipe.get("model")
    if not model:
        raise UsageError("no model given: pass MODEL or set 'model' in the recipe")
    targets = targets or _listed(recipe.get("targets"), float)
    if not targets:
        raise UsageError("no target given: pass --targets 0.3,0.5,0.7 (or 'targets' in the "
                         "recipe)")
    criteria = criteria or _listed(recipe.get("criteria"), str)
    # a recipe's workers/ray_address dispatch the points (a point inside a Ray task
    # cannot start Ray again); the flags win
    workers = workers if workers is not None else recipe.get("workers")
    ray_address = ray_address or recipe.get("ray_address")
    plain = {k: v for k, v in recipe.items() if k not in (*_SWEEP_KEYS, *_EXECUTOR_KEYS)}
    options = merge_options(plain, _explicit(ctx))
    folder = output or str(default_folder(model))
    html = None if no_html else (html_path or f"{folder}/sweep.html")
    with task_progress("sweep points", not as_json) as progress:
        document = sweep(model, targets, criteria, options=options, output=folder,
                         force=force, workers=workers, ray_address=ray_address, html=html,
                         progress=progress)
    if as_json:
        emit_json(document)
    else:
        _print(document)
    if document["failed"]:
        written = (f"the others were written to {document['folder']}" if document["passed"]
                   else f"sweep.json is in {document['folder']}")
        raise SweepPointsError(f"{document['failed']} of {len(document['points'])} sweep "
                               f"point(s) failed (their rows name the error); {written}")


def _listed(value: Any, kind: type) -> tuple | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple):
        value = [value]
    try:
        return tuple(kind(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"recipe: bad targets/criteria list {value!r}: {exc}") from exc


def _print(document: dict) -> None:
    table = Table(title=f"sweep of {document['model']} -> {document['folder']}")
    for column in ("point", "status", "achieved", "params", "MACs", "bytes", "p50 ms",
                   "speed-up", "task metric", "Pareto"):
        table.add_column(column)
    for row in [document["original"], *document["points"]]:
        metric = row.get("task_metric")
        front = [axis for axis, on in (row.get("pareto") or {}).items() if on]
        status = row["status"] if row["status"] == "ok" else f"exit {row['exit_code']}"
        table.add_row(row["name"], status, _fmt(row.get("achieved"), ".3f"),
                      _fmt(row.get("params"), ","), _fmt(row.get("macs"), ",.0f"),
                      _fmt(row.get("size_bytes"), ","), _fmt(row.get("latency_ms"), ".4f"),
                      _fmt(row.get("speedup"), ".2f"),
                      _fmt(metric["result"] if metric else None, ".4f"), ",".join(front))
    stdout.print(table)
    for row in document["points"]:
        if row["status"] == "failed":
            stdout.print(f"{row['name']}: exit {row['exit_code']}: {row['error']}",
                         markup=False)
    if document.get("html"):
        stdout.print(f"Pareto page: {document['html']}", markup=False)


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


# rule 1: the compress options, as compress has them
command.params.extend(_passed(p) for p in _passed_params())
