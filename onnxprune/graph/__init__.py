"""Graph I/O layer: loading, normalising, shapes, saving and running models."""

from __future__ import annotations

from onnxprune.graph.io import LoadedModel, load_model, save_model

__all__ = ["LoadedModel", "load_model", "save_model"]
