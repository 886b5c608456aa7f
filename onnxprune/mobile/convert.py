"""ONNX -> ORT format for ONNX Runtime Mobile, with optional fixed input shapes.

Rules:

1. ``fix_shapes`` makes the named inputs static (NNAPI needs static shapes, CoreML
   runs much better with them) using ONNX Runtime's ``make_input_shape_fixed``: a
   symbolic dimension is replaced everywhere it occurs, a fixed one must match. Output
   shapes are then re-inferred. A wrong name or rank is a :class:`UsageError`.
2. ``to_ort`` writes the ORT flatbuffer format the way
   ``python -m onnxruntime.tools.convert_onnx_models_to_ort`` does for a mobile
   (ARM) target: optimizations of the chosen level are applied and saved ("fixed"
   style), CPU provider, ``NchwcTransformer`` disabled because its x86 layout does not
   exist on ARM.
3. ``dynamic_inputs`` lists inputs that still have a symbolic or unknown dimension.
"""

from __future__ import annotations

__all__ = ["LEVELS", "dynamic_inputs", "fix_shapes", "to_ort"]

import os
from typing import Any

import onnx

from onnxprune.errors import UsageError
from onnxprune.graph.runtime import import_ort

LEVELS = ("basic", "extended", "all")


def fix_shapes(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """A copy of ``model`` with the named inputs made static (rule 1)."""
    import_ort()
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for name, shape in shapes.items():
        try:
            make_input_shape_fixed(fixed.graph, name, list(shape))
        except ValueError as exc:
            raise UsageError(f"--fix-shape {name}:{'x'.join(map(str, shape))}: {exc}") from exc
    if shapes:
        fix_output_shapes(fixed)
    return fixed


def dynamic_inputs(model: onnx.ModelProto) -> dict[str, list[Any]]:
    """Inputs with a dimension that is not a positive constant, and their shapes (rule 3)."""
    initializers = {t.name for t in model.graph.initializer}
    result = {}
    for value in model.graph.input:
        if value.name in initializers or not value.type.HasField("tensor_type"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0
                else (d.dim_param or "?") for d in value.type.tensor_type.shape.dim]
        if any(not isinstance(d, int) for d in dims):
            result[value.name] = dims
    return result


def to_ort(source: str | os.PathLike[str], target: str | os.PathLike[str],
           optimization: str = "all") -> None:
    """Convert the ONNX file ``source`` to the ORT format file ``target`` (rule 2)."""
    if optimization not in LEVELS:
        raise UsageError(f"optimization must be one of {', '.join(LEVELS)}")
    ort = import_ort()
    from onnxprune.graph.runtime import session_options

    options = session_options(ort)  # project log settings
    options.optimized_model_filepath = str(target)
    options.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    options.add_session_config_entry("session.save_model_format", "ORT")
    disabled = ["NchwcTransformer"] if optimization == "all" else None
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"],
                         disabled_optimizers=disabled)
