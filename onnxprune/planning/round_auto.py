"""``--round-to auto`` per group: keep every group at a count on its own layers' step edges.

Rules:

1. A *step table* holds, per modelled layer and channel axis (``"in"``, ``"out"``),
   the layer's latency at a few small channel counts ``PROBE_COUNTS`` (measured at the
   layer's real shapes: :mod:`onnxprune.benchmark.layer_steps`). Depthwise layers have
   one axis, stored under both names.
2. A probed count ``c`` (below the axis's width, with ``c + 1`` probed too) is a
   *step edge* when (a) one more channel costs a jump, more than ``1 + JUMP`` times
   the average cost per channel: ``t(c + 1) - t(c) > (1 + JUMP) * t(c) / c`` (a linear
   latency has no jumps), and (b) no larger probed count ``c'`` dominates it, i.e.
   gives its extra channels for less than ``SLOPE`` of their proportional share:
   ``t(c') <= t(c) * (1 + SLOPE * (c' - c) / c)`` (the kernel pads ``c`` up to a block
   or runs it on a slower path, so ``c`` is not the right end of its plateau).
3. An axis's *block* is the largest of ``CANDIDATES`` that divides every step edge
   (none without edges, e.g. a linear latency, or without a common candidate divisor).
   An axis whose probe never takes ``MIN_MS`` (the profile counts whole microseconds,
   so a few-microsecond layer cannot show its steps) has no block either. An axis
   without a block constrains nothing.
4. A prunable group's block is the largest block of the layer axes its channels sit
   on (the candidates are powers of two, so the largest is a multiple of all). A group
   none of whose axes has a block keeps the default rounding (multiples of
   ``DEFAULT_ROUND_CHANNELS`` channels), so ``auto`` never rounds more loosely than
   the default without a measurement that says so.
5. ``group_round`` turns the blocks into ``PlanOptions.group_round``: (source node,
   channel multiple) for every source of the group. Source node names survive the
   rewrite, so the same tuple holds for the pruned step models of a progressive run.
   The planner converts channels to units (``PlanOptions.unit_multiple``: heads of an
   attention group keep a head count whose channels are a multiple of the block).
   A layer axis shared by several groups (Concat) lands on a multiple of the block
   when every part does.
6. ``auto`` is the default rounding (``round_to`` unset) for the metrics in
   ``AUTO_DEFAULT_METRICS``: ``latency``, whose plans already depend on measurements on
   the provider and where auto was never slower than multiples of 8 channels in
   ``benchmarks/bench_round_auto.py``. ``flops`` keeps multiples of 8 (auto was slower
   on two of 14 plans there: docs/benchmarks.md) and so does ``params`` (a size
   target: its plans must not depend on the machine).
"""

from __future__ import annotations

__all__ = ["AUTO_DEFAULT_METRICS", "CANDIDATES", "JUMP", "MIN_MS", "PROBE_COUNTS", "SLOPE",
           "axis_block", "group_blocks", "group_round", "layer_blocks", "step_edges"]

import logging

from onnxprune.analysis.groups import Analysis
from onnxprune.planning.latency import axis_groups
from onnxprune.planning.latency_model import LayerSpec

logger = logging.getLogger(__name__)

AUTO_DEFAULT_METRICS = ("latency",)
CANDIDATES = (2, 4, 8, 16, 32)
SLOPE = 0.5
JUMP = 1.0
MIN_MS = 0.02
_MULTIPLES = 3  # probed multiples of each candidate
PROBE_COUNTS = tuple(sorted({c for b in CANDIDATES for k in range(1, _MULTIPLES + 1)
                             for c in (k * b, k * b + 1) if k * b <= 64}))


def step_edges(times: dict[int, float], width: int | None = None) -> list[int]:
    """Rule 2's step edges; ``times`` maps a channel count to its latency."""
    counts = sorted(times)
    edges = []
    for i, c in enumerate(counts):
        if (width is not None and c >= width) or c + 1 not in times:
            continue
        jump = times[c + 1] - times[c] > (1 + JUMP) * times[c] / c
        if jump and not any(times[d] <= times[c] * (1 + SLOPE * (d - c) / c)
                            for d in counts[i + 1:]):
            edges.append(c)
    return edges


def axis_block(times: dict[int, float], width: int | None = None) -> int | None:
    """Rule 3: the block of one axis timed at ``times``, whose width is ``width``."""
    if not times or max(times.values()) < MIN_MS:
        return None
    edges = step_edges(times, width)
    found = [b for b in CANDIDATES if edges and all(c % b == 0 for c in edges)]
    return found[-1] if found else None


def layer_blocks(steps: dict[str, dict[str, dict[int, float]]], specs: list[LayerSpec]
                 ) -> dict[str, dict[str, int | None]]:
    """Rule 3 for every layer of a step table: ``{layer: {"in": B, "out": B}}``."""
    widths = {spec.name: {"in": spec.c_in, "out": spec.c_out} for spec in specs}
    blocks = {}
    for name, axes in steps.items():
        blocks[name] = {axis: axis_block({int(c): float(v) for c, v in times.items()},
                                         widths.get(name, {}).get(axis))
                        for axis, times in axes.items()}
    return blocks


def group_blocks(analysis: Analysis, specs: list[LayerSpec],
                 blocks: dict[str, dict[str, int | None]]) -> dict[int, int]:
    """Rule 4: group index -> channel block, for the groups with a measured block."""
    position = {g.index: g.index for g in analysis.prunable_groups}
    nodes = {node.outputs[0].name: node for node in analysis.model.graph if node.outputs}
    found: dict[int, int] = {}
    for spec in specs:
        node = nodes.get(spec.name)
        if node is None or spec.name not in blocks:
            continue
        sides = (("in", node.inputs[0], spec.in_axis, spec.c_in),
                 ("out", node.outputs[0], spec.out_axis, spec.c_out))
        for side, value, axis, full in sides:
            block = blocks[spec.name].get(side)
            if block is None:
                continue
            for g in axis_groups(analysis, value, axis, full, position).per_group:
                found[g] = max(found.get(g, 0), block)
    return found


def group_round(analysis: Analysis, blocks: dict[int, int]) -> tuple[tuple[str, int], ...]:
    """Rule 5: ``PlanOptions.group_round`` for ``blocks`` (group index -> channels)."""
    pairs = {}
    for group in analysis.prunable_groups:
        if group.index in blocks:
            for source in group.sources:
                pairs[source.node] = max(pairs.get(source.node, 0), blocks[group.index])
    return tuple(sorted(pairs.items()))
