"""The Python API of ``onnxprune compress`` and ``onnxprune analyze``: a thin facade.

``compress(model, target, **options)`` prunes ``model`` and writes the result; every
flow (one-shot, progressive, sparse, INT8 post-step) runs through
:func:`onnxprune.pipeline.run_compress`. Nothing inside the package imports this
module (or the package root): they import :mod:`onnxprune.pipeline` directly.
"""

from __future__ import annotations

__all__ = ["CompressOptions", "CompressResult", "analysis_of", "analyze_file", "compress",
           "default_output"]

import os
from collections.abc import Callable

from onnxprune.data import DataSource
from onnxprune.options import CompressOptions
from onnxprune.pipeline.analyze import analysis_of, analyze_file
from onnxprune.pipeline.flows import run_compress
from onnxprune.pipeline.result import CompressResult, default_output


def compress(model: str | os.PathLike[str], target: float | None = None, *,
             output: str | os.PathLike[str] | None = None,
             options: CompressOptions | dict | None = None, write: bool = True,
             report: bool = True, min_keep_widths: dict[str, int] | None = None,
             calibration_data: DataSource | None = None, progress: Callable | None = None,
             evaluation_data: DataSource | None = None, **kwargs) -> CompressResult:
    """Prune ``model`` to remove ``target`` of the metric; write ``output``.

    Options come as a :class:`CompressOptions`, as a dict with the keys of a recipe
    file, or as keyword arguments of the same names (``metric``, ``criterion``,
    ``scope``, ``round_to``, ...). With ``write=False`` nothing is written (the
    result still describes the verified model). With ``report=True`` the result is
    also written as ``<output>.report.json``. The flow (one-shot, progressive with
    ``steps``, sparse with ``mode="unstructured"|"n:m"``, then ``quantize="int8"``) is
    chosen by :func:`onnxprune.pipeline.select_flow`.
    ``min_keep_widths`` maps source layer names to the widths (in units) a fractional
    ``min_keep`` refers to, instead of the model's current widths.
    ``calibration_data`` (an opened :class:`DataSource`) replaces ``options.data`` for
    the data-driven steps. ``progress`` receives dicts (``phase``: ``step``, ``train``,
    ``evaluate``) from progressive runs. ``evaluation_data`` (held-out, opened) replaces
    ``options.eval_data``: the task metric of original and result
    (``result.accuracy``; a drop beyond the budget is exit 11, see
    :mod:`onnxprune.calibration.accuracy`) and the ``--recover auto`` choice.
    """
    return run_compress(model, target, output=output, options=options, write=write,
                        report=report, min_keep_widths=min_keep_widths,
                        calibration_data=calibration_data, progress=progress,
                        evaluation_data=evaluation_data, **kwargs)
