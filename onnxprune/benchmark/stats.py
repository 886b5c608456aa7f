"""Latency statistics and interleaved timing loops with an injectable clock.

Rules:

1. A clock is any zero-argument callable returning seconds (default
   ``time.perf_counter``); tests pass a fake one, so every statistic here is exact
   and testable without running a model.
2. ``measure_interleaved`` times several callables *run by run*: run ``k`` calls every
   callable once, in an order rotated by ``k`` (model 0 first, then model 1 first,
   ...), so drift (thermal, other processes, turbo) hits every model alike and no
   model is always first. Warm-up calls are made the same way and not recorded.
3. Percentiles use linear interpolation between samples (numpy's default); latency is
   reported in milliseconds, throughput in items per second (``batch / mean``).
4. A speed-up is a ratio of medians (``p50`` of the slower over ``p50`` of the faster
   model); ``paired_ratios`` also gives the spread of the per-run ratios, which
   interleaving makes meaningful.
"""

from __future__ import annotations

__all__ = ["Clock", "LatencyStats", "measure", "measure_interleaved", "paired_ratios", "speedup"]

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np

Clock = Callable[[], float]


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Summary of latency samples (milliseconds) for ``batch`` items per call."""

    runs: int
    batch: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    throughput: float  # items per second
    cv: float  # coefficient of variation (std / mean): above ~0.1 the machine was noisy

    @classmethod
    def from_samples(cls, seconds: Sequence[float], batch: int = 1) -> LatencyStats:
        if len(seconds) == 0:
            raise ValueError("no latency samples")
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
        mean = float(ms.mean())
        std = float(ms.std(ddof=1)) if len(ms) > 1 else 0.0
        return cls(runs=len(ms), batch=batch, mean_ms=mean, std_ms=std, min_ms=float(ms.min()),
                   p50_ms=p50, p90_ms=p90, p99_ms=p99, max_ms=float(ms.max()),
                   throughput=batch * 1e3 / mean if mean > 0 else float("inf"),
                   cv=std / mean if mean > 0 else 0.0)

    def to_dict(self, digits: int = 4) -> dict:
        return {k: (round(v, digits) if isinstance(v, float) else v)
                for k, v in dataclasses.asdict(self).items()}


def measure(func: Callable[[], object], runs: int, warmup: int = 0,
            clock: Clock = time.perf_counter) -> list[float]:
    """Seconds of ``runs`` calls of ``func`` after ``warmup`` untimed calls."""
    return measure_interleaved([func], runs, warmup, clock)[0]


def measure_interleaved(funcs: Sequence[Callable[[], object]], runs: int, warmup: int = 0,
                        clock: Clock = time.perf_counter) -> list[list[float]]:
    """Per-callable samples (seconds), calls interleaved run by run (rule 2)."""
    if runs < 1:
        raise ValueError("runs must be >= 1")
    n = len(funcs)
    for k in range(warmup):
        for i in _order(k, n):
            funcs[i]()
    samples: list[list[float]] = [[] for _ in funcs]
    for k in range(runs):
        for i in _order(k, n):
            start = clock()
            funcs[i]()
            samples[i].append(clock() - start)
    return samples


def _order(k: int, n: int) -> list[int]:
    first = k % n
    return list(range(first, n)) + list(range(first))


def speedup(reference: LatencyStats, other: LatencyStats) -> float:
    """How many times faster ``other`` is than ``reference`` (ratio of medians, rule 4)."""
    return reference.p50_ms / other.p50_ms if other.p50_ms > 0 else float("inf")


def paired_ratios(reference: Sequence[float], other: Sequence[float]) -> dict:
    """Median and quartiles of the per-run ratios ``reference[k] / other[k]``."""
    ratios = np.asarray(reference, dtype=np.float64) / np.asarray(other, dtype=np.float64)
    q25, q50, q75 = (float(v) for v in np.percentile(ratios, [25, 50, 75]))
    return {"median": round(q50, 4), "q25": round(q25, 4), "q75": round(q75, 4)}
