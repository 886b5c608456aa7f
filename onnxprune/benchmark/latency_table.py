"""Measure a model's latency table on an execution provider, cached on disk.

Rules:

1. Every modelled layer (:func:`~onnxprune.planning.latency_model.layer_specs`) is
   timed as a one-layer graph (:func:`~onnxprune.benchmark.latency_slices.slice_model`)
   at its grid counts. Layers with equal signatures are timed once. The grid points
   of one layer are run interleaved, run by run, like ``onnxprune bench``: ``warmup``
   untimed runs, then ``runs`` timed ones.
2. A point's latency is its *kernel* time: on host providers, the median over runs of
   the layer's kernels in the ONNX Runtime profile (layout reorders at the graph's
   edges and the call overhead, which a one-layer graph has and the layer inside the
   model does not, are left out); on device providers (CUDA, TensorRT: kernels run
   asynchronously) and where the profile has no timings, the median wall-clock time
   of the run. The whole model is timed by wall clock, ``runs`` runs; on host
   providers with a profile, the median share of each run that its Conv/Gemm/MatMul
   kernels took is the table's ``context_fraction`` (see
   :class:`~onnxprune.planning.latency_model.LatencyTable`).
3. Sessions are built like the benchmark's (provider plus CPU for what it cannot
   take, ``threads`` intra-op threads, IO binding on device providers). A provider
   the build lacks, or one a session silently dropped, is a
   :class:`RuntimeMissingError`.
4. The table is cached as JSON in ``cache_dir()``: the ``cache`` argument, else the
   ``ONNXPRUNE_LATENCY_CACHE`` environment variable, else
   ``$XDG_CACHE_HOME/onnxprune/latency`` (``~/.cache/onnxprune/latency``). The file
   name is a hash of (model bytes, provider, threads, input shapes, ONNX Runtime
   version, table format), so a change of any of them measures anew and a rerun or
   another target on the same model reads the file.
5. The whole model's profile also gives the non-modelled nodes' times (the table's
   ``nodes``): :mod:`onnxprune.benchmark.latency_profile`.
"""

from __future__ import annotations

__all__ = ["CACHE_ENV", "LatencySettings", "cache_dir", "cache_key", "latency_table",
           "measure_points"]

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import tempfile
import time
from typing import Any

import numpy as np
import onnx

from onnxprune.benchmark.latency_profile import named_model, node_entries, node_fractions
from onnxprune.benchmark.latency_slices import default_input_shapes, slice_model, value_shapes
from onnxprune.benchmark.providers import ProviderChoice, check_session, select_providers
from onnxprune.benchmark.session import make_runner, node_placement, open_session
from onnxprune.benchmark.stats import Clock, measure_interleaved
from onnxprune.errors import RuntimeMissingError
from onnxprune.planning.latency_model import LatencyTable, LayerSpec, grid_counts, layer_specs
from onnxprune.planning.latency_nodes import node_specs

logger = logging.getLogger(__name__)

CACHE_ENV = "ONNXPRUNE_LATENCY_CACHE"
TABLE_FORMAT = 3  # 3: the non-modelled nodes' times (rule 5)


@dataclasses.dataclass(frozen=True)
class LatencySettings:
    provider: str = "cpu"
    threads: int = 1
    runs: int = 20
    warmup: int = 3
    cache: str | None = None  # folder; None: rule 4
    seed: int = 0


def cache_dir(override: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """Where latency tables are cached (rule 4)."""
    if override:
        return pathlib.Path(override)
    if os.environ.get(CACHE_ENV):
        return pathlib.Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "onnxprune" / "latency"


def cache_key(model_bytes: bytes, provider: str, threads: int,
              shapes: dict[str, tuple[int, ...]], ort_version: str) -> dict:
    """The fields a table depends on, with their hash under ``"hash"`` (rule 4)."""
    fields = {"model_sha256": hashlib.sha256(model_bytes).hexdigest(), "provider": provider,
              "threads": int(threads), "input_shapes": {k: list(v) for k, v in
                                                         sorted(shapes.items())},
              "onnxruntime": ort_version, "format": TABLE_FORMAT}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]
    return {**fields, "hash": digest}


