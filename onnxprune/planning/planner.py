"""Choose the units to remove.

Rules:

1. ``target`` is the fraction of ``metric`` (``params`` or ``flops``, i.e. MACs)
   to remove from the whole model.
2. Scores are normalised per group (divided by the mean score of the group's
   prunable units) so groups of different magnitude compare.
3. A group keeps at least its floor: ``min_keep`` (fraction if < 1, of the group's
   width or of its ``reference_sizes`` width, else a count), at least one channel,
   its blocked units, and one unit of every non-empty set (each source layer and each
   Split/Slice part keeps a channel). ``round_to`` makes every kept count a multiple
   of N units (a group too small for that stays whole). Unset (``None``, the default),
   kept *channel* counts are multiples of ``DEFAULT_ROUND_CHANNELS`` = 8: channel
   groups keep multiples of 8 units, head groups multiples of ``8 / gcd(8, head
   width)`` heads (any head count for heads of 8, 16, 64 ... channels); odd counts
   fall off the blocked SIMD kernels and make pruned models slower
   (``benchmarks/bench_round_to.py``). ``group_round`` (``--round-to auto``) replaces
   the 8 by a measured channel multiple for the groups it lists. Grouped-conv groups
   keep the same count in every block.
4. ``scope="global"``: one threshold over all normalised scores; each group
   removes its units scoring below it (as far as rule 3 allows).
   ``scope="uniform"``: the same ratio removed from every group.
   The smallest threshold/ratio that reaches the target wins (binary search); in
   global scope single feasible steps then refine it, and when the model has at most
   ``EXACT_SEARCH_LIMIT`` combinations of per-group counts, all are tried and the
   one overshooting the target least is taken.
5. A target above what rule 3 allows raises :class:`UnreachableTargetError`
   stating the maximum reachable value and, when some exist, the options that would
   reach more (``planning.alternatives``: --prune-hidden, --min-keep, --round-to).
"""

from __future__ import annotations

__all__ = ["DEFAULT_ROUND_CHANNELS", "GroupOptions", "Plan", "PlanOptions", "Searcher",
           "group_options", "make_plan", "reachable_maximum"]

import dataclasses
import functools
import itertools
import math

import numpy as np

from onnxprune.analysis.groups import Analysis, Group
from onnxprune.errors import UsageError
from onnxprune.planning.cost import CostModel

METRICS = ("params", "flops")
DEFAULT_ROUND_CHANNELS = 8  # unset round_to: kept channel counts are multiples of this
EXACT_SEARCH_LIMIT = 512  # combinations of per-group counts searched exhaustively
SCOPES = ("global", "uniform")


@dataclasses.dataclass(frozen=True)
class PlanOptions:
    target: float
    metric: str = "params"
    scope: str = "global"
    round_to: int | None = 1  # None: DEFAULT_ROUND_CHANNELS channels (rule 3)
    min_keep: float = 0.1
    # (source node, width in units) that a fractional min_keep refers to instead of the
    # group's current width (progressive pruning passes the original model's widths)
    reference_sizes: tuple[tuple[str, int], ...] = ()
    # (source node, channel multiple) per group: ``--round-to auto``'s measured step
    # edges of the group's own layers (onnxprune.planning.round_auto); used when
    # ``round_to`` is None, for the groups with a listed source
    group_round: tuple[tuple[str, int], ...] = ()

    def validate(self) -> None:
        if not 0.0 < self.target < 1.0:
            raise UsageError(f"--target must be in (0, 1), got {self.target}")
        if self.metric not in METRICS:
            raise UsageError(f"--metric must be one of {', '.join(METRICS)}, got {self.metric}")
        if self.scope not in SCOPES:
            raise UsageError(f"--scope must be one of {', '.join(SCOPES)}, got {self.scope}")
        if self.round_to is not None and self.round_to < 1:
            raise UsageError(f"--round-to must be >= 1, got {self.round_to}")
        if self.min_keep < 0:
            raise UsageError(f"--min-keep must be >= 0, got {self.min_keep}")


    def unit_multiple(self, group: Group) -> int:
        """The multiple of units every kept count of ``group`` must be (rule 3)."""
        if self.round_to is not None:
            return self.round_to
        channels = DEFAULT_ROUND_CHANNELS
        if self.group_round:
            measured = _as_dict(self.group_round)
            found = [measured[s.node] for s in group.sources if s.node in measured]
            channels = max(found) if found else channels
        return channels // math.gcd(channels, max(group.unit_size, 1))

    def describe_round_to(self) -> str:
        if self.round_to is None and self.group_round:
            return "round_to=auto (measured step edges per group)"
        if self.round_to is None:
            return f"round_to={DEFAULT_ROUND_CHANNELS} channels (the default)"
        return f"round_to={self.round_to}"


