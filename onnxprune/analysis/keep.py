"""What survives a plan: kept positions and counts per tensor.

``KeepView`` answers, for a set of removed units, how many channels each tensor
keeps on its layout axis and how many elements it has (symbolic dimensions count
as 1, so a batch axis counts one sample). Cost models and rewrite rules both read
it, so the numbers they use always agree. Cost models pass ``run_dims``, the
concrete shapes at the run's input shapes (``graph.shapes.shapes_at_run``): a value
found there uses them instead of its symbolic dims, so costs are per sample at the
real spatial/sequence sizes.
"""

from __future__ import annotations

__all__ = ["KeepView"]

import math

import numpy as np
import onnx_ir as ir

from onnxprune.analysis.groups import Analysis
from onnxprune.graph.shapes import dims


class KeepView:
    def __init__(self, analysis: Analysis, removed_units: np.ndarray,
                 run_dims: dict[str, tuple[int, ...]] | None = None) -> None:
        self.analysis = analysis
        self.run_dims = run_dims or {}
        self.removed_units = removed_units
        self._removed = analysis.removed_elements(removed_units)
        self.opset = analysis.ctx.opset

    def layout(self, value: ir.Value | None):
        return self.analysis.ctx.layout(value)

    def const(self, value: ir.Value | None) -> np.ndarray | None:
        if value is None or value.const_value is None:
            return None
        return value.const_value.numpy()

    def keep_ids(self, ids: np.ndarray) -> np.ndarray:
        """Boolean mask over positions of an id array (ids ``-1`` are always kept)."""
        return ~self._removed[ids]

    def keep_mask(self, value: ir.Value | None) -> np.ndarray | None:
        layout = self.layout(value)
        return None if layout is None else self.keep_ids(layout.ids)

    def changed(self, value: ir.Value | None) -> bool:
        mask = self.keep_mask(value)
        return mask is not None and not bool(mask.all())

    def shape(self, value: ir.Value | None) -> tuple[int | None, ...] | None:
        if value is not None and value.name in self.run_dims:
            return self.run_dims[value.name]
        return dims(value)

    def rank(self, value: ir.Value | None) -> int | None:
        shape = self.shape(value)
        return None if shape is None else len(shape)

    def kept_count(self, value: ir.Value | None, axis: int | None = None,
                   fallback: int | None = None) -> int:
        """Kept size of ``axis`` (default: the layout axis) of ``value``."""
        layout = self.layout(value)
        if layout is not None and (axis is None or axis == layout.axis):
            return int(self.keep_ids(layout.ids).sum())
        shape = self.shape(value)
        if axis is not None and shape is not None and axis < len(shape) and shape[axis]:
            return int(shape[axis])
        return int(fallback) if fallback is not None else 1

    def numel_kept(self, value: ir.Value | None) -> int:
        shape = self.shape(value)
        if shape is None:
            return 0
        sizes = [d if d is not None else 1 for d in shape]
        layout = self.layout(value)
        if layout is not None and layout.axis < len(sizes):
            sizes[layout.axis] = self.kept_count(value)
        return math.prod(sizes)
