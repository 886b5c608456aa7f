"""Running a model on calibration data: probes, activation statistics, gate gradients,
masked evaluation. Read-only with respect to the caller's model."""

from __future__ import annotations

from onnxprune.calibration.activations import ActivationStats, collect_activation_stats
from onnxprune.calibration.probes import Probe, find_probes
from onnxprune.calibration.tap import Tap

__all__ = ["ActivationStats", "Probe", "Tap", "collect_activation_stats", "find_probes"]
