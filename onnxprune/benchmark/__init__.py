"""Benchmarking: latency, throughput, memory and speed-ups on ONNX Runtime providers.

``benchmark(models, ...)`` times several models interleaved on every requested
provider/threads/batch; ``compare(original, pruned, ...)`` is its two-model view for
compression reports. ONNX Runtime is imported only when a benchmark runs.
"""

from __future__ import annotations

from onnxprune.benchmark.bench import SCHEMA_VERSION, benchmark, compare, model_info
from onnxprune.benchmark.providers import ProviderChoice, parse_providers, select_providers
from onnxprune.benchmark.stats import LatencyStats, measure, measure_interleaved

__all__ = [
    "SCHEMA_VERSION",
    "LatencyStats",
    "ProviderChoice",
    "benchmark",
    "compare",
    "measure",
    "measure_interleaved",
    "model_info",
    "parse_providers",
    "select_providers",
]
