"""Which share of a graph NNAPI and CoreML would take, and why not the rest.

Rules:

1. The check is ONNX Runtime's own mobile usability checker
   (``onnxruntime.tools.mobile_helpers.usability_checker``, also run by
   ``python -m onnxruntime.tools.check_onnx_model_mobile_usability``): the model is
   optimized at the basic level (as the ORT conversion does first), shapes are
   inferred, and the partitioner of each execution provider is replayed against its
   list of supported operators.
2. For each of NNAPI, CoreML NeuralNetwork and CoreML MLProgram the result gives the
   node count it would take, the number of partitions (each boundary is a copy
   between the accelerator and the CPU), ORT's verdict (``YES``/``MAYBE``/``NO``) and
   ``why_not``: unsupported operators, nodes with dynamic input shapes, tensor ranks
   above the provider's limit, several partitions; ``caveats`` lists the operator
   limitations the checker cannot verify (they may reduce the share further).
3. When the model has dynamic inputs, ``share_if_static`` is what the provider would
   take after fixing them (``--fix-shape``).
4. When the checker is missing or fails (it is not a stable ORT API), the result says
   so in ``error`` instead of failing the export.
"""

from __future__ import annotations

__all__ = ["EPS", "check_mobile_usability"]

import logging
import os
import pathlib
import tempfile
from typing import Any

logger = logging.getLogger(__name__)

EPS = {
    "nnapi": ("NNAPI", None),
    "coreml_neuralnetwork": ("CoreML NeuralNetwork", "coreml_supported_neuralnetwork_ops.md"),
    "coreml_mlprogram": ("CoreML MLProgram", "coreml_supported_mlprogram_ops.md"),
}


def check_mobile_usability(model_path: str | os.PathLike[str]) -> dict:
    """Per-provider partition summary of the ONNX file ``model_path`` (rules 1-4)."""
    try:
        from onnxruntime.tools.mobile_helpers import usability_checker as checker
        from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model
    except ImportError as exc:
        return {"error": f"ONNX Runtime's mobile usability checker is not available: {exc}"}
    try:
        with tempfile.TemporaryDirectory(prefix="onnxprune-mobile-") as tmp:
            optimized = pathlib.Path(tmp) / "basic.onnx"
            optimize_model(pathlib.Path(model_path), optimized, use_external_initializers=True)
            model = ModelProtoWithShapeInfo(optimized).model_with_shape_info
        dynamic, _ = checker.check_shapes(model.graph, logger)
        result: dict[str, Any] = {"dynamic_inputs": [v.name for v in dynamic]}
        for key, (label, config) in EPS.items():
            result[key] = _check(checker, model, label, config, bool(dynamic))
        return result
    except Exception as exc:  # the checker is not a stable API (rule 4)
        logger.warning("mobile usability check failed: %s", exc)
        return {"error": f"mobile usability check failed: {type(exc).__name__}: {exc}"}


def _partition(checker: Any, model: Any, config: str | None, fixed: bool) -> Any:
    if config is None:
        return checker.check_nnapi_partitions(model, fixed)
    return checker.check_coreml_partitions(model, fixed, config)


def _check(checker: Any, model: Any, label: str, config: str | None, dynamic: bool) -> dict:
    info = _partition(checker, model, config, True)
    share = info.num_supported_nodes / info.num_nodes if info.num_nodes else 0.0
    row = {
        "provider": label,
        "nodes": info.num_nodes,
        "supported_nodes": info.num_supported_nodes,
        "share": round(share, 4),
        "partitions": info.num_partitions,
        "partition_sizes": [len(g) for g in info.supported_groups],
        "verdict": info.suitability().name,
        "unsupported_ops": sorted(info.unsupported_ops),
        "why_not": _why_not(info, label),
        "caveats": [c.strip() for c in info.supported_ops_checker.get_caveats()],
    }
    if dynamic:
        relaxed = _partition(checker, model, config, False)
        row["share_if_static"] = round(
            relaxed.num_supported_nodes / relaxed.num_nodes if relaxed.num_nodes else 0.0, 4)
        row["verdict_if_static"] = relaxed.suitability().name
    return row


def _why_not(info: Any, label: str) -> list[str]:
    reasons = []
    if info.nodes_unsupported_due_to_op:
        reasons.append(f"{info.nodes_unsupported_due_to_op} node(s) use operators {label} does "
                       f"not support: {', '.join(sorted(info.unsupported_ops))}")
    if info.nodes_unsupported_due_to_dynamic_input:
        reasons.append(f"{info.nodes_unsupported_due_to_dynamic_input} node(s) have inputs with "
                       "dynamic shapes: fix the input shapes (--fix-shape NAME:1x3x224x224)")
    if info.num_unsupported_nodes_due_to_rank:
        reasons.append(f"{info.num_unsupported_nodes_due_to_rank} node(s) have inputs of a rank "
                       f"{label} does not support: "
                       f"{', '.join(sorted(info.ops_with_unsupported_rank))}")
    if info.num_partitions > 1:
        reasons.append(f"the supported nodes form {info.num_partitions} partitions; every "
                       "boundary is a copy between the accelerator and the CPU")
    return reasons
