"""Importance criteria that run the model on data.

Same contract as :data:`onnxprune.importance.criteria.CRITERIA`: a function of
``(analysis, seed)`` returning one non-negative score per unit (higher = keep) that
never changes the model. :func:`data_criterion` binds the data to such a function.

1. ``activation``: sum over the probes a unit reaches of its mean ``|a|`` (probes:
   the tensors its consumers read, see :mod:`onnxprune.calibration.probes`).
2. ``apoz``: ``1 - APoZ``, the fraction of non-zero activations (Hu et al. 2016),
   averaged over the unit's probes.
3. ``taylor``: ``mean over samples of (sum over the unit's positions of a * dL/da)^2``,
   the Fisher/second-order Taylor estimate of the loss increase when the unit is
   zeroed (Theis et al. 2018; Molchanov et al. 2019), with gradients from ONNX
   Runtime training (see :mod:`onnxprune.calibration.gradients` for the loss).
4. ``variation``: sum over the probes a unit reaches of the *spread* (standard deviation
   over samples and positions) of its activation: what removing it costs once its mean
   is folded into the consumers' biases (``bias`` recovery). A BN-folded filter with
   small weights and a large bias emits a large but nearly constant activation: ``l1``
   and ``activation`` call it important or unimportant by its weights or its size,
   ``variation`` scores it by what it carries. The data-free default (on synthetic
   inputs, see :mod:`onnxprune.pipeline.calibrated`).
"""

from __future__ import annotations

__all__ = ["DATA_CRITERIA", "data_criterion", "taylor_scores"]

import logging
from collections.abc import Callable

import numpy as np

from onnxprune.analysis.groups import Analysis
from onnxprune.calibration.activations import collect_activation_stats
from onnxprune.calibration.isolation import guarded
from onnxprune.calibration.probes import find_probes
from onnxprune.data import DataSource
from onnxprune.errors import UsageError
from onnxprune.graph import runtime

logger = logging.getLogger(__name__)

DATA_CRITERIA = ("activation", "apoz", "taylor", "variation")


def activation_scores(analysis: Analysis, data: DataSource, batch_size: int) -> np.ndarray:
    return collect_activation_stats(analysis, data, batch_size).mean_abs


def apoz_scores(analysis: Analysis, data: DataSource, batch_size: int) -> np.ndarray:
    stats = collect_activation_stats(analysis, data, batch_size)
    return np.where(stats.measured, 1.0 - stats.apoz, 0.0)


def taylor_scores(analysis: Analysis, data: DataSource, batch_size: int,
                  seed: int = 0, use_labels: bool = False) -> np.ndarray:
    probes = find_probes(analysis)
    proto = runtime.to_runtime_proto(analysis.model)
    batch = data.fixed_batch or batch_size
    scores, samples = guarded(taylor_sums, proto, probes, analysis.element_unit,
                              analysis.num_units, batch, data, seed, use_labels,
                              what="gate gradients (taylor calibration)")
    return scores / max(samples, 1)


def taylor_sums(proto, probes, units: np.ndarray, num_units: int, batch: int,
                data: DataSource, seed: int, use_labels: bool) -> tuple[np.ndarray, int]:
    """Sum over samples of the squared per-unit ``a * dL/da`` and the sample count (run
    isolated: ONNX Runtime training can crash the process)."""
    from onnxprune.calibration.gradients import GateGradients

    gates = GateGradients(proto, probes, batch, data, seed=seed, use_labels=use_labels)
    scores = np.zeros(num_units)
    samples = 0
    try:
        for real, grads in gates.stream(data):
            per_unit = np.zeros((real, num_units))
            for probe, grad in zip(gates.probes, grads):
                valid = probe.ids >= 0
                np.add.at(per_unit, (slice(None), units[probe.ids[valid]]), grad[:, valid])
            scores += np.square(per_unit).sum(axis=0)
            samples += real
    finally:
        gates.close()
    return scores, samples


def variation_scores(analysis: Analysis, data: DataSource, batch_size: int) -> np.ndarray:
    return collect_activation_stats(analysis, data, batch_size).spread


_FUNCTIONS = {"activation": activation_scores, "apoz": apoz_scores,
              "variation": variation_scores}


def data_criterion(name: str, data: DataSource, batch_size: int = 32,
                   ) -> Callable[[Analysis, int], np.ndarray]:
    """A criterion with the signature of ``CRITERIA`` entries, bound to ``data``."""
    if name not in DATA_CRITERIA:
        raise UsageError(f"unknown data criterion '{name}'; choose one of "
                         f"{', '.join(DATA_CRITERIA)}")

    def score(analysis: Analysis, seed: int) -> np.ndarray:
        if name == "taylor":
            return taylor_scores(analysis, data, batch_size, seed)
        return _FUNCTIONS[name](analysis, data, batch_size)

    score.__name__ = name
    return score
