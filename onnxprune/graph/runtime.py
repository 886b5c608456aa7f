"""Running models in ONNX Runtime (inference only).

Rules:

1. ONNX Runtime is imported lazily; when it is missing a
   :class:`RuntimeMissingError` says which extra to install.
2. Models handed to the runtime get their IR version lowered to what the installed
   runtime reads (ORT 1.19 reads IR <= 10); the model on disk is not changed.
3. Dummy inputs respect dtypes; symbolic dimensions become ``dynamic_dim``.
"""

from __future__ import annotations

__all__ = [
    "RUNTIME_LIMITS",
    "dummy_inputs",
    "import_ort",
    "make_session",
    "probe_shape_runs",
    "probe_shapes",
    "run",
    "to_runtime_proto",
]

import logging
import os
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from onnxprune.errors import RuntimeMissingError, UnsupportedModelError

logger = logging.getLogger(__name__)

# (major, minor) of onnxruntime -> (max IR version, max default-domain opset) it reads.
RUNTIME_LIMITS: dict[tuple[int, int], tuple[int, int]] = {
    (1, 17): (9, 20),
    (1, 18): (10, 21),
    (1, 19): (10, 21),
    (1, 20): (10, 21),
    (1, 21): (10, 22),
    (1, 22): (11, 22),
}
_NEWEST = (13, 26)


def import_ort() -> Any:
    """Return the ``onnxruntime`` module or raise a clear error (rule 1)."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise RuntimeMissingError(
            "ONNX Runtime is not installed: pip install 'onnxprune[cpu]' "
            "(or [train] for onnxruntime-training-cpu, [gpu] for onnxruntime-gpu)"
        ) from exc
    return onnxruntime


def runtime_limits() -> tuple[int, int]:
    ort = import_ort()
    major, minor = (int(p) for p in ort.__version__.split(".")[:2])
    if (major, minor) in RUNTIME_LIMITS:
        return RUNTIME_LIMITS[(major, minor)]
    if (major, minor) < min(RUNTIME_LIMITS):
        return RUNTIME_LIMITS[min(RUNTIME_LIMITS)]
    return _NEWEST


def to_runtime_proto(model: ir.Model | onnx.ModelProto) -> onnx.ModelProto:
    """Serialize for the installed runtime, lowering the IR version (rule 2)."""
    proto = ir.serde.serialize_model(model) if isinstance(model, ir.Model) else model
    max_ir, max_opset = runtime_limits()
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset > max_opset:
        raise UnsupportedModelError(
            f"model opset {opset} is newer than the installed ONNX Runtime reads "
            f"(<= {max_opset}); install a newer onnxruntime or convert the model down"
        )
    if proto.ir_version > max_ir:
        proto.ir_version = max_ir
    return proto


def make_session(model: ir.Model | onnx.ModelProto | str, providers: list[str] | None = None,
                 threads: int | None = None, optimize: bool = True) -> Any:
    """An inference session; ``optimize=False`` keeps only basic graph optimizations
    (faster to create, used by one-off checks)."""
    ort = import_ort()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    source = _readable_path(model) if isinstance(model, str) else None
    if source is None:
        source = to_runtime_proto(model).SerializeToString()
    return ort.InferenceSession(source, options, providers=providers or ["CPUExecutionProvider"])


def _readable_path(path: str) -> str | bytes:
    """The path itself when the runtime reads its IR version, else lowered bytes."""
    header = onnx.load(path, load_external_data=False)
    if header.ir_version <= runtime_limits()[0]:
        return path
    onnx.load_external_data_for_model(header, os.path.dirname(os.path.abspath(path)))
    return to_runtime_proto(header).SerializeToString()


_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def dummy_inputs(session: Any, seed: int = 0, dynamic_dim: int = 1,
                 shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, np.ndarray]:
    """Random inputs for every session input (rule 3)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for arg in session.get_inputs():
        shape = (shapes or {}).get(arg.name) or tuple(
            d if isinstance(d, int) and d > 0 else dynamic_dim for d in arg.shape
        )
        dtype = _ORT_TYPES.get(arg.type, np.float32)
        if np.issubdtype(dtype, np.floating):
            feeds[arg.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype is np.bool_:
            feeds[arg.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[arg.name] = rng.integers(0, 2, shape).astype(dtype)
    return feeds


def run(model: ir.Model | onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return make_session(model).run(None, feeds)


def probe_shapes(model: ir.Model, names: list[str], dynamic_dim: int = 1,
                 ) -> dict[str, tuple[int, ...]]:
    """Shapes of the named intermediate values from one run on dummy inputs whose
    symbolic dimensions are ``dynamic_dim``."""
    return probe_shape_runs(model, names, (dynamic_dim,))[0]


def probe_shape_runs(model: ir.Model, names: list[str], dynamic_dims: tuple[int, ...],
                     ) -> list[dict[str, tuple[int, ...]]]:
    """One session, one run per entry of ``dynamic_dims``: the named values' shapes."""
    proto = to_runtime_proto(model)
    known = {o.name for o in proto.graph.output}
    for name in names:
        if name not in known:
            proto.graph.output.append(onnx.ValueInfoProto(name=name))
    session = make_session(proto, optimize=False)
    runs = []
    for dim in dynamic_dims:
        outputs = session.run(None, dummy_inputs(session, dynamic_dim=dim))
        runs.append({arg.name: tuple(array.shape)
                     for arg, array in zip(session.get_outputs(), outputs)
                     if isinstance(array, np.ndarray)})
    return runs
