"""Sessions, timed run callables and node placement for the benchmark.

Rules:

1. ``open_session`` builds the session the way a deployment would: the provider (plus
   CPU for nodes it cannot take), ``threads`` intra-op threads, one inter-op thread,
   the requested graph optimization level. ORT-format files are read as they are;
   ``.onnx`` files whose IR version the runtime cannot read are lowered in memory.
2. ``make_runner`` returns the callable that is timed:

   1. device providers (CUDA, TensorRT): IO binding, inputs copied to the device
      once, outputs bound to the device, so no host/device copy is timed;
   2. every other provider: ``session.run`` on host arrays.
3. ``node_placement`` runs the model once with ORT profiling and counts the nodes
   each provider executed; a provider that took no node is reported as such rather
   than timed (its timing would be a CPU timing).
"""

from __future__ import annotations

__all__ = [
    "GRAPH_LEVELS",
    "BoundRunner",
    "is_ort_format",
    "make_runner",
    "node_placement",
    "open_session",
    "parse_profile",
]

import collections
import json
import logging
import os
import pathlib
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from onnxprune.benchmark.providers import ProviderChoice, session_providers
from onnxprune.graph.runtime import runtime_limits, to_runtime_proto

logger = logging.getLogger(__name__)

GRAPH_LEVELS = ("disable", "basic", "extended", "all")


def is_ort_format(path: str | os.PathLike[str]) -> bool:
    """True for an ORT-format (flatbuffer) file: identifier ``ORTM`` at byte 4."""
    with open(path, "rb") as f:
        return f.read(8)[4:8] == b"ORTM"


def _source(path: pathlib.Path) -> str | bytes:
    if is_ort_format(path):
        return str(path)
    header = onnx.load(path, load_external_data=False)
    if header.ir_version <= runtime_limits()[0]:
        return str(path)
    onnx.load_external_data_for_model(header, str(path.parent.resolve()))
    return to_runtime_proto(header).SerializeToString()


def _provider_options(choice: ProviderChoice, threads: int) -> dict[str, str] | None:
    if choice.alias == "xnnpack":
        return {"intra_op_num_threads": str(threads)}
    return None


def open_session(ort: Any, path: str | os.PathLike[str], choice: ProviderChoice, threads: int,
                 optimization: str = "all", profile_dir: str | None = None) -> Any:
    """An inference session for ``path`` on ``choice`` (rule 1)."""
    from onnxprune.graph.runtime import session_options

    options = session_options(ort)  # project log settings
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    if profile_dir is not None:
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(profile_dir, "placement")
    source = _source(pathlib.Path(path))
    if source == str(path) and is_ort_format(path):
        options.add_session_config_entry("session.load_model_format", "ORT")
    providers = session_providers(choice.name, _provider_options(choice, threads))
    return ort.InferenceSession(source, options, providers=providers)


class BoundRunner:
    """One run through IO binding on ``device``: feeds live on the device (rule 2.1)."""

    def __init__(self, ort: Any, session: Any, feeds: dict[str, np.ndarray], device: str) -> None:
        self.session = session
        self.binding = session.io_binding()
        self._values = []  # keep the device copies alive
        for name, array in feeds.items():
            value = ort.OrtValue.ortvalue_from_numpy(array, device, 0)
            self._values.append(value)
            self.binding.bind_ortvalue_input(name, value)
        for arg in session.get_outputs():
            self.binding.bind_output(arg.name, device, 0)
        self.binding.synchronize_inputs()

    def __call__(self) -> None:
        self.session.run_with_iobinding(self.binding)
        self.binding.synchronize_outputs()


def make_runner(ort: Any, session: Any, choice: ProviderChoice,
                feeds: dict[str, np.ndarray]) -> Callable[[], object]:
    """The callable that gets timed (rule 2)."""
    if choice.device is not None:
        return BoundRunner(ort, session, feeds, choice.device)
    return lambda: session.run(None, feeds)


def parse_profile(path: str | os.PathLike[str]) -> dict[str, int]:
    """Distinct nodes executed per provider in an ORT profile (JSON trace events)."""
    events = json.loads(pathlib.Path(path).read_text())
    nodes: dict[str, set[str]] = collections.defaultdict(set)
    for event in events:
        args = event.get("args") or {}
        if event.get("cat") == "Node" and "provider" in args:
            name = str(event.get("name", "")).removesuffix("_kernel_time")
            nodes[args["provider"]].add(name)
    return {provider: len(names) for provider, names in sorted(nodes.items())}


def node_placement(ort: Any, path: str | os.PathLike[str], choice: ProviderChoice,
                   threads: int, feeds: dict[str, np.ndarray],
                   optimization: str = "all") -> dict[str, int]:
    """Nodes per provider from one profiled run (rule 3)."""
    with tempfile.TemporaryDirectory(prefix="onnxprune-profile-") as tmp:
        session = open_session(ort, path, choice, threads, optimization, profile_dir=tmp)
        session.run(None, feeds)
        return parse_profile(session.end_profiling())
