"""Where a unit's effect is measured: the tensors its consumers read.

Rules:

1. A *probe* is a named tensor with a layout: the data input of every layer whose
   weight has an ``in`` coupling (Conv, ConvTranspose, Gemm, MatMul). Removing a
   unit zeroes its positions there, so that is where its activations and gradients
   are read (after any BN/activation/pooling between the source and the consumer).
2. Elements that reach no such consumer are probed at their source's output.
3. Probes on the batch axis (axis 0) and graph outputs (always blocked) are skipped.
4. ``element_mean`` turns a per-position statistic of one probe into a
   per-element one, averaging the positions that carry the same element
   (Flatten repeats a channel H*W times).
"""

from __future__ import annotations

__all__ = ["Probe", "element_mean", "find_probes"]

import dataclasses

import numpy as np

from onnxprune.analysis.groups import Analysis


@dataclasses.dataclass(frozen=True)
class Probe:
    name: str
    axis: int
    ids: np.ndarray
    rank: int

    def reduce_axes(self) -> tuple[int, ...]:
        """Axes summed to get one value per (sample, position)."""
        return tuple(a for a in range(1, self.rank) if a != self.axis)


def find_probes(analysis: Analysis) -> list[Probe]:
    """Probes of rules 1-3, one per tensor, in graph order."""
    ctx = analysis.ctx
    probes: dict[str, Probe] = {}
    covered = np.zeros(ctx.num_elements, dtype=bool)
    for coupling in ctx.couplings:
        if coupling.role != "in":
            continue
        value = coupling.node.inputs[0]
        layout = ctx.layout(value)
        if layout is None or not value.name or len(layout) != len(coupling.ids) \
                or value.is_graph_output():
            continue
        if _add(probes, value.name, layout, ctx.rank(value)):
            ids = layout.ids[layout.ids >= 0]
            covered[ids] = True
    for source in ctx.sources:
        span = slice(source.start, source.start + source.size)
        if covered[span].all():
            continue
        value = next((v for v in ctx.layouts if v.name == source.value), None)
        if value is not None and not value.is_graph_output():
            _add(probes, value.name, ctx.layouts[value], ctx.rank(value))
    return list(probes.values())


def _add(probes: dict[str, Probe], name: str, layout, rank: int | None) -> bool:
    if rank is None or layout.axis == 0 or layout.axis >= rank:
        return False
    if name not in probes:
        probes[name] = Probe(name, layout.axis, layout.ids, rank)
    return True


def element_mean(probe: Probe, per_position: np.ndarray, num_elements: int,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(mean per element, mask of elements present) from a per-position vector.

    ``per_position`` may have leading axes (e.g. samples); the last axis is positions.
    """
    valid = probe.ids >= 0
    ids = probe.ids[valid]
    values = np.asarray(per_position)[..., valid]
    counts = np.bincount(ids, minlength=num_elements).astype(np.float64)
    sums = np.zeros((*values.shape[:-1], num_elements))
    np.add.at(sums, (..., ids), values)
    present = counts > 0
    return sums / np.maximum(counts, 1.0), present
