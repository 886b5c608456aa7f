"""``--round-to auto``: the channel block the provider's kernels step at, by measurement.

Rules:

1. Two probe layers, a 1x1 conv (64 -> c channels) and a 3x3 conv (c -> c channels),
   both at 28x28, are timed at every output count ``c`` from 1 to ``PROBE_MAX`` on
   the provider with the run's threads (kernel times from the profile, like the
   latency table's points: :func:`~onnxprune.benchmark.latency_table.measure_points`).
2. A count ``c`` is a *step edge* of a probe when one more channel costs more than
   ``STEP`` (relative): ``t(c + 1) > (1 + STEP) * t(c)``, i.e. the kernel's blocked
   layout starts a new block after ``c``. ``auto`` is the smallest block among
   ``CANDIDATES`` whose every multiple below ``PROBE_MAX`` is a step edge of both
   probes (on AVX-512 CPUs: 16, the NCHWc block); when none is, ``auto`` is ``None``
   (the default rounding, multiples of 8 channels).
3. The result is cached next to the latency tables, keyed by provider, threads and
   ONNX Runtime version.
"""

from __future__ import annotations

__all__ = ["CANDIDATES", "PROBE_MAX", "auto_block", "block_from_times", "step_edges"]

import json
import logging
import time
from typing import Any

from onnxprune.benchmark.latency_table import LatencySettings, cache_dir, measure_points
from onnxprune.benchmark.providers import select_providers
from onnxprune.benchmark.stats import Clock
from onnxprune.errors import RuntimeMissingError
from onnxprune.planning.latency_model import LayerSpec

logger = logging.getLogger(__name__)

CANDIDATES = (2, 4, 8, 16, 32)
PROBE_MAX = 64
STEP = 0.1

_PROBES = (
    LayerSpec("probe1x1", "Conv", (1, 64, 28, 28), (PROBE_MAX, 64, 1, 1),
              (("kernel_shape", (1, 1)),), True),
    LayerSpec("probe3x3", "Conv", (1, PROBE_MAX, 28, 28), (PROBE_MAX, PROBE_MAX, 3, 3),
              (("kernel_shape", (3, 3)), ("pads", (1, 1, 1, 1))), True),
)


def step_edges(times: dict[int, float]) -> set[int]:
    """Rule 2's step edges of one probe; ``times`` maps a channel count to its latency."""
    return {c for c in times if c + 1 in times and times[c + 1] > (1 + STEP) * times[c]}


def block_from_times(probes: list[dict[int, float]]) -> int | None:
    """Rule 2: the smallest candidate block whose multiples are edges of every probe."""
    edges = [step_edges(times) for times in probes]
    for block in CANDIDATES:
        multiples = range(block, PROBE_MAX, block)
        if all(all(m in e for m in multiples) for e in edges):
            return block
    return None


def _points(spec: LayerSpec) -> list[tuple[int, int]]:
    if spec.name == "probe1x1":
        return [(64, c) for c in range(1, PROBE_MAX + 1)]
    return [(c, c) for c in range(1, PROBE_MAX + 1)]


def auto_block(settings: LatencySettings, ort: Any = None,
               clock: Clock = time.perf_counter) -> dict:
    """``{"block": B or None, "edges": {probe: [...]}, "cache": path}`` (rules 1-3)."""
    if ort is None:
        from onnxprune.graph.runtime import import_ort

        ort = import_ort()
    choice = select_providers([settings.provider], ort)[0]
    if not choice.available:
        raise RuntimeMissingError(choice.reason)
    name = f"round-{choice.alias}-t{settings.threads}-ort{ort.__version__}.json"
    path = cache_dir(settings.cache) / name
    try:
        cached = json.loads(path.read_text())
        return {**cached, "cache": str(path), "cache_hit": True}
    except (OSError, ValueError):
        pass
    per_probe = {}
    for spec in _PROBES:
        points = _points(spec)
        ms = measure_points(spec, points, choice, settings, ort, clock)
        per_probe[spec.name] = {p[1]: round(v, 6) for p, v in zip(points, ms)}
    result = {"block": block_from_times(list(per_probe.values())), "provider": choice.alias,
              "threads": settings.threads,
              "edges": {k: sorted(step_edges(v)) for k, v in per_probe.items()}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result))
    except OSError as exc:
        logger.warning("round-to probe not cached at %s: %s", path, exc)
    logger.info("--round-to auto: block %s (edges %s)", result["block"], result["edges"])
    return {**result, "cache": str(path), "cache_hit": False}
