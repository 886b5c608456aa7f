"""Running models in ONNX Runtime (inference only).

Rules:

1. ONNX Runtime is imported lazily; when it is missing a
   :class:`RuntimeMissingError` says which extra to install.
2. Models handed to the runtime get their IR version lowered to what the installed
   runtime reads (ORT 1.19 reads IR <= 10); the model on disk is not changed.
3. Dummy inputs respect dtypes. Inputs of the run's resolved shapes
   (:mod:`onnxprune.graph.input_shapes`) take them, with ``dynamic_dim`` as the batch;
   any other dynamic dimension (``dim_param``, empty, ``<= 0``) becomes ``dynamic_dim``.
4. ONNX Runtime's own log lines never reach stderr: the default logger's severity is
   set to ERROR once at import, and every session the project creates
   (``session_options``) logs FATAL only, under the ``onnxprune`` log id; its errors
   come back as exceptions, which the project reports through its own logger.
5. Graph input/output dims written as ``dim_value <= 0`` are handed to the runtime as
   dynamic (it enforces a ``0`` literally).
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
    "session_options",
    "to_runtime_proto",
]

import logging
import os
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from onnxprune.errors import RuntimeMissingError, UnsupportedModelError
from onnxprune.graph import input_shapes

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
    global _LOGGER_SET
    if not _LOGGER_SET:
        onnxruntime.set_default_logger_severity(DEFAULT_LOG_SEVERITY)
        _LOGGER_SET = True
    return onnxruntime


DEFAULT_LOG_SEVERITY = 3  # the runtime's default logger: errors only
SESSION_LOG_SEVERITY = 4  # sessions: fatal only; errors arrive as exceptions (rule 4)
_LOGGER_SET = False


def session_options(ort: Any = None) -> Any:
    """``SessionOptions`` with the project's log settings (rule 4)."""
    ort = ort or import_ort()
    options = ort.SessionOptions()
    options.log_severity_level = SESSION_LOG_SEVERITY
    options.logid = "onnxprune"
    return options


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
    if _has_nonpositive_dims(proto):  # rule 5, on a copy
        copy = onnx.ModelProto()
        copy.CopyFrom(proto)
        input_shapes.normalize_proto_dims(copy)
        proto = copy
    return proto


def _has_nonpositive_dims(proto: onnx.ModelProto) -> bool:
    return any(dim.HasField("dim_value") and dim.dim_value <= 0
               for value in (*proto.graph.input, *proto.graph.output)
               if value.type.HasField("tensor_type")
               for dim in value.type.tensor_type.shape.dim)


def make_session(model: ir.Model | onnx.ModelProto | str, providers: list[str] | None = None,
                 threads: int | None = None, optimize: bool = True) -> Any:
    """An inference session; ``optimize=False`` keeps only basic graph optimizations
    (faster to create, used by one-off checks)."""
    ort = import_ort()
    options = session_options(ort)
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
    if header.ir_version <= runtime_limits()[0] and not _has_nonpositive_dims(header):
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
    resolved = input_shapes.current()
    for arg in session.get_inputs():
        shape = (shapes or {}).get(arg.name) or _resolved_shape(resolved, arg, dynamic_dim) \
            or tuple(d if isinstance(d, int) and d > 0 else dynamic_dim for d in arg.shape)
        dtype = _ORT_TYPES.get(arg.type, np.float32)
        if np.issubdtype(dtype, np.floating):
            feeds[arg.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype is np.bool_:
            feeds[arg.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[arg.name] = rng.integers(0, 2, shape).astype(dtype)
    return feeds


def _resolved_shape(resolved: input_shapes.RunShapes | None, arg: Any,
                    batch: int) -> tuple[int, ...] | None:
    """The run's shape of ``arg`` when it fits the session's input (rule 3)."""
    entry = resolved.get(arg.name) if resolved is not None else None
    if entry is None or len(entry.dims) != len(arg.shape or ()):
        return None
    shape = entry.concrete(batch)
    if any(isinstance(d, int) and d > 0 and d != s for d, s in zip(arg.shape, shape)):
        return None
    return shape


def run(model: ir.Model | onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return make_session(model).run(None, feeds)


def probe_shapes(model: ir.Model, names: list[str], dynamic_dim: int = 1,
                 ) -> dict[str, tuple[int, ...]]:
    """Shapes of the named intermediate values from one run on dummy inputs (the run's
    shapes at batch ``dynamic_dim``, else symbolic dimensions set to ``dynamic_dim``)."""
    return probe_shape_runs(model, names, (dynamic_dim,))[0]


def probe_shape_runs(model: ir.Model, names: list[str],
                     dynamic_dims: tuple[int | dict[str, tuple[int, ...]], ...],
                     ) -> list[dict[str, tuple[int, ...]]]:
    """One session, one run per entry of ``dynamic_dims`` (a batch/dynamic size, or
    explicit input shapes): the named values' shapes."""
    proto = to_runtime_proto(model)
    known = {o.name for o in proto.graph.output}
    for name in names:
        if name not in known:
            proto.graph.output.append(onnx.ValueInfoProto(name=name))
    session = make_session(proto, optimize=False)
    runs = []
    for number, dim in enumerate(dynamic_dims):
        # inputs missing from explicit shapes still differ from run to run
        feeds = (dummy_inputs(session, shapes=dim, dynamic_dim=2 + number)
                 if isinstance(dim, dict) else dummy_inputs(session, dynamic_dim=dim))
        outputs = session.run(None, feeds)
        runs.append({arg.name: tuple(array.shape)
                     for arg, array in zip(session.get_outputs(), outputs)
                     if isinstance(array, np.ndarray)})
    return runs
