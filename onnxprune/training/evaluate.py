"""Fidelity of a model to a reference model (the original) on data.

The metrics live in :mod:`onnxprune.calibration.fidelity` (one module for every
comparison with the original: per output head, on the logits of Softmax/Sigmoid heads,
standardised per output channel, per part); this module keeps the name the training
flows import.
"""

from __future__ import annotations

__all__ = ["fidelity"]

from onnxprune.calibration.fidelity import fidelity
