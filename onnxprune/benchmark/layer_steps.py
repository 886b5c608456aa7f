"""Measure every layer's step table for ``--round-to auto`` (per group), cached on disk.

Rules:

1. Every modelled layer (:func:`~onnxprune.planning.latency_model.layer_specs`) is
   probed on each channel axis that pruning can change, at its real shapes (input
   size, kernel, stride, groups, bias, fused activation; the other axis at its full
   width): the one-layer graph is timed at the counts of
   :data:`~onnxprune.planning.round_auto.PROBE_COUNTS` up to the axis's width, the
   points of one probe interleaved, kernel times from the profile
   (:func:`~onnxprune.benchmark.latency_table.measure_points`). A depthwise layer has
   one probe (input and output counts move together); a grouped, non-depthwise conv
   has none (its group count already fixes its steps).
2. A probe is keyed by what its times depend on: the layer's op, attributes, input
   shape with the probed channel axis left out, the other axis's width, bias,
   activation, the probed axis; plus the provider, the threads and the ONNX Runtime
   version (the file name). Layers with equal keys, in one model or in several (the
   pruned step models of a progressive run keep most layers' shapes), are timed once.
   A layer whose shapes changed has a new key and is timed; weights do not enter the
   key (the probes use random weights).
3. The cache is one JSON file per (provider, threads, ONNX Runtime version) in the
   latency cache folder (``cache_dir``): ``steps-<provider>-t<threads>-ort<version>.json``
   mapping a key's hash to ``{count: ms}``. Only counts missing from it are timed.
4. ``auto_group_round`` turns the step table into ``PlanOptions.group_round``
   (:mod:`onnxprune.planning.round_auto`) and reports what the probe cost: points timed
   now and read from the cache, seconds, the cache file, and how many groups got each
   block.
"""

from __future__ import annotations

__all__ = ["auto_group_round", "describe", "probe_key", "step_table"]

import collections
import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import time
from typing import Any

import onnx

from onnxprune.benchmark.latency_slices import default_input_shapes, value_shapes
from onnxprune.benchmark.latency_table import LatencySettings, cache_dir, measure_points
from onnxprune.benchmark.providers import select_providers
from onnxprune.benchmark.stats import Clock
from onnxprune.errors import RuntimeMissingError
from onnxprune.planning.latency_model import LayerSpec, layer_specs
from onnxprune.planning.round_auto import (
    PROBE_COUNTS,
    group_blocks,
    group_round,
    layer_blocks,
)

logger = logging.getLogger(__name__)

STEPS_FORMAT = 1


def _probes(spec: LayerSpec) -> list[tuple[str, list[tuple[int, int]]]]:
    """Rule 1: (axis, points) of every probe of ``spec``."""
    if spec.op_type == "Conv" and spec.groups > 1 and not spec.depthwise:
        return []
    if spec.depthwise:
        if not (spec.prunable_in or spec.prunable_out):
            return []
        return [("both", [(c, c) for c in PROBE_COUNTS if c <= spec.c_in])]
    probes = []
    if spec.prunable_in:
        probes.append(("in", [(c, spec.c_out) for c in PROBE_COUNTS if c <= spec.c_in]))
    if spec.prunable_out:
        probes.append(("out", [(spec.c_in, c) for c in PROBE_COUNTS if c <= spec.c_out]))
    return [(axis, points) for axis, points in probes if len(points) > 1]


