"""The points of a sweep (target x criterion) and the task that runs one of them.

Rules:

1. :func:`grid` makes one :class:`Point` per criterion and target (criterion-major, the
   targets in the order given, duplicates dropped). A point's options are the sweep's
   compress options with its own ``target`` and ``criterion``, validated here (a bad
   value is a :class:`UsageError` before anything runs).
2. A point's name is ``t<target>-<criterion>`` with two decimals (``t0.50-l1``), or as
   many more as it takes to tell the targets apart; its model is ``<name>.onnx``.
3. :func:`run_point` is the executor task (module level, so Ray can pickle it): it
   writes the shared inputs into its own temporary folder
   (:mod:`onnxprune.sweep.inputs`), runs the compress pipeline on them into a fresh
   folder, and returns the result as plain data with the bytes of every file written
   (the model, its external data, ``<name>.onnx.report.json``), so a remote worker
   needs no file system in common with the driver. That temporary folder is removed
   when the point ends, passed or failed. A point that fails raises; the
   executor keeps the failure in its slot and the other points run.
"""

from __future__ import annotations

__all__ = ["Point", "grid", "run_point"]

import dataclasses
import logging
import pathlib
import tempfile
from collections.abc import Sequence
from typing import Any

from onnxprune.errors import UsageError
from onnxprune.options import build_options
from onnxprune.sweep.inputs import SweepInputs, materialize

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Point:
    """One sweep point: its name, target, criterion and complete compress options."""

    name: str
    target: float
    criterion: str
    options: dict[str, Any]


def _labels(targets: Sequence[float]) -> list[str]:
    """Rule 2: the shortest two-or-more-decimal labels that keep targets apart."""
    for digits in range(2, 8):
        labels = [f"{t:.{digits}f}" for t in targets]
        if len(set(labels)) == len(labels):
            return labels
    return [repr(t) for t in targets]


def grid(targets: Sequence[float], criteria: Sequence[str],
         options: dict[str, Any]) -> list[Point]:
    """Rule 1."""
    unique_targets = list(dict.fromkeys(float(t) for t in targets))
    unique_criteria = list(dict.fromkeys(criteria))
    if not unique_targets:
        raise UsageError("no target given: pass --targets 0.3,0.5,0.7")
    if not unique_criteria:
        raise UsageError("no criterion given: pass --criteria l1,taylor")
    points = []
    for criterion in unique_criteria:
        for target, label in zip(unique_targets, _labels(unique_targets)):
            values = {**options, "target": target, "criterion": criterion}
            checked = build_options(values)  # rule 1: UsageError naming the key
            dumped = checked.model_dump(mode="json", exclude_defaults=True)
            points.append(Point(f"t{label}-{criterion}", target, criterion,
                                {**dumped, "target": target, "criterion": criterion}))
    return points


def _compress_point(model: str, output: pathlib.Path, options: dict[str, Any]) -> Any:
    """The one call of the compress pipeline (a :class:`CompressResult`)."""
    from onnxprune.pipeline import run_compress

    return run_compress(model, output=output, options=options)


def run_point(shared: SweepInputs, point: Point) -> dict[str, Any]:
    """Rule 3: ``{"result", "files", "paths", "out_dir"}`` of one point."""
    with tempfile.TemporaryDirectory(prefix=f"onnxprune-sweep-{point.name}-") as scratch:
        root = pathlib.Path(scratch)
        paths = materialize(shared, root)
        options = dict(point.options)
        for kind in ("data", "eval_data"):
            if kind in paths:
                options[kind] = paths[kind]
        out_dir = root / "out"
        out_dir.mkdir()
        logger.info("sweep point %s: compressing", point.name)
        result = _compress_point(paths["model"], out_dir / f"{point.name}.onnx", options)
        files = {p.name: p.read_bytes() for p in sorted(out_dir.iterdir()) if p.is_file()}
    return {"result": result.to_dict(), "files": files, "paths": paths,
            "out_dir": str(out_dir)}
