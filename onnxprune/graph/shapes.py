"""Shapes of every value: ONNX shape inference with data propagation, then a runtime probe.

Rules:

1. ``infer_shapes`` runs onnx shape inference (data propagation on, non-strict) and
   stores the results on the values. A model the inference cannot handle keeps the
   shapes it already had.
   Graph input/output dims written as ``dim_value <= 0`` are made dynamic first
   (``input_shapes.normalize_dynamic_dims``).
2. Values still lacking a rank afterwards are filled by running the model once in
   ONNX Runtime on dummy inputs (the run's resolved input shapes at batch 1, see
   :mod:`onnxprune.graph.input_shapes`; without them symbolic dimensions set to 1),
   so exotic exports still get channel axes. Only the rank and the static dimensions
   are taken.
3. ``dims(value)`` returns a tuple with ints for static and ``None`` for symbolic
   dimensions (also ``dim_value <= 0``), or ``None`` when even the rank is unknown.
4. ``probe_static_dims`` tells which unknown dimensions are in fact static: the model
   runs twice in ONNX Runtime with different sizes of every dynamic input dimension
   (the run's resolved shapes at batch 2, then their ``alternate()`` at batch 3;
   without resolved shapes every dynamic dimension set to 2, then 3); a dimension
   equal in both runs is static (exporters compute head counts and the like from
   ``Shape`` chains that inference does not follow), one that differs stays ``None``.
5. ``shapes_at_run(model)``: the concrete shape of every value at the run's resolved
   input shapes at batch 1 (costs are per sample at real sizes): onnx shape inference
   with the inputs fixed (the model's own shapes, subgraphs included, are restored
   afterwards), then one
   runtime probe at those shapes for values inference left open. Empty without
   resolved shapes.
"""

from __future__ import annotations

__all__ = ["dims", "infer_shapes", "probe_static_dims", "shapes_at_run", "static_numel"]

import logging
import math

import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

from onnxprune.graph import input_shapes

logger = logging.getLogger(__name__)


def dims(value: ir.Value | None) -> tuple[int | None, ...] | None:
    """Static view of a value's shape (see rule 3)."""
    if value is None:
        return None
    if value.const_value is not None:
        return tuple(int(d) for d in value.const_value.shape)
    if value.shape is None:
        return None
    return tuple(d if isinstance(d, int) and d > 0 else None for d in value.shape)


def static_numel(shape: tuple[int | None, ...] | None, unknown: int = 1) -> int:
    """Number of elements with symbolic dimensions counted as ``unknown``."""
    if shape is None:
        return 0
    return math.prod(d if d is not None else unknown for d in shape)


def infer_shapes(model: ir.Model) -> None:
    """Annotate every value of the main graph with its shape (rules 1 and 2)."""
    input_shapes.normalize_dynamic_dims(model)
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
    resolved = input_shapes.current()
    probes = PROBE_DIMS if resolved is None else (
        resolved.concrete(PROBE_DIMS[0]), resolved.alternate().concrete(PROBE_DIMS[1]))
    try:
        runs = runtime.probe_shape_runs(model, names, probes)
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


def shapes_at_run(model: ir.Model, probe: bool = True) -> dict[str, tuple[int, ...]]:
    """Value name -> concrete shape at the run's input shapes, batch 1 (rule 5)."""
    resolved = input_shapes.current()
    if resolved is None:
        return {}
    concrete = resolved.concrete(1)
    values = [*model.graph.inputs, *_intermediate_values(model)]
    saved = [(value, value.shape) for graph in model.graphs()  # subgraphs too
             for value in (*graph.inputs, *(o for node in graph for o in node.outputs))]
    try:
        for value in model.graph.inputs:
            if value.name in concrete and value.shape is not None \
                    and len(value.shape) == len(concrete[value.name]):
                value.shape = ir.Shape(list(concrete[value.name]))
        try:
            ShapeInferencePass(check_type=False, strict_mode=False, data_prop=True)(model)
        except Exception as exc:  # inference failing leaves the probe below
            logger.info("shape inference at the run's input shapes failed: %s", exc)
        found = {v.name: shape for v in values
                 if v.name and (shape := dims(v)) is not None and None not in shape}
    finally:
        for value, shape in saved:
            value.shape = shape
    missing = [v for v in values if v.name and v.name not in found]
    if missing and probe:
        from onnxprune.graph import runtime

        try:
            found.update(runtime.probe_shapes(model, [v.name for v in missing]))
        except Exception as exc:  # a model ORT cannot run: costs keep symbolic dims = 1
            logger.info("runtime probe at the run's input shapes failed: %s", exc)
    return found
