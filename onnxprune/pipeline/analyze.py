"""``analyze_file``: the groups and totals of a model file, as plain data (``onnxprune
analyze``).

Rules:

1. MACs are per sample at the run-time input shapes (``input_shape``, else a default
   the model accepts), listed under ``input_shapes``; a model whose default shapes
   cannot be tried is still analyzed (a warning says why).
2. ``capacity`` is the prunable share and the reachable maximum (l1 scores).
"""

from __future__ import annotations

__all__ = ["analysis_of", "analyze_file"]

import logging
import os

from onnxprune._version import __version__
from onnxprune.analysis import Analysis, analyze
from onnxprune.errors import UnsupportedModelError
from onnxprune.graph import input_shapes, load_model
from onnxprune.pipeline.result import run_shapes_dict
from onnxprune.pipeline.run_shapes import resolve_run_shapes
from onnxprune.planning import CostModel
from onnxprune.reporting import group_rows

logger = logging.getLogger(__name__)


def analyze_file(model: str | os.PathLike[str], ignore: tuple[str, ...] = (),
                 prune_hidden: bool = False, input_shape=None) -> dict:
    """Rules 1-2."""
    if input_shapes.current() is None:
        try:
            resolved = resolve_run_shapes(model, input_shape)
        except UnsupportedModelError as exc:  # analyze still works: untried defaults
            logger.warning("%s", exc)
            resolved = resolve_run_shapes(model, input_shape, check=False)
        if resolved is None:  # unreadable: load_model below says why
            return _analyze_file(model, ignore, prune_hidden)
        with input_shapes.using(resolved):
            return _analyze_file(model, ignore, prune_hidden)
    return _analyze_file(model, ignore, prune_hidden)


def _analyze_file(model: str | os.PathLike[str], ignore: tuple[str, ...],
                  prune_hidden: bool) -> dict:
    loaded = load_model(model)
    analysis = analyze(loaded.model, prune_hidden=prune_hidden)
    analysis.ignore(ignore)
    cost = CostModel(analysis)
    from onnxprune.importance import score_units
    from onnxprune.planning.capacity import capacity

    limits = capacity(analysis, scores=score_units(analysis, "l1"), cost=cost)
    return {
        "model": str(model),
        "opset": loaded.opset,
        "params": cost.original.params,
        "macs": cost.original.macs,
        "groups": group_rows(analysis, cost),
        "capacity": limits.to_dict(),
        "notes": loaded.notes,
        "version": __version__,
        "canonicalization": loaded.facts.get("canonical"),  # onnxprune.graph.canonicalize
        "input_shapes": run_shapes_dict(),
    }


def analysis_of(model: str | os.PathLike[str]) -> Analysis:
    """Load and analyze a model file (for callers that want the raw analysis)."""
    return analyze(load_model(model).model)
