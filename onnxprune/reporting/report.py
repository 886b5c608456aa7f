"""The machine-readable report every ``compress`` writes next to its output.

Rules:

1. The report is the result dictionary plus ``schema_version`` and the versions of
   onnx, onnxruntime and onnxprune; it is written to ``<output>.report.json``.
2. Written atomically (temporary file, then rename); a failure to write the report
   is an :class:`OutputError` after the model itself was written.
"""

from __future__ import annotations

__all__ = ["SCHEMA_VERSION", "report_path", "versions", "write_report"]

import json
import os
import pathlib
import tempfile

from onnxprune.errors import OutputError
from onnxprune.reporting.schema import REPORT_SCHEMA_VERSION as SCHEMA_VERSION


def report_path(model_path: str | os.PathLike[str]) -> pathlib.Path:
    path = pathlib.Path(model_path)
    return path.with_name(path.name + ".report.json")


def versions() -> dict[str, str | None]:
    import onnx

    from onnxprune._version import __version__

    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:
        ort = None
    return {"onnx": onnx.__version__, "onnxruntime": ort, "onnxprune": __version__}


def write_report(result: dict, path: str | os.PathLike[str]) -> pathlib.Path:
    """Write ``result`` as the versioned JSON report at ``path`` (rules 1-2)."""
    path = pathlib.Path(path)
    document = {"schema_version": SCHEMA_VERSION, "versions": versions(), **result}
    try:
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp",
                                         delete=False) as handle:
            json.dump(document, handle, indent=2, default=_default)
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, path)
    except OSError as exc:
        raise OutputError(f"{path}: could not write the report ({exc})") from exc
    return path


def _default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