@functools.lru_cache(maxsize=8)
def _as_dict(pairs: tuple[tuple[str, int], ...]) -> dict[str, int]:
    return dict(pairs)


@dataclasses.dataclass
class GroupOptions:
    """Feasible removal counts of one group and how to pick the units for each."""

    group: Group
    order: np.ndarray            # local unit indices, least important first (prunable only)
    counts: list[int]            # feasible numbers of removed units, ascending, starting at 0
    blocks: list[np.ndarray] | None = None  # per-block orders for grouped convs

    def removed(self, count: int) -> np.ndarray:
        """Local indices removed when ``count`` units go."""
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        if self.blocks is None:
            return self.order[:count]
        per_block = count // len(self.blocks)
        return np.concatenate([b[:per_block] for b in self.blocks])


@dataclasses.dataclass
class Plan:
    removed_units: np.ndarray
    achieved: float
    metric: str
    kept: dict[int, int]     # group index -> kept units
    maximum: float


def _reference_size(group: Group, options: PlanOptions) -> int:
    """The width a fractional ``min_keep`` refers to: the group's reference width (its
    sources' largest, when any source has one), else its current width."""
    sizes = dict(options.reference_sizes)
    known = [sizes[source.node] for source in group.sources if source.node in sizes]
    return max(known) if known else group.size


def _floor(group: Group, options: PlanOptions) -> int:
    if options.min_keep < 1:
        keep = math.ceil(options.min_keep * _reference_size(group, options))
    else:
        keep = int(options.min_keep)
    return max(1, keep, int(group.blocked.sum()))


def _protected(group: Group, scores: np.ndarray) -> np.ndarray:
    """Units kept so every non-empty set (Split/Slice part) keeps one: its best unit."""
    keep = np.zeros(group.size, dtype=bool)
    for local in group.nonempty:
        if not (group.blocked[local] | keep[local]).any():
            keep[local[np.argmax(scores[local])]] = True
    return keep


def _group_options(group: Group, scores: np.ndarray, options: PlanOptions) -> GroupOptions:
    prunable = np.flatnonzero(~group.blocked & ~_protected(group, scores))
    order = prunable[np.argsort(scores[prunable], kind="stable")]
    floor = _floor(group, options)
    if group.constraints:
        return _blocked_options(group, scores, options, floor)
    counts = [r for r in range(len(order) + 1)
              if group.size - r >= floor and _round_ok(group.size - r, group, options)]
    return GroupOptions(group, order, counts or [0])


def _round_ok(kept: int, group: Group, options: PlanOptions) -> bool:
    return kept == group.size or kept % options.unit_multiple(group) == 0


def _blocked_options(group: Group, scores, options, floor) -> GroupOptions:
    partition = max(group.constraints, key=len)
    fixed = group.blocked | _protected(group, scores)
    blocks = []
    for block in partition:
        free = block[~fixed[block]]
        blocks.append(free[np.argsort(scores[free], kind="stable")])
    n = len(partition)
    size = len(partition[0])
    limit = min(len(b) for b in blocks)
    counts = []
    for per_block in range(limit + 1):
        removed = np.concatenate([b[:per_block] for b in blocks])
        kept = group.size - n * per_block
        if kept >= floor and _round_ok(kept, group, options) and all(
            _equal_loss(c, removed) for c in group.constraints
        ):
            counts.append(n * per_block)
    del size
    return GroupOptions(group, np.zeros(0, dtype=np.int64), counts or [0], blocks)


def _equal_loss(partition: list[np.ndarray], removed: np.ndarray) -> bool:
    losses = {int(np.isin(block, removed).sum()) for block in partition}
    return len(losses) == 1


