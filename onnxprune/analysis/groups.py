"""From propagated layouts to prunable groups.

Rules:

1. *Units*: elements merged by unions (connected components) are one unit: removing
   a unit removes every element in it, in every tensor that carries one.
2. *Groups*: units produced by the same source, or merged with units of another
   source, form one group (the unit of scoring, planning and reporting).
3. A unit is blocked when any of its elements is; its group records the reason.
   A group all of whose units are blocked is not prunable.
4. Non-empty sets (Split/Slice parts) are handed to the group of their first unit.
5. Equal-blocks constraints are translated to unit indices local to their group;
   a constraint spanning several groups, or one in which a unit falls in two
   blocks, blocks its units instead.
6. A group's *description* says what its units are, from the unit notes of the
   rules and its sources: "<scope> attention: 4 heads of 64" (a head split whose
   heads meet in an activation MatMul), "<scope> LSTM: 128 hidden units",
   "hidden width (residual stream): 768 channels" (embedding sources, or channels
   normalised over the hidden axis with ``prune_hidden``), "<scope> embedding: 64
   features" (an embedding that feeds no residual stream),
   "<scope>: 58 channels in each of 2 shuffled groups" (a channel shuffle: a unit is
   one channel of every group), "<scope> MLP: 3072 neurons" (prunable linear sources:
   hidden neurons between two linear layers), "<scope> linear: N features" (blocked ones), else
   "<scope>: N channels".
   ``unit_size`` is the number of channels in one unit of one source tensor
   (the head width for heads, the group count of a shuffle, else 1); ``round_to`` and
   ``min_keep`` count units.
"""

from __future__ import annotations

__all__ = ["Analysis", "Group", "build_groups"]

import dataclasses
import fnmatch

import numpy as np
import onnx_ir as ir
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from onnxprune.analysis.context import AnalysisContext, Source


@dataclasses.dataclass
class Group:
    index: int
    units: np.ndarray
    sources: list[Source]
    members: list[str]
    blocked: np.ndarray
    reasons: list[str]
    constraints: list[list[np.ndarray]]
    nonempty: list[np.ndarray] = dataclasses.field(default_factory=list)
    description: str = ""
    unit_size: int = 1

    @property
    def size(self) -> int:
        return len(self.units)

    @property
    def prunable(self) -> bool:
        return not bool(self.blocked.all())

    @property
    def name(self) -> str:
        first = self.sources[0]
        more = f" (+{len(self.sources) - 1} coupled)" if len(self.sources) > 1 else ""
        return f"{first.node}{more}"


@dataclasses.dataclass
class Analysis:
    model: ir.Model
    ctx: AnalysisContext
    element_unit: np.ndarray
    unit_group: np.ndarray
    unit_local: np.ndarray
    groups: list[Group]
    # the same model analyzed with prune_hidden (transformer-like models only): what
    # --prune-hidden would make prunable (hints, unreachable-target alternatives)
    hidden: Analysis | None = None

    @property
    def num_units(self) -> int:
        return len(self.unit_group)

    @property
    def prunable_groups(self) -> list[Group]:
        return [g for g in self.groups if g.prunable]

    def group_of(self, unit: int) -> Group:
        return self.groups[int(self.unit_group[unit])]

    def removed_elements(self, removed_units: np.ndarray) -> np.ndarray:
        """Per-element removal mask with one extra ``False`` slot that ids ``-1`` index."""
        return np.append(removed_units[self.element_unit], False)

    def ignore(self, patterns: list[str] | tuple[str, ...]) -> None:
        """Block every group touching a node or initializer matching a glob pattern."""
        for group in self.groups:
            names = [s.node for s in group.sources] + group.members
            hits = [p for p in patterns if any(fnmatch.fnmatchcase(n, p) for n in names)]
            if hits:
                group.blocked[:] = True
                group.reasons.append(f"ignored by --ignore {hits[0]}")
        if self.hidden is not None:
            self.hidden.ignore(patterns)