def probe_key(spec: LayerSpec, axis: str) -> str:
    """Rule 2: the hash of everything a probe's times depend on (no name, no weights)."""
    data = dataclasses.asdict(spec)
    del data["name"], data["prunable_in"], data["prunable_out"]
    in_shape = list(spec.in_shape)
    if axis in ("in", "both"):
        in_shape[spec.in_axis] = 0
    data["in_shape"] = in_shape
    data["weight_shape"] = list(spec.weight_shape[2:]) if spec.op_type == "Conv" else []
    data["other"] = {"in": spec.c_out, "out": spec.c_in, "both": None}[axis]
    data["probe_axis"] = axis
    text = json.dumps(data, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _cache_file(settings: LatencySettings, alias: str, version: str) -> pathlib.Path:
    return cache_dir(settings.cache) / f"steps-{alias}-t{settings.threads}-ort{version}.json"


def _read(path: pathlib.Path) -> dict[str, dict[str, float]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != STEPS_FORMAT:
        return {}
    return {k: dict(v) for k, v in data.get("probes", {}).items() if isinstance(v, dict)}


def _write(path: pathlib.Path, probes: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": STEPS_FORMAT, "probes": probes}))
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache only costs a remeasurement next time
        logger.warning("round-to auto step table not cached at %s: %s", path, exc)


def step_table(specs: list[LayerSpec], settings: LatencySettings, ort: Any = None,
               clock: Clock = time.perf_counter) -> tuple[dict, dict]:
    """``{layer: {axis: {count: ms}}}`` of ``specs`` (rules 1-3) and what it cost."""
    if ort is None:
        from onnxprune.graph.runtime import import_ort

        ort = import_ort()
    choice = select_providers([settings.provider], ort)[0]
    if not choice.available:
        raise RuntimeMissingError(choice.reason)
    path = _cache_file(settings, choice.alias, str(ort.__version__))
    cached = _read(path)
    started, measured, read = time.perf_counter(), 0, 0
    steps: dict[str, dict[str, dict[int, float]]] = {}
    for spec in specs:
        for axis, points in _probes(spec):
            key = probe_key(spec, axis)
            known = cached.setdefault(key, {})
            missing = [p for p in points if str(_count(p, axis)) not in known]
            if missing:
                times = measure_points(spec, missing, choice, settings, ort, clock)
                known.update({str(_count(p, axis)): round(t, 6) for p, t in zip(missing, times)})
                measured += len(missing)
            read += len(points) - len(missing)
            row = {_count(p, axis): float(known[str(_count(p, axis))]) for p in points}
            names = ("in", "out") if axis == "both" else (axis,)
            steps.setdefault(spec.name, {}).update({n: row for n in names})
    if measured:
        _write(path, cached)
    info = {"cache": str(path), "points_measured": measured, "points_cached": read,
            "seconds": round(time.perf_counter() - started, 3), "provider": choice.alias,
            "threads": settings.threads}
    logger.info("round-to auto step table: %d points timed, %d cached (%.1f s)", measured,
                read, info["seconds"])
    return steps, info


def _count(point: tuple[int, int], axis: str) -> int:
    return point[1] if axis == "out" else point[0]


def auto_group_round(model: onnx.ModelProto, analysis, settings: LatencySettings,
                     shapes: dict[str, tuple[int, ...]] | None = None, ort: Any = None,
                     clock: Clock = time.perf_counter
                     ) -> tuple[tuple[tuple[str, int], ...], dict]:
    """Rule 4: ``PlanOptions.group_round`` for ``analysis`` and the probe's cost.

    ``model`` is the runtime proto of the model ``analysis`` was built on."""
    shapes = {k: tuple(v) for k, v in (shapes or default_input_shapes(model)).items()}
    specs = layer_specs(analysis, value_shapes(model, shapes))
    steps, info = step_table(specs, settings, ort, clock)
    blocks = group_blocks(analysis, specs, layer_blocks(steps, specs))
    counts = collections.Counter(str(blocks.get(g.index, "default"))
                                 for g in analysis.prunable_groups)
    info["groups_by_block"] = dict(sorted(counts.items()))
    return group_round(analysis, blocks), info


def describe(info: dict) -> str:
    """The note a compress run carries about ``--round-to auto`` (rule 4)."""
    groups = ", ".join(f"{n} at the default 8" if block == "default" else f"{n} x {block}"
                       for block, n in info.get("groups_by_block", {}).items())
    return (f"--round-to auto{info.get('why', '')}: channel multiples per group measured on "
            f"{info['provider']}, "
            f"{info['threads']} thread(s): {groups or 'no prunable group'}; probe cost "
            f"{info['points_measured']} points timed in {info['seconds']:.1f} s, "
            f"{info['points_cached']} read from the cache ({info['cache']})")
