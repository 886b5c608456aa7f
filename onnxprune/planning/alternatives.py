"""What would reach an unreachable target: the options worth naming in the error.

Rules (computed only once a plan has failed; each is a re-plan of the maximum, no
scoring, no rewrite):

1. ``--prune-hidden``: when the analysis was run without it and the model also has a
   hidden-width analysis (``Analysis.hidden``, made for transformer-like models), the
   maximum under that analysis with the same options.
2. ``--min-keep``: the largest smaller floor (fractions 0.05, 0.02, 0.01, 0; counts
   halved down to 1) whose maximum reaches the target, else the smallest one.
3. ``--round-to``: likewise with ``round_to`` halved down to 1 (unset: from the default
   multiple of 8 channels).

An alternative is named only when its maximum exceeds the current one; the message
says "with --min-keep 0.05 at most 0.310" for each, in that order.
"""

from __future__ import annotations

__all__ = ["Alternative", "alternatives", "unreachable_error"]

import dataclasses

from onnxprune.analysis.groups import Analysis
from onnxprune.errors import UnreachableTargetError
from onnxprune.planning.planner import DEFAULT_ROUND_CHANNELS, PlanOptions, reachable_maximum

_MIN_KEEP_FRACTIONS = (0.05, 0.02, 0.01, 0.0)


@dataclasses.dataclass(frozen=True)
class Alternative:
    flag: str       # "--prune-hidden", "--min-keep 0.05", "--round-to 4"
    maximum: float


def _halvings(value: int) -> list[int]:
    out = []
    while value > 1:
        value //= 2
        out.append(max(value, 1))
    return out


def _best(analysis: Analysis, options: PlanOptions, field: str, candidates: list,
          flag: str) -> Alternative | None:
    """Rules 2-3: the first candidate reaching the target, else the last one tried."""
    found = None
    for value in candidates:
        maximum = reachable_maximum(analysis, dataclasses.replace(options, **{field: value}))
        found = Alternative(f"{flag} {value:g}", maximum)
        if maximum + 1e-9 >= options.target:
            break
    return found


def alternatives(analysis: Analysis, options: PlanOptions, maximum: float,
                 ) -> list[Alternative]:
    """The rules of the module."""
    found = []
    hidden = getattr(analysis, "hidden", None)
    if hidden is not None and not analysis.ctx.prune_hidden and hidden.prunable_groups:
        found.append(Alternative("--prune-hidden", reachable_maximum(hidden, options)))
    if options.min_keep < 1:
        keeps = [f for f in _MIN_KEEP_FRACTIONS if f < options.min_keep]
    else:
        keeps = _halvings(int(options.min_keep))
    found.append(_best(analysis, options, "min_keep", keeps, "--min-keep"))
    rounding = DEFAULT_ROUND_CHANNELS if options.round_to is None else options.round_to
    found.append(_best(analysis, options, "round_to", _halvings(rounding), "--round-to"))
    return [alt for alt in found if alt is not None and alt.maximum > maximum + 1e-6]


def unreachable_error(analysis: Analysis, options: PlanOptions,
                      maximum: float) -> UnreachableTargetError:
    """The error for a target above ``maximum``, naming the alternatives (rules 1-3)."""
    named = "".join(f"; with {alt.flag} at most {alt.maximum:.3f}"
                    for alt in alternatives(analysis, options, maximum))
    hint = "" if named else " (lower --min-keep/--round-to or the target)"
    return UnreachableTargetError(
        f"target {options.target:.3f} of {options.metric} is unreachable: at most "
        f"{maximum:.3f} can be removed with min_keep={options.min_keep:g}, "
        f"{options.describe_round_to()}{named}{hint}", maximum)
