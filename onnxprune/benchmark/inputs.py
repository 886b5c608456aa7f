"""Benchmark inputs: ``name:1x3x224x224`` shape specs and the feeds built from them.

Rules:

1. ``parse_shape_specs`` reads ``NAME:D0xD1x...`` (positive integers). The name may
   itself contain ``:``; the shape is what follows the last one
   (``graph.input_shapes.parse_input_shapes``, shared with compress/analyze).
2. ``resolve_shapes`` gives every session input a concrete shape:

   1. an input named in the specs takes that shape (rank must match the model); when
      ``batch`` is set and the model's first dimension is symbolic, ``batch``
      replaces the first dimension;
   2. any other input takes the model's shape with a symbolic first dimension set to
      ``batch`` (1 when unset);
   3. a symbolic dimension anywhere else is a :class:`UsageError` asking for a spec.
      ``benchmark`` first fills the specs of such inputs with the run's resolved
      shapes (:mod:`onnxprune.pipeline.run_shapes`: a size the model states or accepts, never
      a guess that fails), and reports them under ``settings.input_shapes``.
3. A spec naming no model input is a :class:`UsageError` listing the input names.
"""

from __future__ import annotations

__all__ = ["batch_of", "parse_shape_specs", "resolve_shapes"]

from collections.abc import Iterable
from typing import Any

from onnxprune.errors import UsageError


def parse_shape_specs(specs: Iterable[str] | None) -> dict[str, tuple[int, ...]]:
    """``["x:1x3x224x224"]`` -> ``{"x": (1, 3, 224, 224)}`` (rule 1)."""
    from onnxprune.graph.input_shapes import parse_input_shapes

    return parse_input_shapes(list(specs or ()))


def _is_fixed(dim: Any) -> bool:
    return isinstance(dim, int) and dim > 0


def resolve_shapes(inputs: list[Any], specs: dict[str, tuple[int, ...]],
                   batch: int | None = None) -> dict[str, tuple[int, ...]]:
    """Concrete shape per session input (``NodeArg`` with ``name`` and ``shape``; rule 2)."""
    names = [arg.name for arg in inputs]
    unknown = sorted(set(specs) - set(names))
    if unknown:
        raise UsageError(f"--input-shape names {', '.join(unknown)}, which the model does not "
                         f"have as inputs (inputs: {', '.join(names)})")
    shapes = {}
    for arg in inputs:
        model_shape = list(arg.shape or [])
        dynamic_first = bool(model_shape) and not _is_fixed(model_shape[0])
        if arg.name in specs:
            shape = list(specs[arg.name])
            if len(shape) != len(model_shape):
                raise UsageError(f"--input-shape {arg.name}: rank {len(shape)} but the model "
                                 f"input has rank {len(model_shape)} ({model_shape})")
            if batch is not None and dynamic_first:
                shape[0] = batch
        else:
            shape = []
            for axis, dim in enumerate(model_shape):
                if _is_fixed(dim):
                    shape.append(int(dim))
                elif axis == 0:
                    shape.append(batch or 1)
                else:
                    raise UsageError(
                        f"input {arg.name!r} has a symbolic dimension {dim!r} at axis {axis}; "
                        f"give its shape, e.g. --input-shape {arg.name}:"
                        + "x".join(str(d) if _is_fixed(d) else "N" for d in model_shape))
        shapes[arg.name] = tuple(shape)
    return shapes


def batch_of(shapes: dict[str, tuple[int, ...]]) -> int:
    """Items per call: the first dimension of the first input (1 for scalars)."""
    first = next(iter(shapes.values()), ())
    return int(first[0]) if first else 1
