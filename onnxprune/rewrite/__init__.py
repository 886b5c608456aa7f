"""Rewriting: physically remove planned channels, then verify the result."""

from __future__ import annotations

from onnxprune.rewrite.apply import apply_plan
from onnxprune.rewrite.oracle import channel_masks, masked_model

__all__ = ["apply_plan", "channel_masks", "masked_model"]
