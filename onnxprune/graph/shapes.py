"""Shapes of every value: ONNX shape inference with data propagation, then a runtime probe.

Rules:

1. ``infer_shapes`` runs onnx shape inference (data propagation on, non-strict) and
   stores the results on the values. A model the inference cannot handle keeps the
   shapes it already had.
2. Values still lacking a rank afterwards are filled by running the model once in
   ONNX Runtime on dummy inputs (symbolic dimensions set to 1), so exotic exports
   still get channel axes. Only the rank and the static dimensions are taken.
3. ``dims(value)`` returns a tuple with ints for static and ``None`` for symbolic
   dimensions, or ``None`` when even the rank is unknown.
4. ``probe_static_dims`` tells which unknown dimensions are in fact static: the model
   runs twice in ONNX Runtime with every symbolic input dimension set to 2, then 3;
   a dimension equal in both runs is static (exporters compute head counts and the
   like from ``Shape`` chains that inference does not follow), one that differs stays
   ``None``.
"""

from __future__ import annotations

__all__ = ["dims", "infer_shapes", "probe_static_dims", "static_numel"]

import logging
import math

import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

logger = logging.getLogger(__name__)


def dims(value: ir.Value | None) -> tuple[int | None, ...] | None:
    """Static view of a value's shape (see rule 3)."""
    if value is None:
        return None
    if value.const_value is not None:
        return tuple(int(d) for d in value.const_value.shape)
    if value.shape is None:
        return None
    return tuple(d if isinstance(d, int) else None for d in value.shape)


def static_numel(shape: tuple[int | None, ...] | None, unknown: int = 1) -> int:
    """Number of elements with symbolic dimensions counted as ``unknown``."""
    if shape is None:
        return 0
    return math.prod(d if d is not None else unknown for d in shape)


def infer_shapes(model: ir.Model) -> None:
    """Annotate every value of the main graph with its shape (rules 1 and 2)."""
    try:
        ShapeInferencePass(check_type=False, strict_mode=False, data_prop=True)(model)
    except Exception as exc:  # onnx raises InferenceError and friends
        logger.warning("onnx shape inference failed (%s); using the runtime probe", exc)
    missing = [v for v in _intermediate_values(model) if v.shape is None]
    if missing:
        _probe_shapes(model, missing)


def _intermediate_values(model: ir.Model) -> list[ir.Value]:
    return [out for node in model.graph for out in node.outputs if out.name]


def _probe_shapes(model: ir.Model, values: list[ir.Value]) -> None:
    """Fill in shapes of ``values`` from one ONNX Runtime run on dummy inputs."""
    from onnxprune.graph import runtime

    try:
        shapes = runtime.probe_shapes(model, [v.name for v in values])
    except Exception as exc:  # a model ORT cannot run keeps unknown shapes
        logger.warning("runtime shape probe failed: %s", exc)
        return
    for value in values:
        shape = shapes.get(value.name)
        if shape is not None:
            value.shape = ir.Shape(list(shape))


PROBE_DIMS = (2, 3)


def probe_static_dims(model: ir.Model, values: list[ir.Value],
                      ) -> dict[str, tuple[int | None, ...]]:
    """Static view of ``values`` refined by two runtime probes (rule 4).

    Returns value name -> dims; values the runtime could not produce are left out,
    and an empty mapping means the model could not be probed.
    """
    from onnxprune.graph import runtime

    names = [v.name for v in values if v.name]
    try:
        runs = runtime.probe_shape_runs(model, names, PROBE_DIMS)
    except Exception as exc:  # a model ORT cannot run at these sizes: no refinement
        logger.info("runtime shape probe for static dims failed: %s", exc)
        return {}
    refined = {}
    for value in values:
        first, second = runs[0].get(value.name), runs[1].get(value.name)
        if first is None or second is None or len(first) != len(second):
            continue
        refined[value.name] = tuple(a if a == b else None for a, b in zip(first, second))
    return refined