def latency_table(model: onnx.ModelProto, analysis, settings: LatencySettings,
                  shapes: dict[str, tuple[int, ...]] | None = None, ort: Any = None,
                  clock: Clock = time.perf_counter) -> tuple[LatencyTable, list[LayerSpec], dict]:
    """The table of ``model`` (cached, rules 1-4), its layers and where it came from.

    ``model`` is the runtime proto of the model ``analysis`` was built on; ``shapes``
    maps input names to the shapes to time at (default: ``default_input_shapes``)."""
    if ort is None:
        from onnxprune.graph.runtime import import_ort

        ort = import_ort()
    choice = select_providers([settings.provider], ort)[0]
    if not choice.available:
        raise RuntimeMissingError(choice.reason)
    shapes = {k: tuple(v) for k, v in (shapes or default_input_shapes(model)).items()}
    specs = layer_specs(analysis, value_shapes(model, shapes))
    data = model.SerializeToString()
    key = cache_key(data, choice.name, settings.threads, shapes, str(ort.__version__))
    path = cache_dir(settings.cache) / f"{key['hash']}.json"
    table = _read(path, specs)
    info = {"cache": str(path), "cache_hit": table is not None, "key": key}
    if table is None:
        widths = {name: (spec.width if spec is not None else None)
                  for name, spec in node_specs(analysis).items()}
        table = _measure(data, specs, shapes, choice, settings, ort, clock,
                         (named_model(model), widths))
        table.meta = {"key": key, "runs": settings.runs, "warmup": settings.warmup}
        _write(path, table)
    return table, specs, info


def _read(path: pathlib.Path, specs: list[LayerSpec]) -> LatencyTable | None:
    try:
        table = LatencyTable.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if any(spec.name not in table.layers for spec in specs):
        return None
    logger.info("latency table read from %s", path)
    return table


def _write(path: pathlib.Path, table: LatencyTable) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(table.to_dict()))
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache only costs a remeasurement next time
        logger.warning("latency table not cached at %s: %s", path, exc)


class _Timer:
    """Sessions on one provider for files in a scratch folder (rule 3)."""

    def __init__(self, ort: Any, choice: ProviderChoice, threads: int, folder: str) -> None:
        self.ort, self.choice, self.threads, self.folder = ort, choice, threads, folder

    def runner(self, name: str, model: bytes | onnx.ModelProto, feeds: dict | None = None,
               shapes: dict | None = None, seed: int = 0, profile: bool = False):
        """A timed callable (``.feeds`` holds its inputs) and its session."""
        path = os.path.join(self.folder, name)
        with open(path, "wb") as f:
            f.write(model if isinstance(model, bytes) else model.SerializeToString())
        profile_dir = None
        if profile:
            profile_dir = os.path.join(self.folder, name + ".profile")
            os.makedirs(profile_dir)
        session = open_session(self.ort, path, self.choice, self.threads,
                               profile_dir=profile_dir)
        problem = check_session(self.choice, session)
        if problem:
            raise RuntimeMissingError(f"latency table on {self.choice.alias}: {problem}")
        if feeds is None:
            from onnxprune.graph.runtime import dummy_inputs

            feeds = dummy_inputs(session, seed=seed, shapes=shapes)
        runner = make_runner(self.ort, session, self.choice, feeds)
        runner.feeds = feeds
        return runner, session


def _points(spec: LayerSpec) -> list[tuple[int, int]]:
    c_in, c_out = grid_counts(spec)
    if spec.depthwise:
        return list(zip(c_in, c_out))
    return [(a, b) for a in c_in for b in c_out]


def _kernel_ms(profile: str) -> float | None:
    """Median kernel milliseconds of a one-layer graph's profile, reorders left out."""
    events = json.loads(pathlib.Path(profile).read_text())
    per_node: dict[str, list[float]] = {}
    for event in events:
        name = str(event.get("name", ""))
        if event.get("cat") != "Node" or not name.endswith("_kernel_time") or "dur" not in event:
            continue
        if name.startswith("Reorder"):
            continue
        per_node.setdefault(name, []).append(float(event["dur"]))
    if not per_node:
        return None
    return sum(float(np.median(v)) for v in per_node.values()) / 1e3


_MODELLED_OPS = {"Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul"}


def _context_fraction(profile: str) -> float | None:
    """Median over runs of (Conv/Gemm/MatMul kernel time) / (run time) in a profile."""
    events = json.loads(pathlib.Path(profile).read_text())
    runs = [(e["ts"], e["ts"] + e["dur"]) for e in events
            if e.get("cat") == "Session" and e.get("name") == "model_run" and "dur" in e]
    kernels = [(e["ts"], float(e["dur"])) for e in events
               if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")
               and (e.get("args") or {}).get("op_name") in _MODELLED_OPS and "dur" in e]
    fractions = []
    for start, end in runs:
        inside = sum(d for ts, d in kernels if start <= ts <= end)
        if end > start and inside > 0:
            fractions.append(min(1.0, inside / (end - start)))
    return float(np.median(fractions)) if fractions else None


