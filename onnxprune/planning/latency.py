"""Plan against predicted latency: ``--metric latency``.

Rules:

1. :class:`LatencyCost` predicts the model's latency for any per-group removal counts
   from a :class:`~onnxprune.planning.latency_model.LatencyTable`: every modelled
   layer reads its kept input and output channels (the positions of its channel
   axes whose units survive), takes its interpolated time, and the sum goes through
   the table's fixed part and scale; every node of the table attributed to a carrier
   (:mod:`~onnxprune.planning.latency_nodes`) takes its time times the carrier's kept
   fraction, the other nodes their full time.
2. ``make_latency_plan`` removes channels greedily: the feasible counts of every group
   are those of the params/flops planner (``group_options``: ``round_to``,
   ``min_keep``, blocked units, coupled and grouped-conv groups; ignored groups are
   not prunable). Each round takes the next feasible step of the group that loses the
   least normalised importance per predicted millisecond saved, until the predicted
   latency has fallen by ``target``. A step that saves no time is taken only when no
   step saves any.
3. Then the overshoot is trimmed: single steps are undone, the one returning the most
   importance first, while the target stays reached; then pairs (one step undone in
   one group, one more taken in another) that keep more importance and still reach
   the target are swapped in, at most ``SWAP_BUDGET`` trials.
4. When the model has at most ``EXACT_SEARCH_LIMIT`` combinations of feasible counts,
   all are tried instead and the one keeping the most importance that reaches the
   target wins.
5. A target the floors make unreachable raises :class:`UnreachableTargetError` with
   the largest predicted reduction.
"""

from __future__ import annotations

__all__ = ["LatencyCost", "LatencyPlan", "axis_groups", "check_latency_options",
           "make_latency_plan"]

import dataclasses
import itertools
import logging
import math

import numpy as np

from onnxprune.analysis.groups import Analysis
from onnxprune.errors import UnreachableTargetError, UsageError
from onnxprune.planning.latency_model import LatencyTable, LayerSpec
from onnxprune.planning.latency_nodes import node_specs
from onnxprune.planning.planner import GroupOptions, Plan, PlanOptions, group_options

logger = logging.getLogger(__name__)

_EPS = 1e-12
EXACT_SEARCH_LIMIT = 4096
SWAP_BUDGET = 4000


@dataclasses.dataclass
class LatencyPlan(Plan):
    original_ms: float = 0.0
    predicted_ms: float = 0.0


@dataclasses.dataclass
class _Axis:
    full: int
    per_group: dict[int, np.ndarray]  # group position -> positions per local unit


class LatencyCost:
    """Predicted latency for per-group removal counts (rule 1)."""

    def __init__(self, analysis: Analysis, table: LatencyTable, specs: list[LayerSpec],
                 options: list[GroupOptions]) -> None:
        self.table = table
        self.options = options
        position = {opts.group.index: i for i, opts in enumerate(options)}
        nodes = {node.outputs[0].name: node for node in analysis.model.graph if node.outputs}
        self.layers: list[tuple[str, _Axis, _Axis | None]] = []  # node: (name, axis, None)
        self.touching: dict[int, list[int]] = {i: [] for i in range(len(options))}
        for spec in specs:
            node = nodes.get(spec.name)
            if node is None or spec.name not in table.layers:
                continue
            axes = (axis_groups(analysis, node.inputs[0], spec.in_axis, spec.c_in, position),
                    axis_groups(analysis, node.outputs[0], spec.out_axis, spec.c_out, position))
            index = len(self.layers)
            self.layers.append((spec.name, *axes))
            for g in set(axes[0].per_group) | set(axes[1].per_group):
                self.touching[g].append(index)
        self._nodes(analysis, position)
        self.counts = [0] * len(options)
        self.layer_ms = np.array([self._layer(i, self.counts) for i in range(len(self.layers))])

    def _nodes(self, analysis: Analysis, position: dict[int, int]) -> None:
        """Rule 1's nodes: attributed ones become items like layers (one axis, no
        table grid), the others join the constant part."""
        self.constant = self.table.fixed_ms
        carriers = node_specs(analysis) if self.table.nodes else {}
        for name, entry in self.table.nodes.items():
            spec = carriers.get(name)
            if spec is None or not entry.get("width"):
                self.constant += float(entry["ms"])
                continue
            axis = axis_groups(analysis, spec.value, spec.axis, spec.width, position)
            index = len(self.layers)
            self.layers.append((name, axis, None))
            for g in axis.per_group:
                self.touching[g].append(index)

    def _kept(self, axis: _Axis, counts: list[int]) -> int:
        removed = 0
        for g, per_unit in axis.per_group.items():
            removed += int(per_unit[self.options[g].removed(counts[g])].sum())
        return axis.full - removed

    def _layer(self, index: int, counts: list[int]) -> float:
        """An item's predicted milliseconds: a layer's scaled time or a node's."""
        name, a_in, a_out = self.layers[index]
        if a_out is None:
            return self.table.node_ms(name, self._kept(a_in, counts))
        return self.table.scale * self.table.layer_ms(name, self._kept(a_in, counts),
                                                      self._kept(a_out, counts))

    def predicted(self) -> float:
        return self.constant + float(self.layer_ms.sum())

    def trial(self, group: int, count: int) -> tuple[float, dict[int, float]]:
        """Predicted latency with ``group`` at ``count`` removed; the changed layers."""
        counts = list(self.counts)
        counts[group] = count
        changed = {i: self._layer(i, counts) for i in self.touching[group]}
        total = float(self.layer_ms.sum()) + sum(v - self.layer_ms[i] for i, v in changed.items())
        return self.constant + total, changed

    def set(self, group: int, count: int) -> None:
        _, changed = self.trial(group, count)
        self.counts[group] = count
        for i, value in changed.items():
            self.layer_ms[i] = value


