"""Per-element activation statistics at the probes, streamed over data.

For every probe position, over all samples and the other non-batch axes:
``mean |a|`` (activation magnitude), the fraction of exact zeros (APoZ, Hu et al.
2016), ``mean a`` (used by bias recovery) and ``mean a^2`` (with the mean, the spread
``std a``: how much a channel varies; a constant channel costs nothing to remove once
its mean is folded into the consumers' biases). Per element, each statistic is the
average over the positions that carry it (``probes.element_mean``).
"""

from __future__ import annotations

__all__ = ["ActivationStats", "collect_activation_stats", "probe_position_means"]

import dataclasses
import logging

import numpy as np
import onnx

from onnxprune.analysis.groups import Analysis
from onnxprune.calibration.isolation import guarded
from onnxprune.calibration.probes import Probe, element_mean, find_probes
from onnxprune.calibration.tap import Tap
from onnxprune.data import DataSource
from onnxprune.graph import runtime

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ActivationStats:
    """Per-unit aggregates (length ``num_units``) and the probes they came from."""

    mean_abs: np.ndarray     # sum over the unit's (probe, element) pairs of mean |a|
    apoz: np.ndarray         # mean over the unit's (probe, element) pairs of P(a == 0)
    spread: np.ndarray       # sum over the unit's (probe, element) pairs of std a
    measured: np.ndarray     # bool: the unit was seen at some probe
    probes: list[Probe]
    num_samples: int


def probe_position_means(model: onnx.ModelProto, probes: list[Probe], data: DataSource,
                         batch_size: int) -> tuple[dict[str, dict[str, np.ndarray]], int]:
    """Per probe, per position: ``abs`` (mean |a|), ``zero`` (P(a == 0)), ``mean`` (mean a),
    ``square`` (mean a^2)."""
    tap = Tap(model, [p.name for p in probes])
    keys = ("abs", "zero", "mean", "square")
    sums = {p.name: {k: np.zeros(len(p.ids)) for k in keys} for p in probes}
    counts = dict.fromkeys(sums, 0)
    samples = 0
    for _, _, tensors in tap.stream(data, batch_size):
        for probe in probes:
            array = np.moveaxis(np.asarray(tensors[probe.name], dtype=np.float64),
                                probe.axis, -1)
            flat = array.reshape(-1, array.shape[-1])
            acc = sums[probe.name]
            acc["abs"] += np.abs(flat).sum(axis=0)
            acc["zero"] += (flat == 0).sum(axis=0)
            acc["mean"] += flat.sum(axis=0)
            acc["square"] += np.square(flat).sum(axis=0)
            counts[probe.name] += flat.shape[0]
        samples += len(next(iter(tensors.values())))
    means = {name: {k: v / max(counts[name], 1) for k, v in acc.items()}
             for name, acc in sums.items()}
    return means, samples


def collect_activation_stats(analysis: Analysis, data: DataSource,
                             batch_size: int = 32) -> ActivationStats:
    """Run ``analysis.model`` (a serialized copy) over ``data`` and aggregate per unit."""
    probes = find_probes(analysis)
    proto = runtime.to_runtime_proto(analysis.model)
    means, samples = guarded(probe_position_means, proto, probes, data, batch_size,
                             what="activation statistics (calibration)")
    n_el, n_units = analysis.ctx.num_elements, analysis.num_units
    mean_abs = np.zeros(n_units)
    apoz_sum = np.zeros(n_units)
    spread = np.zeros(n_units)
    pairs = np.zeros(n_units)
    for probe in probes:
        abs_el, present = element_mean(probe, means[probe.name]["abs"], n_el)
        zero_el, _ = element_mean(probe, means[probe.name]["zero"], n_el)
        stats = means[probe.name]
        std = np.sqrt(np.maximum(stats["square"] - np.square(stats["mean"]), 0.0))
        std_el, _ = element_mean(probe, std, n_el)
        units = analysis.element_unit[np.flatnonzero(present)]
        np.add.at(mean_abs, units, abs_el[present])
        np.add.at(apoz_sum, units, zero_el[present])
        np.add.at(spread, units, std_el[present])
        np.add.at(pairs, units, 1.0)
    measured = pairs > 0
    if not measured.all():
        logger.info("%d units reach no probe; they score 0", int((~measured).sum()))
    apoz = np.where(measured, apoz_sum / np.maximum(pairs, 1.0), 1.0)
    return ActivationStats(mean_abs, apoz, spread, measured, probes, samples)
