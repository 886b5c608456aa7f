"""Benchmark one or more models on ONNX Runtime execution providers.

``benchmark(models, ...)`` is the API behind ``onnxprune bench``; ``compare(original,
pruned, ...)`` is the two-model view that ``compress --bench`` puts into its report.

Rules:

1. Every combination of available provider x threads x batch is one *configuration*.
   In a configuration every model gets its own session (load time and first-run time
   measured one model at a time; peak memory in a fresh process, see
   :mod:`onnxprune.benchmark.memory`), then all models are timed interleaved,
   run by run (see :mod:`onnxprune.benchmark.stats`), on identical inputs.
2. Providers the build lacks, and providers a session silently dropped or gave no
   node, are listed with a reason and never timed (see
   :mod:`onnxprune.benchmark.providers`). When no configuration could be timed at all,
   :class:`RuntimeMissingError` is raised.
3. Speed-ups are relative to the first model: measured = ratio of median latencies,
   ideal = ratio of MACs (what a perfectly compute-bound runtime would give).
4. ``ort`` and ``clock`` are injectable so tests can run the whole loop on a fake
   runtime and a fake timer.
"""

from __future__ import annotations

__all__ = ["SCHEMA_VERSION", "benchmark", "compare", "cpu_name", "model_info"]

import logging
import os
import pathlib
import platform
import time
from collections.abc import Iterable, Sequence
from typing import Any

from onnxprune._version import __version__
from onnxprune.benchmark.inputs import batch_of, parse_shape_specs, resolve_shapes
from onnxprune.benchmark.memory import METHOD, peak_memory
from onnxprune.benchmark.providers import CPU, ProviderChoice, check_session, select_providers
from onnxprune.benchmark.session import (
    GRAPH_LEVELS,
    is_ort_format,
    make_runner,
    node_placement,
    open_session,
)
from onnxprune.benchmark.stats import (
    Clock,
    LatencyStats,
    measure_interleaved,
    paired_ratios,
    speedup,
)
from onnxprune.errors import InvalidModelError, RuntimeMissingError, UsageError
from onnxprune.graph import input_shapes as run_inputs

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # = reporting.schema.REPORT_SCHEMA_VERSION (one version for both schemas)


