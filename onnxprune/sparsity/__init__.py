"""Unstructured and N:M sparsity (modes of ``compress``), progressive with masked fine-tuning.

Entry points: :func:`sparsify` (masks, schedule, fine-tuning on an ``onnx.ModelProto``),
:func:`prunable_weights`, the mask functions; the sparse compress flow that uses them is
:mod:`onnxprune.pipeline.sparse`.
"""

from __future__ import annotations

from onnxprune.planning.schedule import cubic_schedule
from onnxprune.sparsity.masks import apply_masks, magnitude_masks, nm_masks
from onnxprune.sparsity.progressive import SparseSettings, SparsifyResult, sparsify
from onnxprune.sparsity.weights import PrunableWeight, prunable_weights

__all__ = ["PrunableWeight", "SparseSettings", "SparsifyResult", "apply_masks",
           "cubic_schedule", "magnitude_masks", "nm_masks", "prunable_weights", "sparsify"]