def _normalise(group: Group, scores: np.ndarray) -> np.ndarray:
    local = scores[group.units].astype(np.float64)
    prunable = local[~group.blocked]
    mean = float(prunable.mean()) if prunable.size else 0.0
    return local / mean if mean > 0 else local


class Searcher:
    """The feasible plans of one analysis under one set of options, and how to search them.

    ``groups`` pairs every prunable group's :class:`GroupOptions` (rule 3) with its
    normalised scores (rule 2); a plan is a list of removal counts, one per group, each
    one of that group's feasible counts. :meth:`achieved` measures a plan with the cost
    model; :meth:`maximum_counts` is the plan removing the most (every group at its
    largest feasible count) and :meth:`require_reachable` the one reachability check
    (rule 5) of every planner in this package. The search steps (rule 4) are
    :meth:`counts_at`, :meth:`refine`, :meth:`polish` and :meth:`exact`.
    """

    def __init__(self, analysis: Analysis, scores: np.ndarray, options: PlanOptions) -> None:
        self.analysis = analysis
        self.options = options
        self.cost = CostModel(analysis)
        self.groups = [
            (_group_options(g, _normalise(g, scores), options), _normalise(g, scores))
            for g in analysis.prunable_groups
        ]

    def maximum_counts(self) -> list[int]:
        """Every group at its largest feasible removal count."""
        return [opts.counts[-1] for opts, _ in self.groups]

    def maximum(self) -> float:
        """The most of ``options.metric`` rule 3 lets go."""
        return self.achieved(self.maximum_counts())

    def require_reachable(self) -> float:
        """Rule 5: the maximum, or :class:`UnreachableTargetError` (naming the options that
        would reach more) when ``options.target`` is above it."""
        maximum = self.maximum()
        if maximum + 1e-9 < self.options.target:
            from onnxprune.planning.alternatives import unreachable_error  # imports this module

            raise unreachable_error(self.analysis, self.options, maximum)
        return maximum

    def removal(self, counts: list[int]) -> np.ndarray:
        removed = np.zeros(self.analysis.num_units, dtype=bool)
        for (opts, _), count in zip(self.groups, counts):
            removed[opts.group.units[opts.removed(count)]] = True
        return removed

    @staticmethod
    def snap(opts: GroupOptions, wanted: int) -> int:
        feasible = [c for c in opts.counts if c <= wanted]
        return feasible[-1] if feasible else 0

    def counts_at(self, knob: float) -> list[int]:
        counts = []
        for opts, norm in self.groups:
            if self.options.scope == "global":
                wanted = int((norm[opts.order] < knob).sum()) if opts.blocks is None else \
                    int(sum((norm[b] < knob).sum() for b in opts.blocks))
            else:
                wanted = math.floor(knob * opts.group.size + 1e-9)
            counts.append(self.snap(opts, wanted))
        return counts

    def achieved(self, counts: list[int]) -> float:
        return self.cost.reduction(self.removal(counts), self.options.metric)

    def refine(self, counts: list[int], target: float) -> list[int]:
        """From a plan just short of the target, take single feasible steps.

        Each round tries the next feasible count of every group; if some step reaches
        the target, the one overshooting least wins and the search ends; otherwise the
        step whose next unit scores lowest is taken. This lands closer to the target
        than the threshold alone when groups are coarse.
        """
        counts = list(counts)
        while self.achieved(counts) + 1e-12 < target:
            steps = []
            for i, (opts, norm) in enumerate(self.groups):
                nxt = [c for c in opts.counts if c > counts[i]]
                if not nxt:
                    continue
                trial = counts[:i] + [nxt[0]] + counts[i + 1:]
                units = opts.removed(nxt[0])
                score = float(norm[units].max()) if len(units) else 0.0
                steps.append((self.achieved(trial), score, trial))
            if not steps:
                return counts
            reaching = [s for s in steps if s[0] + 1e-12 >= target]
            if reaching:
                return min(reaching, key=lambda s: (s[0], s[1]))[2]
            counts = min(steps, key=lambda s: s[1])[2]
        return counts

    def _neighbours(self, counts: list[int], i: int, direction: int) -> list[int] | None:
        feasible = self.groups[i][0].counts
        position = feasible.index(counts[i]) + direction
        if not 0 <= position < len(feasible):
            return None
        return counts[:i] + [feasible[position]] + counts[i + 1:]

    def polish(self, counts: list[int], target: float, budget: int = 600,
               slack: float = 0.01) -> list[int]:
        """Shrink the overshoot: undo single steps, then (while the overshoot exceeds
        ``slack``) swap a step between two groups, as long as the target stays reached
        (at most ``budget`` evaluations)."""
        current = self.achieved(counts)
        spent = 0
        while spent < budget:
            best, best_value = None, current
            moves = [self._neighbours(counts, i, -1) for i in range(len(counts))]
            for trial in filter(None, moves):
                spent += 1
                value = self.achieved(trial)
                if target - 1e-12 <= value < best_value - 1e-12:
                    best, best_value = trial, value
            if best is None and current - target > slack:
                for down in filter(None, moves):
                    for j in range(len(counts)):
                        trial = self._neighbours(down, j, +1)
                        if trial is None or spent >= budget:
                            continue
                        spent += 1
                        value = self.achieved(trial)
                        if target - 1e-12 <= value < best_value - 1e-12:
                            best, best_value = trial, value
            if best is None:
                return counts
            counts, current = best, best_value
        return counts

    def space(self) -> int:
        return math.prod(len(opts.counts) for opts, _ in self.groups)

    def exact(self, target: float, fallback: list[int]) -> list[int]:
        """Smallest overshoot over every combination of feasible counts (small models)."""
        best, best_value = fallback, self.achieved(fallback)
        for combo in itertools.product(*(opts.counts for opts, _ in self.groups)):
            value = self.achieved(list(combo))
            if target - 1e-12 <= value < best_value - 1e-12:
                best, best_value = list(combo), value
        return best

    def knobs(self) -> np.ndarray:
        if self.options.scope == "uniform":
            sizes = sorted({opts.group.size for opts, _ in self.groups})
            ratios = {k / s for s in sizes for k in range(s + 1)}
            return np.array(sorted(ratios) + [1.0 + 1e-6])
        values = np.concatenate([norm[~opts.group.blocked] for opts, norm in self.groups]
                                or [np.zeros(0)])
        uniq = np.unique(values)
        return np.append(np.nextafter(uniq, np.inf), np.inf)