def model_info(path: str | os.PathLike[str]) -> dict:
    """File size, parameters and MACs per sample (``None`` for ORT-format files)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise InvalidModelError(f"{path}: no such model file")
    size = path.stat().st_size
    info: dict[str, Any] = {"path": str(path), "file_bytes": size, "params": None, "macs": None}
    if is_ort_format(path):
        return info
    from onnxprune.analysis import analyze
    from onnxprune.graph import load_model
    from onnxprune.planning import CostModel

    loaded = load_model(path)
    info["file_bytes"] = loaded.file_size
    cost = CostModel(analyze(loaded.model)).original
    info["params"], info["macs"] = cost.params, cost.macs
    return info


def _run_shapes(models: Sequence[str | os.PathLike[str]], specs: dict[str, tuple[int, ...]],
                ) -> run_inputs.RunShapes | None:
    """The shapes of the first ONNX model (``onnxprune.pipeline.run_shapes``; specs given win)."""
    from onnxprune.pipeline.run_shapes import resolve_run_shapes

    first = next((m for m in models if pathlib.Path(m).is_file()
                  and not is_ort_format(pathlib.Path(m))), None)
    return resolve_run_shapes(first, specs) if first is not None else None


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    return cpu


def _environment(ort: Any) -> dict:
    cpu = cpu_name()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "onnxruntime": getattr(ort, "__version__", "?"),
        "available_providers": list(ort.get_available_providers()),
        "onnxprune": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": usable,
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg")
        else None,
    }


def _ints(values: Iterable[int | None] | int | None, name: str) -> list[int | None]:
    if values is None or isinstance(values, int):
        values = [values]
    out = list(values)
    if any(v is not None and v < 1 for v in out) or not out:
        raise UsageError(f"--{name} values must be positive integers")
    return out


def benchmark(models: Sequence[str | os.PathLike[str]], *,
              providers: Sequence[str] | str = ("cpu",),
              threads: Iterable[int] | int = (1,),
              batch: Iterable[int | None] | int | None = None,
              warmup: int = 10, runs: int = 50,
              input_shapes: dict[str, tuple[int, ...]] | Iterable[str] | None = None,
              optimization: str = "all", seed: int = 0, memory: bool = True,
              ort: Any = None, clock: Clock = time.perf_counter) -> dict:
    """Benchmark ``models`` interleaved on every configuration; JSON-ready dict (rules 1-4)."""
    if not models:
        raise UsageError("no model to benchmark")
    if runs < 1 or warmup < 0:
        raise UsageError("--runs must be >= 1 and --warmup >= 0")
    if optimization not in GRAPH_LEVELS:
        raise UsageError(f"optimization must be one of {', '.join(GRAPH_LEVELS)}")
    if ort is None:
        from onnxprune.graph.runtime import import_ort

        ort = import_ort()
    specs = input_shapes if isinstance(input_shapes, dict) else parse_shape_specs(input_shapes)
    thread_list = [t or 1 for t in _ints(threads, "threads")]
    batch_list = _ints(batch, "batch")
    choices = select_providers(list(providers) if not isinstance(providers, str)
                               else [providers], ort)
    resolved = run_inputs.current() or _run_shapes(models, specs)
    if resolved is not None:  # inputs without a spec: the run's shapes (not a guess)
        specs = {**{s.name: s.concrete(1) for s in resolved.inputs
                    if s.name not in specs and any(s.dynamic[1:])}, **specs}
    with run_inputs.using(resolved):  # MACs at these shapes
        infos = [model_info(m) for m in models]
    results = []
    for choice in (c for c in choices if c.available):
        for n_threads in thread_list:
            for n_batch in batch_list:
                results.append(_configuration(ort, infos, choice, n_threads, n_batch, specs,
                                              warmup, runs, optimization, seed, memory, clock))
    if not any(r["status"] == "ok" for r in results):
        reasons = "; ".join(f"{r['provider']}: {r['reason']}" for r in results)
        raise RuntimeMissingError(f"no requested provider could run the models ({reasons})")
    return {
        "kind": "onnxprune.benchmark",
        "schema_version": SCHEMA_VERSION,
        "models": infos,
        "settings": {
            "providers": [c.alias for c in choices], "threads": thread_list,
            "batch": batch_list, "warmup": warmup, "runs": runs,
            "input_shapes": {k: list(v) for k, v in specs.items()},
            "graph_optimization": optimization, "interleaved": True, "seed": seed,
            "memory_method": METHOD if memory else "not measured",
            "speedup": "ratio of median latencies, relative to the first model",
            "ideal_speedup": "ratio of MACs, relative to the first model",
            "timer": getattr(clock, "__name__", "injected"),
        },
        "environment": _environment(ort),
        "providers": [{"alias": c.alias, "name": c.name, "available": c.available,
                       "reason": c.reason} for c in choices],
        "results": results,
    }


def _configuration(ort: Any, infos: list[dict], choice: ProviderChoice, threads: int,
                   batch: int | None, specs: dict[str, tuple[int, ...]], warmup: int, runs: int,
                   optimization: str, seed: int, memory: bool, clock: Clock) -> dict:
    from onnxprune.graph.runtime import dummy_inputs

    entry: dict[str, Any] = {"provider": choice.alias, "provider_name": choice.name,
                             "threads": threads, "batch": batch, "status": "ok", "reason": ""}
    sessions, runners, per_model, feeds_list = [], [], [], []
    for info in infos:
        start = clock()
        session = open_session(ort, info["path"], choice, threads, optimization)
        load_s = clock() - start
        problem = check_session(choice, session)
        if problem:
            return {**entry, "status": "fallback", "reason": problem}
        shapes = resolve_shapes(session.get_inputs(), specs, batch)
        feeds = dummy_inputs(session, seed=seed, shapes=shapes)
        runner = make_runner(ort, session, choice, feeds)
        start = clock()
        runner()
        first_s = clock() - start
        sessions.append(session)
        runners.append(runner)
        feeds_list.append(feeds)
        row = {"load_s": round(load_s, 4), "first_run_ms": round(first_s * 1e3, 3),
               "input_shapes": {k: list(v) for k, v in shapes.items()}}
        if memory:
            row["peak_memory_mb"] = peak_memory(info["path"], choice.name, threads,
                                                row["input_shapes"], optimization)["peak_mb"]
        per_model.append(row)
    entry["batch"] = batch_of({k: tuple(v) for k, v in per_model[0]["input_shapes"].items()})
    if batch is not None and entry["batch"] != batch:
        entry["note"] = (f"batch {batch} not applied: the model's first input has a fixed "
                         f"first dimension ({entry['batch']})")
    entry["session_providers"] = list(sessions[0].get_providers())
    if choice.name != CPU:
        placement = node_placement(ort, infos[0]["path"], choice, threads, feeds_list[0],
                                   optimization)
        entry["node_placement"] = placement
        if not placement.get(choice.name):
            return {**entry, "status": "fallback",
                    "reason": f"{choice.alias} took no node of the model; every node ran on "
                              f"{', '.join(placement) or 'another provider'} (not timed)"}
    samples = measure_interleaved(runners, runs, warmup, clock)
    stats = [LatencyStats.from_samples(s, entry["batch"]) for s in samples]
    for row, stat in zip(per_model, stats):
        row["latency"] = stat.to_dict()
    entry["models"] = per_model
    entry["speedup"] = [None] + [_speedup(infos[0], info, stats[0], stat, samples[0], sample)
                                 for info, stat, sample in zip(infos[1:], stats[1:], samples[1:])]
    noisy = [i for i, s in enumerate(stats) if s.cv > 0.1]
    if noisy:
        entry["warning"] = (f"latency varied by more than 10% (cv) for model(s) {noisy}: the "
                            "machine was busy; rerun with more --runs on an idle machine")
    return entry


def _speedup(ref_info: dict, info: dict, ref: LatencyStats, stat: LatencyStats,
             ref_samples: list[float], samples: list[float]) -> dict:
    ideal = (ref_info["macs"] / info["macs"]) if ref_info["macs"] and info["macs"] else None
    return {"measured": round(speedup(ref, stat), 4),
            "measured_mean": round(ref.mean_ms / stat.mean_ms, 4) if stat.mean_ms else None,
            "paired": paired_ratios(ref_samples, samples),
            "ideal": round(ideal, 4) if ideal else None}


def compare(original: str | os.PathLike[str], pruned: str | os.PathLike[str],
            **kwargs: Any) -> dict:
    """Benchmark ``original`` against ``pruned`` interleaved; per-provider view.

    Takes the keyword arguments of :func:`benchmark`. Returns::

        {"kind": "onnxprune.benchmark.compare", "schema_version": 1,
         "original": {path, file_bytes, params, macs}, "pruned": {...},
         "ideal_speedup": MACs ratio, "settings": {...}, "environment": {...},
         "unavailable": {alias: reason},
         "providers": {alias: [{threads, batch, session_providers, original: {load_s,
                       first_run_ms, peak_memory_mb, input_shapes, latency: {p50_ms,
                       ...}},
                       pruned: {...}, speedup, speedup_mean, speedup_paired, ideal_speedup}]}}
    """
    full = benchmark([original, pruned], **kwargs)
    first, second = full["models"]
    ideal = (first["macs"] / second["macs"]) if first["macs"] and second["macs"] else None
    unavailable = {p["alias"]: p["reason"] for p in full["providers"] if not p["available"]}
    by_provider: dict[str, list[dict]] = {}
    for r in full["results"]:
        if r["status"] != "ok":
            unavailable[r["provider"]] = r["reason"]
            continue
        s = r["speedup"][1]
        by_provider.setdefault(r["provider"], []).append({
            "threads": r["threads"], "batch": r["batch"],
            "session_providers": r["session_providers"],
            "node_placement": r.get("node_placement"),
            "original": r["models"][0], "pruned": r["models"][1],
            "speedup": s["measured"], "speedup_mean": s["measured_mean"],
            "speedup_paired": s["paired"], "ideal_speedup": s["ideal"],
            **({"warning": r["warning"]} if "warning" in r else {}),
        })
    return {
        "kind": "onnxprune.benchmark.compare",
        "schema_version": SCHEMA_VERSION,
        "original": first, "pruned": second,
        "ideal_speedup": round(ideal, 4) if ideal else None,
        "settings": full["settings"], "environment": full["environment"],
        "unavailable": unavailable, "providers": by_provider,
    }
