"""``bias`` recovery: fold the mean contribution of removed input channels into the bias.

Rule: for a consumer ``y = W x + b`` whose input positions ``R`` are removed,
``E[W_R x_R] = W_R m_R`` where ``m`` is the mean of the consumer's *input* over the
calibration data, measured in the original model right where the consumer reads
it (after any BN/activation/pooling in between, so nothing has to be propagated
through those ops). Cases:

1. Gemm / MatMul: ``b += W_R m_R`` (per input feature; Flatten positions each
   have their own mean). Exact in expectation.
2. Conv: ``b[o] += sum_{c in R} m_c * sum_k W[o, c, k]``, with ``m_c`` the channel mean
   over samples and positions. Exact in expectation away from the borders; at
   zero-padded borders the removed taps partly read padding, which this ignores.
3. ``m_R == 0`` (removed channels that are always zero) gives a zero correction:
   the recovered model is the pruned one, bit for bit.
"""

from __future__ import annotations

__all__ = ["bias_corrections"]

import numpy as np
import onnx

from onnxprune.calibration.activations import probe_position_means
from onnxprune.calibration.isolation import guarded
from onnxprune.calibration.probes import Probe
from onnxprune.data import DataSource
from onnxprune.recovery.consumers import Consumer


def _probe(consumer: Consumer, analysis) -> Probe:
    layout = analysis.ctx.layout(consumer.data)
    return Probe(consumer.data.name, layout.axis, layout.ids, analysis.ctx.rank(consumer.data))


def bias_corrections(analysis, consumers: list[Consumer], original: onnx.ModelProto,
                     data: DataSource, batch_size: int) -> list[np.ndarray]:
    """Per consumer, the correction of its *kept* outputs' bias (cases 1-3)."""
    probes = {c.data.name: _probe(c, analysis) for c in consumers}
    means, _ = guarded(probe_position_means, original, list(probes.values()), data,
                       batch_size, what="bias recovery (calibration)")  # native crashes
    corrections = []
    for consumer in consumers:
        m = means[consumer.data.name]["mean"]
        removed = ~consumer.in_keep
        if consumer.kind == "conv":
            w = consumer.weight.reshape(*consumer.weight.shape[:2], -1).sum(axis=2)
            delta = w[:, removed] @ m[removed]
        else:
            delta = m[removed] @ consumer.weight[removed, :]
        corrections.append(delta[consumer.out_keep])
    return corrections