def measure_points(spec: LayerSpec, points: list[tuple[int, int]], choice: ProviderChoice,
                   settings: LatencySettings, ort: Any, clock: Clock = time.perf_counter
                   ) -> list[float]:
    """Milliseconds of ``spec``'s one-layer graph at each ``(c_in, c_out)`` (rules 1-3)."""
    rng = np.random.default_rng(settings.seed)
    with tempfile.TemporaryDirectory(prefix="onnxprune-latency-") as folder:
        timer = _Timer(ort, choice, settings.threads, folder)
        return _measure_layer(timer, 0, spec, points, settings, rng, clock)


def _measure_layer(timer: _Timer, index: int, spec: LayerSpec, points: list[tuple[int, int]],
                   settings: LatencySettings, rng: np.random.Generator,
                   clock: Clock) -> list[float]:
    runners, sessions = [], []
    profiled = timer.choice.device is None
    for c_in, c_out in points:
        shape = list(spec.in_shape)
        shape[spec.in_axis] = c_in
        feeds = {"x": rng.standard_normal(shape).astype(np.float32)}
        runner, session = timer.runner(f"s{index}_{c_in}x{c_out}.onnx",
                                       slice_model(spec, c_in, c_out), feeds, profile=profiled)
        runners.append(runner)
        sessions.append(session)
    samples = measure_interleaved(runners, settings.runs, settings.warmup, clock)
    values = []
    for session, sample in zip(sessions, samples):
        kernel = _kernel_ms(session.end_profiling()) if profiled else None
        values.append(kernel if kernel is not None else float(np.median(sample)) * 1e3)
    return values


def _measure(data: bytes, specs: list[LayerSpec], shapes: dict, choice: ProviderChoice,
             settings: LatencySettings, ort: Any, clock: Clock,
             named: tuple[tuple[bytes, list[str]], dict] | None = None) -> LatencyTable:
    unique: dict[str, LayerSpec] = {}
    for spec in specs:
        unique.setdefault(spec.signature(), spec)
    grids: dict[str, dict] = {}
    rng = np.random.default_rng(settings.seed)
    with tempfile.TemporaryDirectory(prefix="onnxprune-latency-") as folder:
        timer = _Timer(ort, choice, settings.threads, folder)
        for i, (signature, spec) in enumerate(unique.items()):
            grids[signature] = {"spec": spec,
                                "ms": _measure_layer(timer, i, spec, _points(spec), settings,
                                                     rng, clock)}
            logger.info("latency grid %d/%d: %s %s", i + 1, len(unique), spec.op_type,
                        spec.weight_shape)
        profiled = choice.device is None
        whole, session = timer.runner("model.onnx", named[0][0] if named and profiled
                                      else data, shapes=shapes, seed=settings.seed,
                                      profile=profiled)
        path = os.path.join(folder, "model.onnx")
        if choice.device is not None and not node_placement(ort, path, choice, settings.threads,
                                                            whole.feeds).get(choice.name):
            raise RuntimeMissingError(f"{choice.alias} took no node of the model; its latency "
                                      "would be a CPU latency")
        samples = measure_interleaved([whole], settings.runs, settings.warmup, clock)[0]
        profile = session.end_profiling() if profiled else None
        context = _context_fraction(profile) if profile else None
        shares = node_fractions(profile, named[0][1], _MODELLED_OPS) \
            if profile and named else {}
    whole_ms = float(np.median(samples)) * 1e3
    nodes = node_entries(shares, named[1] if named else {}, context, whole_ms)
    layers = {spec.name: _entry(grids[spec.signature()]) for spec in specs}
    depthwise = tuple(spec.name for spec in specs if spec.depthwise)
    return LatencyTable(layers, whole_ms, choice.alias, settings.threads,
                        {k: list(v) for k, v in shapes.items()}, depthwise,
                        context_fraction=context, nodes=nodes)


def _entry(grid: dict) -> dict:
    spec: LayerSpec = grid["spec"]
    c_in, c_out = grid_counts(spec)
    ms = [round(v, 6) for v in grid["ms"]]
    if spec.depthwise:
        return {"c_in": c_in, "c_out": c_out, "ms": [ms]}
    width = len(c_out)
    return {"c_in": c_in, "c_out": c_out,
            "ms": [ms[i * width:(i + 1) * width] for i in range(len(c_in))]}
