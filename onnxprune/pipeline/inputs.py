"""The inputs of one compress run, opened once.

Rules:

1. The model is loaded once, checked for NaN/Inf weights and for ops the installed
   runtime cannot run (its notes kept), and serialized once as ``original`` (with
   its external data) for every comparison.
2. Models whose weights exceed :data:`LARGE_MODEL_BYTES` run in bounded memory: the
   original is not run, the result is checked against its declared outputs (a note
   says so). Decided once, on the model as loaded.
3. ``--data`` and ``--eval-data`` are opened once against the model with the one
   :func:`image_options` of the run; flows take subsets (``max_samples``, held-out
   splits) from these.
"""

from __future__ import annotations

__all__ = ["LARGE_MODEL_BYTES", "Inputs", "calibration_data", "image_options", "is_large",
           "open_inputs", "open_model"]

import dataclasses
import os

import onnx
import onnx_ir as ir

from onnxprune.data import DataSource, ImageOptions, open_data
from onnxprune.graph import load_model
from onnxprune.graph.io import LoadedModel, weight_bytes
from onnxprune.graph.validate import check_finite, check_runtime_support
from onnxprune.options import CompressOptions

LARGE_MODEL_BYTES = 2**30


def image_options(options: CompressOptions) -> ImageOptions:
    """How image folders are read (the ``image_size``/``mean``/``std``/... options)."""
    return ImageOptions(tuple(options.image_size) if options.image_size else None,
                        tuple(options.mean), tuple(options.std), options.layout,
                        options.channel_order)


def is_large(loaded: LoadedModel) -> bool:
    """Rule 2."""
    if "large" not in loaded.facts:
        loaded.facts["large"] = weight_bytes(loaded.model) > LARGE_MODEL_BYTES
    return loaded.facts["large"]


@dataclasses.dataclass
class Inputs:
    """Rules 1-3: what every flow reads."""

    model: str | os.PathLike[str]
    loaded: LoadedModel
    original: onnx.ModelProto
    data: DataSource | None = None        # --data, opened (all samples)
    evaluation: DataSource | None = None  # --eval-data, opened
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def large(self) -> bool:
        return is_large(self.loaded)

    @property
    def original_path(self) -> str | None:
        return str(self.loaded.path) if self.loaded.path else None


def _original(loaded: LoadedModel) -> onnx.ModelProto:
    original = ir.serde.serialize_model(loaded.model)
    if is_large(loaded):
        loaded.notes.append(
            f"large model ({weight_bytes(loaded.model) / 2**30:.1f} GiB of weights): the "
            "original is not run; the result is checked against its declared outputs")
    elif loaded.external_data:
        onnx.load_external_data_for_model(original, str(loaded.path.parent))
    return original


def open_model(model: str | os.PathLike[str]) -> Inputs:
    """Rules 1-2 (no data): also each progressive step's current model."""
    loaded = load_model(model)
    check_finite(loaded.model)
    loaded.notes.extend(check_runtime_support(loaded.model, loaded.opset))
    return Inputs(model, loaded, _original(loaded))


def open_inputs(model: str | os.PathLike[str], options: CompressOptions,
                data: DataSource | None = None,
                evaluation: DataSource | None = None) -> Inputs:
    """Rules 1-3 (the data is validated, read lazily by its readers); ``data`` and
    ``evaluation``, already opened, replace ``options.data`` / ``options.eval_data``."""
    inputs = open_model(model)
    image, graph = image_options(options), inputs.loaded.model
    inputs.data = data or (open_data(options.data, graph, image) if options.data else None)
    inputs.evaluation = evaluation or (open_data(options.eval_data, graph, image)
                                       if options.eval_data else None)
    return inputs


def calibration_data(inputs: Inputs, options: CompressOptions) -> DataSource | None:
    """``--data`` limited to ``max_samples`` (a seeded subset), or None."""
    data = inputs.data
    if data is not None and options.max_samples and data.num_samples > options.max_samples:
        data = data.take(options.max_samples, seed=options.seed)
    return data
