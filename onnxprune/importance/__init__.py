"""Importance criteria: one score per unit, higher means more important. Never mutates."""

from __future__ import annotations

from onnxprune.importance.criteria import CRITERIA, score_units

__all__ = ["CRITERIA", "score_units"]
