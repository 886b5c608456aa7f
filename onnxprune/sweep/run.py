"""``onnxprune sweep``: the compress pipeline at every target x criterion, then one
comparable latency measurement, one JSON document and one HTML page.

Rules:

1. Everything a user can get wrong is checked before any point runs: the options of
   every point (:func:`onnxprune.sweep.points.grid`), the output folder (it must not
   exist or be empty, unless ``force``: then files of the same names are replaced, other
   files are left alone; exit 9), the latency provider (exit 7), matplotlib when an
   HTML page is asked for (exit 7), Ray when ``workers``/``address`` are (exit 7).
2. Every point is one task of :func:`onnxprune.parallel.open_executor` (in process by
   default, a local Ray with ``workers``, a cluster with ``address``); the model and
   data are its ``shared`` value, sent once. A failed point is a row with its error and
   exit code; the others still run.
3. The driver writes every passed point's files into the folder (``<name>.onnx`` and
   ``<name>.onnx.report.json``, paths in them restored to the user's), then times the
   original and every passed point interleaved in one :func:`onnxprune.benchmark.benchmark`
   call (same provider, threads and inputs, in this process after the points, so the
   latencies are comparable; never inside the parallel tasks).
4. The document (``sweep.json`` in the folder; schema in docs/sweep.md) holds the
   original as a reference row, every point's row, the Pareto fronts, the executor and
   the benchmark settings; ``exit_code`` is 0 when every point passed, else 12
   (:class:`~onnxprune.errors.SweepPointsError`, raised by the CLI after writing).
"""

from __future__ import annotations

__all__ = ["NOT_PER_POINT", "SWEEP_SCHEMA_VERSION", "default_folder", "sweep"]

import json
import logging
import os
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from onnxprune._version import __version__
from onnxprune.errors import ExitCode, OnnxPruneError, OutputError, UsageError
from onnxprune.parallel import TaskFailure, open_executor
from onnxprune.sweep import rows as R
from onnxprune.sweep.inputs import pack_inputs, restore_paths
from onnxprune.sweep.points import Point, grid, run_point

logger = logging.getLogger(__name__)

SWEEP_SCHEMA_VERSION = 1
# options a point cannot have: the sweep writes its own outputs and measures latency itself
NOT_PER_POINT = ("html_report", "bench", "mobile", "work_dir", "resume")
WARMUP = 10


def default_folder(model: str | os.PathLike[str]) -> pathlib.Path:
    """``<model stem>.sweep`` next to the model."""
    path = pathlib.Path(model)
    return path.with_name(path.stem + ".sweep")


