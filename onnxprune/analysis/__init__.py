"""Dependency analysis: which channels must be removed together, and which cannot be."""

from __future__ import annotations

from onnxprune.analysis.analyze import analyze
from onnxprune.analysis.groups import Analysis, Group

__all__ = ["Analysis", "Group", "analyze"]
