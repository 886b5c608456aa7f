"""The cubic schedule of gradual pruning (Zhu & Gupta, 2017), for every progressive flow.

Rules:

1. With ``n`` steps and a final fraction ``s`` (of a metric removed, or of weights made
   zero), step ``t = 1..n`` reaches ``s * (1 - (1 - t/n)^3)``: large steps first, while
   the network has redundancy to spare, small ones near the end; the last step is ``s``
   itself. One step is one-shot.
2. A step's goal is a fraction of the *original* model; pruning acts on the current
   (already pruned) one, so :func:`step_target` converts the goal into the fraction of
   the current metric to remove.

Used by structured progressive pruning (``compress --steps``) and by progressive
unstructured / N:M sparsity.
"""

from __future__ import annotations

__all__ = ["cubic_schedule", "step_target"]


def cubic_schedule(final: float, steps: int) -> list[float]:
    """Rule 1: the fraction reached after each of ``steps`` steps."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    levels = [final * (1.0 - (1.0 - t / steps) ** 3) for t in range(1, steps + 1)]
    levels[-1] = final
    return levels


def step_target(goal: float, original: float, current: float) -> float:
    """Rule 2: the fraction of ``current`` to remove so ``goal`` of ``original`` is gone."""
    if current <= 0:
        return 0.0
    return 1.0 - (1.0 - goal) * original / current