def _check_folder(folder: pathlib.Path, force: bool) -> None:
    """Rule 1: a new or empty folder, or ``force``."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: exists and is not a folder; pass -o DIR")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise OutputError(f"{folder}: the output folder exists and is not empty; nothing was "
                          "written: pass --force to write into it (files of the same names "
                          "are replaced) or -o another folder")


def _make_folder(folder: pathlib.Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the output folder: {exc}") from exc


def _check_options(options: dict[str, Any]) -> None:
    given = [k for k in NOT_PER_POINT if options.get(k)]
    if given:
        raise UsageError(f"sweep points do not take {', '.join(given)}: the sweep writes its "
                         "own JSON and HTML and measures every point's latency itself")


def _check_provider(provider: str) -> None:
    from onnxprune.benchmark import select_providers
    from onnxprune.graph.runtime import import_ort

    select_providers([provider], import_ort())  # RuntimeMissingError (exit 7)


def _write(path: pathlib.Path, payload: bytes) -> None:
    staged = path.with_name(f".{path.name}.tmp")
    try:
        staged.write_bytes(payload)
        os.replace(staged, path)
    except OSError as exc:
        staged.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write: {exc}") from exc


def _store(point: Point, reply: dict, folder: pathlib.Path, origins: dict[str, str]) -> dict:
    """Rule 3: the point's files in ``folder``; its result with the user's paths."""
    mapping = {reply["paths"][k]: origins[k] for k in reply["paths"]}
    mapping[reply["out_dir"]] = str(folder)
    result = restore_paths(reply["result"], mapping)
    report = None
    for name, payload in reply["files"].items():
        if name.endswith(".report.json"):
            document = restore_paths(json.loads(payload), mapping)
            payload = json.dumps(document, indent=2).encode()
            report = str(folder / name)
        _write(folder / name, payload)
    return R.point_row(point, result, str(folder / f"{point.name}.onnx"), report)


def _shapes(result: dict) -> dict[str, tuple[int, ...]]:
    """The run-time shapes the points used, batch 1, for the benchmark."""
    shapes = result.get("input_shapes") or {}
    return {name: tuple(1 if d is None else int(d) for d in entry["shape"])
            for name, entry in shapes.items()}


def _measure(rows: list[dict], options: dict[str, Any], shapes: dict) -> dict:
    """Rule 3: one interleaved benchmark of the original (``rows[0]``) and every passed
    point (the original alone when none passed)."""
    from onnxprune.benchmark import benchmark

    timed = [row for row in rows if row["status"] == "ok" and row.get("path")]
    provider, threads = options.get("provider", "cpu"), int(options.get("threads", 1))
    runs = int(options.get("bench_runs", 50))
    settings = {"provider": provider, "threads": threads, "runs": runs, "warmup": WARMUP,
                "interleaved": True, "input_shapes": {k: list(v) for k, v in shapes.items()},
                "where": "in the driver, after every point finished"}
    try:
        document = benchmark([row["path"] for row in timed], providers=[provider],
                             threads=[threads], runs=runs, warmup=WARMUP,
                             input_shapes=shapes, memory=False)
    except OnnxPruneError as exc:
        logger.warning("the sweep's latency measurement failed: %s", exc)
        return {**settings, "error": str(exc)}
    entry = next(r for r in document["results"] if r["status"] == "ok")
    original, info = rows[0], document["models"][0]
    if original["params"] is None:  # no point passed: the original's own numbers
        original.update(params=info["params"], macs=info["macs"],
                        size_bytes=info["file_bytes"], speedup=1.0)
    reference = entry["models"][0]["latency"]["p50_ms"]
    for row, model in zip(timed, entry["models"]):
        row["latency"] = model["latency"]
        row["latency_ms"] = model["latency"]["p50_ms"]
        row["speedup"] = round(reference / row["latency_ms"], 4) if row["latency_ms"] else None
    return {**settings, "session_providers": entry.get("session_providers"),
            "warning": entry.get("warning"), "environment": document["environment"]}


def sweep(model: str | os.PathLike[str], targets: Sequence[float],
          criteria: Sequence[str] | None = None, *, options: dict[str, Any] | None = None,
          output: str | os.PathLike[str] | None = None, force: bool = False,
          workers: int | None = None, ray_address: str | None = None,
          html: str | os.PathLike[str] | None = None,
          progress: Callable[[int, int], None] | None = None,
          **kwargs: Any) -> dict[str, Any]:
    """Run every point, write the folder, return the document (rules 1-4).

    ``options`` (or keyword arguments of the same names) are the compress options
    every point shares; ``criteria`` defaults to ``options["criterion"]`` (else
    ``auto``); ``steps`` defaults to 1 (one-shot; compress's default of 4 with data
    does not apply). ``html`` writes the Pareto page there. ``progress(done, total)`` is
    called as points finish.
    """
    started = time.perf_counter()
    options = {**(options or {}), **kwargs}
    options.setdefault("steps", 1)  # one-shot unless --steps asks for progressive
    _check_options(options)
    criteria = list(criteria or [options.get("criterion", "auto")])
    points = grid(targets, criteria, options)
    folder = pathlib.Path(output) if output else default_folder(model)
    _check_folder(folder, force)
    _check_provider(options.get("provider", "cpu"))
    if html:
        from onnxprune.reporting.plots import require_matplotlib

        require_matplotlib()
    shared = pack_inputs(str(model), options.get("data"), options.get("eval_data"))
    with open_executor(workers=workers, address=ray_address) as executor:
        how = {"name": executor.name, "workers": executor.workers}
        _make_folder(folder)  # only once the executor (Ray) is there
        replies = executor.map(run_point, points, shared=shared, progress=progress,
                               keep_going=True)
    document = _document(model, points, replies, folder, options, shared.origins, how)
    document["seconds"] = round(time.perf_counter() - started, 3)  # points + latency
    if html:
        from onnxprune.sweep.html import write_sweep_html

        document["html"] = str(html)
        write_sweep_html(document, html)
    _write(folder / "sweep.json", json.dumps(document, indent=2, default=str).encode())
    return document


def _document(model: str | os.PathLike[str], points: list[Point], replies: list[Any],
              folder: pathlib.Path, options: dict[str, Any], origins: dict[str, str],
              executor: dict) -> dict[str, Any]:
    """Rules 3-4."""
    results, point_rows = [], []
    for point, reply in zip(points, replies):
        if isinstance(reply, TaskFailure):
            point_rows.append(R.failed_row(point, reply))
            continue
        point_rows.append(_store(point, reply, folder, origins))
        results.append(reply["result"])
    original = R.original_row(str(model), results)
    shapes = _shapes(results[0]) if results else {}
    latency = _measure([original, *point_rows], options, shapes)
    fronts = R.mark_pareto([original, *point_rows])
    failed = sum(row["status"] == "failed" for row in point_rows)
    return {
        "kind": "onnxprune.sweep", "schema_version": SWEEP_SCHEMA_VERSION,
        "version": __version__, "model": str(model), "folder": str(folder),
        "targets": list(dict.fromkeys(p.target for p in points)),
        "criteria": list(dict.fromkeys(p.criterion for p in points)),
        "metric": options.get("metric", "params"),
        "options": {k: v for k, v in options.items() if k not in ("target", "criterion")},
        "executor": executor, "latency": latency, "original": original,
        "points": point_rows, "pareto": fronts,
        "passed": len(point_rows) - failed, "failed": failed,
        "exit_code": int(ExitCode.SWEEP_POINTS if failed else ExitCode.OK), "html": None,
    }
