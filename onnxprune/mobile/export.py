"""``export_mobile``: ORT-format model, NNAPI/CoreML usability, single-thread timing.

This is the API behind ``onnxprune export-mobile`` (and ``compress --mobile``).

Rules:

1. The input model is read, its IR version lowered to what the installed runtime
   reads, and the inputs named in ``fix_shapes`` made static (see
   :mod:`onnxprune.mobile.convert`). Inputs left dynamic are listed in ``notes``.
2. The ORT-format file is staged next to ``output`` and moved into place only after it
   loaded in ONNX Runtime and reproduced the ONNX model's outputs on random inputs
   (max deviation relative to the output's largest magnitude <= ``tolerance``; the
   ORT file carries fused kernels, so results differ by rounding). Otherwise a
   :class:`VerificationError` is raised and nothing is written.
3. The mobile usability check runs on the shape-fixed ONNX model (see
   :mod:`onnxprune.mobile.usability`).
4. With ``bench=True`` the ORT file is timed with one intra-op thread on CPU and,
   when the build has it, XNNPACK: the mobile proxy on this machine. (The ONNX file
   is not timed next to it: on x86 its session would use the NCHWc layout that the
   mobile file leaves out, so the comparison would say nothing about a phone.)
"""

from __future__ import annotations

__all__ = ["default_mobile_output", "export_mobile"]

import logging
import os
import pathlib
import tempfile
from typing import Any

import numpy as np
import onnx

from onnxprune.benchmark.inputs import parse_shape_specs, resolve_shapes
from onnxprune.errors import InvalidModelError, VerificationError
from onnxprune.graph.io import StagedOutput
from onnxprune.graph.runtime import dummy_inputs, import_ort, to_runtime_proto
from onnxprune.mobile.convert import dynamic_inputs, fix_shapes, to_ort
from onnxprune.mobile.usability import check_mobile_usability

logger = logging.getLogger(__name__)


def default_mobile_output(model: str | os.PathLike[str]) -> pathlib.Path:
    return pathlib.Path(model).with_suffix(".ort")


def export_mobile(model: str | os.PathLike[str], output: str | os.PathLike[str] | None = None,
                  *, fix_shapes: dict[str, tuple[int, ...]] | list[str] | None = None,
                  optimization: str = "all", usability: bool = True, bench: bool = True,
                  runs: int = 30, warmup: int = 5, tolerance: float = 1e-4,
                  seed: int = 0) -> dict:
    """Write ``output`` (default ``<model>.ort``); return a JSON-ready summary (rules 1-4)."""
    path = pathlib.Path(model)
    if not path.is_file():
        raise InvalidModelError(f"{path}: no such model file")
    specs = fix_shapes if isinstance(fix_shapes, dict) else parse_shape_specs(fix_shapes)
    destination = pathlib.Path(output) if output else default_mobile_output(path)
    try:
        proto = onnx.load(path)
    except Exception as exc:
        raise InvalidModelError(f"{path}: not a readable ONNX model ({exc})") from exc
    fixed = _fixed(proto, specs)
    dynamic = dynamic_inputs(fixed)
    notes = [f"input {name!r} is still dynamic {dims}: NNAPI needs static shapes and CoreML "
             f"is faster with them; pass --fix-shape {name}:..." for name, dims in dynamic.items()]
    report: dict[str, Any] = {"input": str(path), "output": str(destination),
                              "fixed_shapes": {k: list(v) for k, v in specs.items()},
                              "optimization": optimization, "notes": notes}
    with tempfile.TemporaryDirectory(prefix="onnxprune-mobile-") as tmp:
        fixed_path = pathlib.Path(tmp) / "fixed.onnx"
        onnx.save(fixed, fixed_path)
        with StagedOutput(destination, source=path) as staged:
            to_ort(fixed_path, staged.path, optimization)
            report["verification"] = _verify(fixed_path, staged.path, specs, tolerance, seed)
            report["ort_bytes"] = staged.path.stat().st_size
            out_path = staged.commit()
        report["onnx_bytes"] = path.stat().st_size
        if usability:
            report["usability"] = check_mobile_usability(fixed_path)
        if bench:
            report["benchmark"] = _bench(out_path, specs, runs, warmup, seed)
    return report


def _fixed(proto: onnx.ModelProto, specs: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    lowered = to_runtime_proto(proto)
    return fix_shapes(lowered, specs) if specs else lowered


def _session(ort: Any, path: pathlib.Path, model_format: str) -> Any:
    from onnxprune.graph.runtime import session_options

    options = session_options(ort)  # project log settings
    options.add_session_config_entry("session.load_model_format", model_format)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _verify(onnx_path: pathlib.Path, ort_path: pathlib.Path, specs: dict[str, tuple[int, ...]],
            tolerance: float, seed: int) -> dict:
    ort = import_ort()
    reference = _session(ort, onnx_path, "ONNX")
    try:
        converted = _session(ort, ort_path, "ORT")
    except Exception as exc:
        raise VerificationError(f"the ORT-format file does not load in ONNX Runtime: {exc}") \
            from exc
    feeds = dummy_inputs(reference, seed=seed,
                         shapes=resolve_shapes(reference.get_inputs(), specs))
    expected = reference.run(None, feeds)
    got = converted.run(None, feeds)
    worst = 0.0
    for arg, want, have in zip(reference.get_outputs(), expected, got):
        want, have = np.asarray(want), np.asarray(have)
        if want.shape != have.shape:
            raise VerificationError(f"output {arg.name!r}: ORT-format model gives shape "
                                    f"{have.shape}, the ONNX model {want.shape}")
        if want.size:
            scale = max(float(np.abs(want).max()), 1e-12)
            worst = max(worst, float(np.abs(want.astype(np.float64) - have).max()) / scale)
    if worst > tolerance:
        raise VerificationError(f"the ORT-format model deviates from the ONNX model by {worst:.2e} "
                                f"(relative to the largest output), above {tolerance:.0e}")
    return {"outputs": len(expected), "max_rel_diff": worst, "tolerance": tolerance,
            "input_shapes": {k: list(v.shape) for k, v in feeds.items()}}


def _bench(ort_path: pathlib.Path, specs: dict[str, tuple[int, ...]], runs: int, warmup: int,
           seed: int) -> dict:
    from onnxprune.benchmark import benchmark

    return benchmark([ort_path], providers=["cpu", "xnnpack"], threads=[1], input_shapes=specs,
                     runs=runs, warmup=warmup, seed=seed)
