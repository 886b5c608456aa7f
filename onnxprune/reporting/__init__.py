"""Reporting: plain-data summaries of analyses and compressions (JSON-ready)."""

from __future__ import annotations

from onnxprune.reporting.summary import group_rows, layer_rows

__all__ = ["group_rows", "layer_rows"]
