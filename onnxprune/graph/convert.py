"""Older opsets: convert a model below ``MIN_OPSET`` instead of refusing it.

Rules:

1. A model whose default-domain opset is below :data:`MIN_OPSET` (11, the lowest the
   analysis rules, the rewrite and ONNX Runtime's current kernels are written for) is
   converted with :func:`onnx.version_converter.convert_version` to exactly
   ``MIN_OPSET``: the lowest target changes the fewest nodes (opset 13 would also
   rewrite every Squeeze/Unsqueeze/Split/ReduceSum for no gain). The pruned model is
   written at the converted opset.
2. Initializers that an IR < 4 model also lists as graph inputs stay initializers
   (the converter keeps them; ``normalize`` removes them from the inputs afterwards),
   and the IR version is raised to at least 4 if the converter left it lower, since
   IR 3 requires every initializer to be an input.
3. A conversion that fails, or yields a model ``onnx.checker`` rejects, raises
   :class:`UnsupportedModelError` (exit 4) with the converter's reason.
"""

from __future__ import annotations

__all__ = ["MIN_OPSET", "convert_opset"]

import logging

import onnx
import onnx.version_converter

from onnxprune.errors import UnsupportedModelError

logger = logging.getLogger(__name__)

MIN_OPSET = 11
_MIN_IR = 4


def convert_opset(proto: onnx.ModelProto, name: str) -> tuple[onnx.ModelProto, str | None]:
    """Apply rules 1-3; return the (possibly new) proto and a note, or None if unchanged."""
    opset = default_opset(proto)
    if opset >= MIN_OPSET:
        return proto, None
    try:
        converted = onnx.version_converter.convert_version(proto, MIN_OPSET)
        converted.ir_version = max(converted.ir_version, _MIN_IR, _ir_for(converted))
        onnx.checker.check_model(converted)
    except Exception as exc:  # the converter raises RuntimeError/ValidationError/...
        reason = _reason(exc)
        raise UnsupportedModelError(
            f"{name}: opset {opset} is below {MIN_OPSET} and onnx.version_converter cannot "
            f"convert it to opset {MIN_OPSET}: {reason}; re-export the model at opset "
            f">= {MIN_OPSET}") from exc
    logger.info("converted %s from opset %d to %d", name, opset, MIN_OPSET)
    return converted, f"converted from opset {opset} to {MIN_OPSET} (onnx.version_converter); " \
                      f"the pruned model is written at opset {MIN_OPSET}"


def _reason(exc: Exception) -> str:
    """The converter's message without its C++ source location and assertion text."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.rsplit(" failed: ", 1)[-1].strip()


def _ir_for(proto: onnx.ModelProto) -> int:
    try:
        return onnx.helper.find_min_ir_version_for(list(proto.opset_import), True)
    except Exception:  # an opset the table does not know
        return _MIN_IR


def default_opset(proto: onnx.ModelProto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