def _components(n: int, pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if pairs:
        rows = np.concatenate([a for a, _ in pairs])
        cols = np.concatenate([b for _, b in pairs])
    else:
        rows = cols = np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


def build_groups(ctx: AnalysisContext) -> Analysis:
    """Apply rules 1-4 to the collected context."""
    element_unit = _components(ctx.num_elements, ctx.unions)
    num_units = int(element_unit.max()) + 1 if ctx.num_elements else 0
    source_pairs = []
    for source in ctx.sources:
        units = element_unit[source.start:source.start + source.size]
        source_pairs.append((np.full_like(units, units[0]), units))
    unit_group = _components(num_units, source_pairs)
    groups, unit_local, unit_group = _make_groups(ctx, element_unit, unit_group, num_units)
    analysis = Analysis(ctx.model, ctx, element_unit, unit_group, unit_local, groups)
    _apply_blocks(analysis)
    _apply_constraints(analysis)
    _apply_nonempty(analysis)
    _describe(analysis)
    return analysis


_LINEAR_KINDS = ("MatMul output", "Gemm output")


def _scope(sources: list[Source]) -> str:
    paths = [s.scope.split(".") for s in sources if s.scope]
    if not paths:
        return sources[0].node
    common = []
    for parts in zip(*paths):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return ".".join(common) or paths[0][0]


def _describe(analysis: Analysis) -> None:
    """Rule 5."""
    kinds: dict[int, dict[str, int]] = {}
    for note in analysis.ctx.notes:
        ids = note.ids[note.ids >= 0]
        for gid in np.unique(analysis.unit_group[analysis.element_unit[ids]]):
            found = kinds.setdefault(int(gid), {})
            found[note.kind] = note.size
            if note.kind == "heads":
                found["most_heads"] = max(found.get("most_heads", 0), len(note.ids))
    for group in analysis.groups:
        notes = kinds.get(group.index, {})
        scope = _scope(group.sources)
        n = group.size
        if "heads" in notes:
            group.unit_size = notes["heads"]
            what = "attention" if "attention" in notes else "channel blocks"
            group.description = f"{scope} {what}: {n} heads of {notes['heads']}"
            if notes["most_heads"] > n:  # grouped-query attention: a unit is a KV group
                group.description = (f"{scope} {what}: {n} key/value heads, each shared by "
                                     f"{notes['most_heads'] // n} query heads of "
                                     f"{notes['heads']}")
        elif "shuffle" in notes:
            group.unit_size = notes["shuffle"]
            group.description = (f"{scope}: {n} channels in each of {notes['shuffle']} "
                                 "shuffled groups")
        elif recurrent := [k for k in ("LSTM", "GRU", "RNN") if k in notes]:
            group.description = f"{scope} {recurrent[0]}: {n} hidden units"
        elif all(s.kind == "embedding table" for s in group.sources):
            group.description = f"{scope} embedding: {n} features"
        elif "hidden" in notes or any(s.kind == "embedding" for s in group.sources):
            group.description = f"hidden width (residual stream): {n} channels"
        elif all(s.kind in _LINEAR_KINDS for s in group.sources) and group.prunable:
            group.description = f"{scope} MLP: {n} neurons"
        elif all(s.kind in _LINEAR_KINDS for s in group.sources):
            group.description = f"{scope} linear: {n} features"
        else:
            group.description = f"{scope}: {n} channels"


def _make_groups(ctx, element_unit, unit_group, num_units):
    unit_local = np.full(num_units, -1, dtype=np.int64)
    order: dict[int, list[int]] = {}
    sources: dict[int, list[Source]] = {}
    for source in ctx.sources:
        units = element_unit[source.start:source.start + source.size]
        gid = int(unit_group[units[0]])
        sources.setdefault(gid, []).append(source)
        bucket = order.setdefault(gid, [])
        for unit in units:
            if unit_local[unit] < 0:
                unit_local[unit] = len(bucket)
                bucket.append(int(unit))
    members: dict[int, set[str]] = {}
    for coupling in ctx.couplings:
        ids = coupling.ids[coupling.ids >= 0]
        for gid in np.unique(unit_group[element_unit[ids]]):
            members.setdefault(int(gid), set()).add(coupling.label)
    groups = []
    group_of_unit = np.zeros(num_units, dtype=np.int64)
    for gid in sorted(order, key=lambda g: sources[g][0].start):
        units = np.array(order[gid], dtype=np.int64)
        group_of_unit[units] = len(groups)
        groups.append(Group(len(groups), units, sources[gid], sorted(members.get(gid, ())),
                            np.zeros(len(units), dtype=bool), [], []))
    return groups, unit_local, group_of_unit


def _apply_blocks(analysis: Analysis) -> None:
    for ids, reason in analysis.ctx.blocks:
        units = np.unique(analysis.element_unit[ids])
        for unit in units:
            group = analysis.group_of(unit)
            group.blocked[analysis.unit_local[unit]] = True
            if reason not in group.reasons:
                group.reasons.append(reason)


def _apply_nonempty(analysis: Analysis) -> None:
    """Each non-empty set is kept by the group of its first unit (one kept unit suffices)."""
    for ids in analysis.ctx.nonempty:
        units = np.unique(analysis.element_unit[ids])
        group = analysis.group_of(units[0])
        local = analysis.unit_local[units[analysis.unit_group[units] == group.index]]
        group.nonempty.append(local)


def _apply_constraints(analysis: Analysis) -> None:
    for constraint in analysis.ctx.constraints:
        blocks = [analysis.element_unit[b[b >= 0]] for b in constraint.blocks]
        every = np.concatenate(blocks)
        gids = {int(analysis.unit_group[u]) for u in every}
        consistent = len(gids) == 1 and len(np.unique(every)) == len(every)
        if not consistent or any(len(b) == 0 for b in blocks):
            for unit in np.unique(every):
                group = analysis.group_of(unit)
                group.blocked[analysis.unit_local[unit]] = True
                reason = f"{constraint.reason} and its channels span several groups"
                if reason not in group.reasons:
                    group.reasons.append(reason)
            continue
        group = analysis.group_of(every[0])
        group.constraints.append([analysis.unit_local[b] for b in blocks])
