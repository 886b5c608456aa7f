"""Sensitivity analysis of a model file: the Python API behind ``onnxprune sensitivity``.

Loads and analyzes the model, scores units with ``criterion`` (data-driven criteria
use the same data), measures every prunable group at ``ratios``
(:func:`onnxprune.calibration.sensitivity.measure_sensitivity`; suffix caching unless
``suffix=False``, a first pass on ``samples`` samples, the cells on the executor of
``workers``/``ray_address``, see :mod:`onnxprune.parallel`), and optionally writes the
JSON and a plot.
"""

from __future__ import annotations

__all__ = ["plot_sensitivity", "sensitivity_file"]

import json
import os
import pathlib
from collections.abc import Callable

import onnx_ir as ir

from onnxprune.analysis import analyze
from onnxprune.calibration.sensitivity import Sensitivity, measure_sensitivity
from onnxprune.errors import OutputError, RuntimeMissingError, UnsupportedModelError
from onnxprune.graph import load_model
from onnxprune.graph.runtime import to_runtime_proto
from onnxprune.options import CompressOptions, build_options
from onnxprune.parallel import open_executor
from onnxprune.pipeline.calibrated import open_calibration
from onnxprune.pipeline.inputs import image_options
from onnxprune.pipeline.run_shapes import in_run_shapes


def _run_shape_options(model, *, data: str | None = None, **options) -> tuple:
    """What :func:`in_run_shapes` needs from a :func:`sensitivity_file` call."""
    fields = {k: v for k, v in options.items() if k in CompressOptions.model_fields}
    resolved = build_options({"target": 0.5, **fields})
    return model, resolved.input_shape, None, data, image_options(resolved)


@in_run_shapes(_run_shape_options)
def sensitivity_file(model: str | os.PathLike[str], *, data: str | None = None,
                     ratios: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7), criterion: str = "l1",
                     samples: int | None = None, suffix: bool = True,
                     progress: Callable[[int, int], None] | None = None,
                     **options) -> Sensitivity:
    """Measure ``model`` (see module docstring); ``options`` are compress option keys
    (``batch_size``, ``max_samples``, image options, ``min_keep``, ``round_to``, ``ignore``,
    ``seed``, ``workers``, ``ray_address``)."""
    opts = build_options({"target": 0.5, "data": data, "criterion": criterion,
                          "sensitivity_ratios": tuple(ratios), **options})
    loaded = load_model(model)
    original = to_runtime_proto(ir.serde.serialize_model(loaded.model))
    analysis = analyze(loaded.model)
    analysis.ignore(opts.ignore)
    if not analysis.prunable_groups:
        raise UnsupportedModelError(f"{model}: no prunable channel group")
    calib = open_calibration(opts, loaded.model)
    scores = calib.scores(analysis)
    with open_executor(opts.workers, opts.ray_address) as executor:
        return measure_sensitivity(original, analysis, scores, calib.source(loaded.model),
                                   list(opts.sensitivity_ratios), batch_size=opts.batch_size,
                                   plan_options=opts.plan_options(), criterion=calib.criterion,
                                   model_name=str(model), suffix=suffix, samples=samples,
                                   seed=opts.seed, executor=executor, progress=progress)


def write_json(result: Sensitivity, path: str | os.PathLike[str]) -> None:
    try:
        pathlib.Path(path).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    except OSError as exc:
        raise OutputError(f"{path}: could not write ({exc.strerror or exc})") from exc


def plot_sensitivity(result: Sensitivity, path: str | os.PathLike[str]) -> None:
    """Damage against ratio, one line per group (matplotlib, imported here)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RuntimeMissingError("--plot needs matplotlib: pip install 'onnxprune[plot]' "
                                  "(or pip install matplotlib)") from exc
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for group in result.groups:
        xs = [0.0] + [p["removed"] / group.channels for p in group.points]
        ys = [0.0] + [p["damage"] for p in group.points]
        ax.plot(xs, ys, marker="o", label=f"{group.index}: {group.name}"[:40])
    ax.set_xlabel("fraction of the group's channels removed")
    ax.set_ylabel(f"damage ({result.damage_metric})")
    ax.set_title(f"{pathlib.Path(result.model).name}: sensitivity per group")
    if len(result.groups) <= 20:
        ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise OutputError(f"{path}: could not write ({exc.strerror or exc})") from exc
    finally:
        plt.close(fig)