def axis_groups(analysis: Analysis, value, axis: int, full: int, position: dict[int, int]
                ) -> _Axis:
    """The groups whose units sit on ``value``'s ``axis``: group position (``position``
    maps a group index to it) -> channels per local unit."""
    layout = analysis.ctx.layout(value)
    per_group: dict[int, np.ndarray] = {}
    if layout is None or layout.axis != axis:
        return _Axis(full, per_group)
    ids = layout.ids[layout.ids >= 0]
    units = analysis.element_unit[ids]
    for unit in units:
        g = position.get(int(analysis.unit_group[unit]))
        if g is None:
            continue
        if g not in per_group:
            per_group[g] = np.zeros(analysis.groups[int(analysis.unit_group[unit])].size,
                                    dtype=np.int64)
        per_group[g][int(analysis.unit_local[unit])] += 1
    return _Axis(full, per_group)


def _normalised(scores: np.ndarray, opts: GroupOptions) -> np.ndarray:
    local = scores[opts.group.units].astype(np.float64)
    prunable = local[~opts.group.blocked]
    mean = float(prunable.mean()) if prunable.size else 0.0
    return local / mean if mean > 0 else local


def _step_loss(opts: GroupOptions, norm: np.ndarray, old: int, new: int) -> float:
    before = set(opts.removed(old).tolist())
    return float(sum(norm[u] for u in opts.removed(new).tolist() if u not in before))


class _Greedy:
    def __init__(self, cost: LatencyCost, norms: list[np.ndarray]) -> None:
        self.cost = cost
        self.norms = norms
        self.position = [0] * len(cost.options)

    def candidate(self, g: int) -> tuple[float, float, float] | None:
        """(saved ms, lost importance, predicted ms) of group ``g``'s next step."""
        opts = self.cost.options[g]
        if self.position[g] + 1 >= len(opts.counts):
            return None
        old, new = opts.counts[self.position[g]], opts.counts[self.position[g] + 1]
        predicted, _ = self.cost.trial(g, new)
        return self.cost.predicted() - predicted, _step_loss(opts, self.norms[g], old, new), \
            predicted

    def run(self, goal: float) -> None:
        options = self.cost.options
        cands = {g: self.candidate(g) for g in range(len(options))}
        while self.cost.predicted() > goal + _EPS:
            live = {g: c for g, c in cands.items() if c is not None}
            if not live:
                return
            saving = {g: c for g, c in live.items() if c[0] > _EPS}
            pool = saving or live
            g = min(pool, key=lambda k: (pool[k][1] / max(pool[k][0], _EPS), k))
            self.position[g] += 1
            self.cost.set(g, options[g].counts[self.position[g]])
            neighbours = {g} | {h for i in self.cost.touching[g] for h in self._groups_of(i)}
            for h in neighbours:
                cands[h] = self.candidate(h)

    def swap(self, goal: float, budget: int = SWAP_BUDGET) -> None:
        """Rule 3's pair moves: best importance gain first, while the goal holds."""
        options, spent = self.cost.options, 0
        while spent < budget:
            best = None
            for a in (g for g in range(len(options)) if self.position[g] > 0):
                back = options[a].counts[self.position[a] - 1]
                regained = _step_loss(options[a], self.norms[a], back,
                                      options[a].counts[self.position[a]])
                here = options[a].counts[self.position[a]]
                self.cost.set(a, back)
                for b in range(len(options)):
                    if b == a or self.position[b] + 1 >= len(options[b].counts) or \
                            spent >= budget:
                        continue
                    spent += 1
                    old, new = (options[b].counts[self.position[b] + k] for k in (0, 1))
                    lost = _step_loss(options[b], self.norms[b], old, new)
                    better = regained - lost > 1e-9 and (best is None or
                                                         regained - lost > best[0])
                    if better and self.cost.trial(b, new)[0] <= goal + _EPS:
                        best = (regained - lost, a, b)
                self.cost.set(a, here)
            if best is None:
                return
            _, a, b = best
            self.position[a] -= 1
            self.cost.set(a, options[a].counts[self.position[a]])
            self.position[b] += 1
            self.cost.set(b, options[b].counts[self.position[b]])

    def exact(self, goal: float) -> bool:
        """Rule 4: every combination; False (nothing changed) when none reaches ``goal``."""
        options = self.cost.options
        best = None
        for combo in itertools.product(*(range(len(o.counts)) for o in options)):
            for g, position in enumerate(combo):
                self.cost.set(g, options[g].counts[position])
            if self.cost.predicted() > goal + _EPS:
                continue
            lost = sum(_step_loss(o, n, 0, o.counts[p])
                       for o, n, p in zip(options, self.norms, combo))
            if best is None or lost < best[0] - 1e-12:
                best = (lost, combo)
        if best is None:
            return False
        self.position = list(best[1])
        for g, position in enumerate(self.position):
            self.cost.set(g, options[g].counts[position])
        return True

    def _groups_of(self, layer: int) -> set[int]:
        _, a_in, a_out = self.cost.layers[layer]
        return set(a_in.per_group) | set(a_out.per_group if a_out is not None else ())

    def trim(self, goal: float) -> None:
        """Undo single steps while the goal stays reached, most importance first (rule 3)."""
        options = self.cost.options
        while True:
            best = None
            for g, opts in enumerate(options):
                if self.position[g] == 0:
                    continue
                old = opts.counts[self.position[g]]
                new = opts.counts[self.position[g] - 1]
                predicted, _ = self.cost.trial(g, new)
                if predicted <= goal + _EPS:
                    regained = _step_loss(opts, self.norms[g], new, old)
                    if best is None or regained > best[0]:
                        best = (regained, g, new)
            if best is None:
                return
            _, g, new = best
            self.position[g] -= 1
            self.cost.set(g, new)


