"""Per-step targets of progressive pruning (Zhu & Gupta 2017).

``s_t = s_f * (1 - (1 - t/N)^3)`` for steps ``t = 1..N``: large removals first, when
the network has redundancy to spare, small ones near the end; ``s_N = s_f``.
"""

from __future__ import annotations

__all__ = ["cubic_schedule", "step_target"]


def cubic_schedule(final: float, steps: int) -> list[float]:
    """Targets (fractions of the original metric removed) after each of ``steps`` steps."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return [final * (1.0 - (1.0 - t / steps) ** 3) for t in range(1, steps + 1)]


def step_target(goal: float, original: float, current: float) -> float:
    """Fraction of the *current* metric to remove so ``goal`` of ``original`` is gone."""
    if current <= 0:
        return 0.0
    return 1.0 - (1.0 - goal) * original / current
