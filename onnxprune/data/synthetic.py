"""Synthetic inputs when no data is given.

Rules:

1. Every model input gets ``num_samples`` rows; dynamic non-batch dims take the run's
   resolved input shapes (:func:`onnxprune.graph.input_shapes.current`), else
   ``dynamic_dim``; a static batch dim is honoured by the source (batches of it).
2. Float inputs: standard normal values. Bool inputs: random booleans.
3. Integer inputs that reach ``Gather(table, ids)`` with ``table`` an initializer,
   directly or through Cast/Reshape/Unsqueeze/Squeeze/Flatten/Identity, get ids in
   ``[0, rows of table)`` (the smallest table when several); other integer
   inputs get values in ``[0, 2)``.
"""

from __future__ import annotations

__all__ = ["synthetic_source", "token_limits"]

import numpy as np
import onnx_ir as ir

from onnxprune.data.source import DataSource
from onnxprune.data.specs import model_input_specs
from onnxprune.graph import input_shapes

_TRANSPARENT = {"Cast", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity"}


def token_limits(model: ir.Model) -> dict[str, int]:
    """Input name -> exclusive upper bound of ids it may take (rule 3)."""
    limits: dict[str, int] = {}
    for value in model.graph.inputs:
        frontier, seen = [value], set()
        while frontier:
            current = frontier.pop()
            if current in seen:
                continue
            seen.add(current)
            for node, index in current.uses():
                if node.op_type in _TRANSPARENT and index == 0:
                    frontier.extend(node.outputs[:1])
                elif node.op_type == "Gather" and index == 1:
                    table = node.inputs[0]
                    if table is not None and table.const_value is not None:
                        axis = node.attributes.get_int("axis", 0)
                        rows = int(table.const_value.shape[axis])
                        limits[value.name] = min(limits.get(value.name, rows), rows)
    return limits


def synthetic_source(model: ir.Model, num_samples: int = 64, seed: int = 0,
                     dynamic_dim: int = 8) -> DataSource:
    """A :class:`DataSource` of random inputs respecting dtypes and shapes (rules 1-3)."""
    rng = np.random.default_rng(seed)
    specs = model_input_specs(model)
    limits = token_limits(model)
    arrays = {}
    resolved = input_shapes.current()
    for spec in specs:
        entry = resolved.get(spec.name) if resolved is not None else None
        if entry is not None and len(entry.dims) == len(spec.shape):
            dims = [d if d is not None else r for d, r in zip(spec.shape[1:], entry.dims[1:])]
        else:
            dims = [d if d is not None else dynamic_dim for d in spec.shape[1:]]
        shape = (num_samples, *dims)
        if np.issubdtype(spec.dtype, np.floating):
            arrays[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype == np.bool_:
            arrays[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            high = limits.get(spec.name, 2)
            arrays[spec.name] = rng.integers(0, max(high, 1), shape).astype(spec.dtype)
    return DataSource.from_arrays(arrays, specs, origin="synthetic inputs")