def group_options(analysis: Analysis, scores: np.ndarray, options: PlanOptions,
                  ) -> list[GroupOptions]:
    """Feasible removal counts and unit order (rule 3) of every prunable group."""
    return [opts for opts, _ in Searcher(analysis, scores, options).groups]


def reachable_maximum(analysis: Analysis, options: PlanOptions,
                      scores: np.ndarray | None = None) -> float:
    """The most of ``options.metric`` that rule 3 lets go. Scores only pick which unit of
    each Split/Slice part is protected; without them every unit scores alike."""
    if scores is None:
        scores = np.zeros(analysis.num_units)
    return Searcher(analysis, scores, options).maximum()


def make_plan(analysis: Analysis, scores: np.ndarray, options: PlanOptions) -> Plan:
    """Pick the removed units (see module docstring)."""
    options.validate()
    search = Searcher(analysis, scores, options)
    maximum = search.require_reachable()
    knobs = search.knobs()
    lo, hi = 0, len(knobs) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if search.achieved(search.counts_at(knobs[mid])) + 1e-12 >= options.target:
            hi = mid
        else:
            lo = mid + 1
    counts = search.counts_at(knobs[lo])
    if options.scope == "global":
        start = search.counts_at(knobs[lo - 1]) if lo > 0 else [0] * len(search.groups)
        counts = search.refine(start, options.target)
        if search.space() <= EXACT_SEARCH_LIMIT:
            counts = search.exact(options.target, counts)
        else:
            counts = search.polish(counts, options.target)
    elif search.achieved(counts) + 1e-12 < options.target:
        counts = search.maximum_counts()
    removed = search.removal(counts)
    kept = {opts.group.index: opts.group.size - c for (opts, _), c in zip(search.groups, counts)}
    return Plan(removed, search.achieved(counts), options.metric, kept, maximum)
