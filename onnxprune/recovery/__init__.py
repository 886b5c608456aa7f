"""Training-free recovery after pruning: ``none``, ``bias`` or ``lsq``.

:func:`recover` runs after ``apply_plan`` on the pruned model in place, using the
original model (weights and activations) and calibration data. See ``bias`` and
``lsq`` for the rules; ``consumers`` for which layers are refitted.
"""

from __future__ import annotations

__all__ = ["RECOVERY_METHODS", "RecoveryReport", "recover"]

import dataclasses
import logging

import numpy as np
import onnx

from onnxprune.analysis.groups import Analysis
from onnxprune.data import DataSource
from onnxprune.errors import UsageError
from onnxprune.recovery.bias import bias_corrections
from onnxprune.recovery.consumers import find_consumers
from onnxprune.recovery.edit import current_bias, write_bias
from onnxprune.recovery.lsq import LsqSettings, refit
from onnxprune.rewrite.context import RewriteContext

logger = logging.getLogger(__name__)

RECOVERY_METHODS = ("none", "bias", "lsq")


@dataclasses.dataclass
class RecoveryReport:
    method: str
    layers: list[str]
    skipped: list[str]
    samples: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def recover(analysis: Analysis, removed_units: np.ndarray, original: onnx.ModelProto,
            data: DataSource, method: str, batch_size: int = 32,
            settings: LsqSettings | None = None) -> RecoveryReport:
    """Apply ``method`` to the pruned ``analysis.model`` (after ``apply_plan``)."""
    if method not in RECOVERY_METHODS:
        raise UsageError(f"unknown recovery '{method}'; choose one of "
                         f"{', '.join(RECOVERY_METHODS)}")
    if method == "none":
        return RecoveryReport(method, [], [], 0)
    consumers, skipped = find_consumers(analysis, removed_units)
    if method == "bias":
        ctx = RewriteContext(analysis, removed_units)
        corrections = bias_corrections(analysis, consumers, original, data, batch_size)
        done = []
        for consumer, delta in zip(consumers, corrections):
            bias = current_bias(consumer, len(delta)) + delta
            if write_bias(ctx, consumer, bias):
                done.append(consumer.name)
            else:
                skipped.append(f"{consumer.name}: output is a graph output; no bias added")
    else:
        refit(analysis, removed_units, consumers, original, data, batch_size, settings)
        done = [c.name for c in consumers]
    _drop_unused_initializers(analysis)
    for note in skipped:
        logger.info("recovery: %s", note)
    return RecoveryReport(method, done, skipped, data.num_samples)


def _drop_unused_initializers(analysis: Analysis) -> None:
    """Initializers replaced by recovered ones are no longer read: remove them."""
    graph = analysis.model.graph
    for name, value in list(graph.initializers.items()):
        if not value.uses() and not value.is_graph_output():
            del graph.initializers[name]
