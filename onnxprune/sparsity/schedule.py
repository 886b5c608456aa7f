"""The cubic sparsity schedule of gradual magnitude pruning (Zhu & Gupta, 2017).

Rule: with ``n`` steps and final sparsity ``s``, step ``t = 1..n`` prunes to
``s * (1 - (1 - t/n)^3)``: large steps first, small ones near the end, where the
network has least slack; the last step reaches ``s`` exactly. One step is one-shot.
"""

from __future__ import annotations

__all__ = ["cubic_schedule"]


def cubic_schedule(final: float, steps: int) -> list[float]:
    """Sparsity after each of ``steps`` steps (see module docstring)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    levels = [final * (1.0 - (1.0 - t / steps) ** 3) for t in range(1, steps + 1)]
    levels[-1] = final
    return levels