def check_latency_options(options: PlanOptions) -> None:
    """What a latency plan refuses (before anything is measured): invalid options and a
    uniform scope (the plan is global)."""
    dataclasses.replace(options, metric="flops").validate()
    if options.scope != "global":
        raise UsageError("--metric latency plans globally; drop --scope uniform")


def make_latency_plan(analysis: Analysis, scores: np.ndarray, options: PlanOptions,
                      table: LatencyTable, specs: list[LayerSpec]) -> LatencyPlan:
    """Pick removed units so the predicted latency falls by ``options.target`` (rules 2-4)."""
    check_latency_options(options)
    opts = group_options(analysis, scores, options)
    cost = LatencyCost(analysis, table, specs, opts)
    original = cost.predicted()
    if original <= 0:
        raise UsageError("the latency table predicts 0 ms for the model; remeasure it")
    goal = (1.0 - options.target) * original
    greedy = _Greedy(cost, [_normalised(scores, o) for o in opts])
    maximum = _maximum(cost, opts, original)
    if maximum + 1e-9 < options.target:
        raise UnreachableTargetError(
            f"target {options.target:.3f} of predicted latency is unreachable: at most "
            f"{maximum:.3f} can be removed with min_keep={options.min_keep}, "
            f"{options.describe_round_to()} (the rest is time pruning does not change: "
            f"{cost.constant:.3f} ms of {table.whole_ms:.3f} ms; lower the target)", maximum)
    if math.prod(len(o.counts) for o in opts) <= EXACT_SEARCH_LIMIT:
        greedy.exact(goal)
    else:
        greedy.run(goal)
        greedy.trim(goal)
        greedy.swap(goal)
    predicted = cost.predicted()
    removed = np.zeros(analysis.num_units, dtype=bool)
    kept = {}
    for g, o in enumerate(opts):
        count = o.counts[greedy.position[g]]
        removed[o.group.units[o.removed(count)]] = True
        kept[o.group.index] = o.group.size - count
    logger.info("latency plan: %.3f ms -> %.3f ms predicted", original, predicted)
    return LatencyPlan(removed, 1.0 - predicted / original, "latency", kept, maximum,
                       original_ms=original, predicted_ms=predicted)


def _maximum(cost: LatencyCost, opts: list[GroupOptions], original: float) -> float:
    """Largest predicted reduction: every group at its last feasible count."""
    saved = list(cost.counts)
    for g, o in enumerate(opts):
        cost.set(g, o.counts[-1])
    maximum = 1.0 - cost.predicted() / original
    for g, count in enumerate(saved):
        cost.set(g, count)
    return maximum
