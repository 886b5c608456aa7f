"""INT8 quantization with ONNX Runtime's quantization tools.

Rules:

1. ``onnxruntime.quantization`` is imported lazily; without it a
   :class:`RuntimeMissingError` says what to install.
2. The model is first lowered to the IR version the runtime reads, converted to opset 13
   when older (per-channel QDQ needs the ``axis`` of opset 13; when the conversion fails,
   weights get per-tensor scales and a note says so), and pre-processed
   with ``quant_pre_process`` (symbolic shape inference, basic graph optimization,
   ONNX shape inference), as ONNX Runtime recommends; when pre-processing fails the
   model is quantized as it is and a note says why.
3. With calibration data: static quantization, QDQ format, int8 activations and
   weights (S8S8, ONNX Runtime's recommended default), per-channel weight scales,
   MinMax calibration over every batch of the data.
4. Without data: dynamic quantization (activations quantized at run time) with
   per-channel weights; uint8 weights when the model has a Conv (ONNX Runtime's CPU
   ``ConvInteger`` kernel only takes uint8), int8 otherwise.
"""

from __future__ import annotations

__all__ = ["quantize_int8"]

import logging
import pathlib
import tempfile

import onnx
import onnx.version_converter

from onnxprune.data import DataSource
from onnxprune.errors import RuntimeMissingError, UnsupportedModelError
from onnxprune.graph.runtime import to_runtime_proto
from onnxprune.quantize.reader import calibration_reader

logger = logging.getLogger(__name__)


def _tools():
    try:
        import onnxruntime.quantization as quantization
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise RuntimeMissingError(
            f"INT8 quantization needs onnxruntime.quantization ({exc}); pip install "
            "'onnxprune[cpu]' (or [train]) and, for pre-processing, sympy") from exc
    return quantization, quant_pre_process


def _opset_13(proto: onnx.ModelProto, per_channel: bool, notes: list[str],
              ) -> tuple[onnx.ModelProto, bool]:
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset >= 13 or not per_channel:
        return proto, per_channel
    try:
        converted = onnx.version_converter.convert_version(proto, 13)
    except Exception as exc:  # the converter does not know every op
        notes.append(f"opset {opset} could not be converted to 13 for per-channel "
                     f"quantization ({type(exc).__name__}); weights use per-tensor scales")
        return proto, False
    notes.append(f"converted from opset {opset} to 13 for per-channel quantization")
    return converted, per_channel


def quantize_int8(model: str | pathlib.Path, output: str | pathlib.Path,
                  data: DataSource | None, *, per_channel: bool = True,
                  batch_size: int = 32) -> dict:
    """Quantize the model file ``model`` into ``output`` (rules 1-4); what was done."""
    quantization, pre_process = _tools()
    info: dict = {"per_channel": per_channel, "notes": []}
    with tempfile.TemporaryDirectory(prefix="onnxprune-quant-") as scratch:
        lowered = pathlib.Path(scratch) / "lowered.onnx"
        proto = to_runtime_proto(onnx.load(str(model)))
        proto, per_channel = _opset_13(proto, per_channel, info["notes"])
        info["per_channel"] = per_channel
        onnx.save(proto, str(lowered))
        has_conv = any(n.op_type == "Conv" for n in proto.graph.node)
        source = pathlib.Path(scratch) / "preprocessed.onnx"
        try:
            pre_process(str(lowered), str(source))
            info["preprocessed"] = True
        except Exception as exc:  # ORT's pre-processing is best effort
            logger.warning("quant_pre_process failed (%s); quantizing without it", exc)
            info["preprocessed"] = False
            info["notes"].append(f"quant_pre_process failed ({type(exc).__name__}: {exc}); "
                                 "quantized without pre-processing")
            source = lowered
        try:
            if data is not None:
                reader = calibration_reader(data, batch_size)
                quantization.quantize_static(
                    str(source), str(output), reader,
                    quant_format=quantization.QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=quantization.QuantType.QInt8,
                    weight_type=quantization.QuantType.QInt8,
                    calibrate_method=quantization.CalibrationMethod.MinMax)
                info.update(method="static", format="QDQ", activation_type="int8",
                            weight_type="int8", calibrate_method="MinMax",
                            calibration_samples=data.num_samples,
                            calibration_batches=reader.batches)
            else:
                weight = "uint8" if has_conv else "int8"
                quantization.quantize_dynamic(
                    str(source), str(output), per_channel=per_channel,
                    weight_type=(quantization.QuantType.QUInt8 if has_conv
                                 else quantization.QuantType.QInt8))
                info.update(method="dynamic", format="QOperator", activation_type="uint8",
                            weight_type=weight, calibration_samples=0)
        except RuntimeMissingError:
            raise
        except Exception as exc:
            raise UnsupportedModelError(
                f"ONNX Runtime could not quantize the model: {type(exc).__name__}: {exc}") \
                from exc
    return info
