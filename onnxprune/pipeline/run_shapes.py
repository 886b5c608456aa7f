"""The run-time input shapes of one compress/analyze/sensitivity/bench run.

Rules:

1. ``resolve_run_shapes(model, input_shape, data, ...)`` chooses them once, in the
   order of :mod:`onnxprune.graph.shape_choice`: the given ``input_shape``, else the
   non-batch dims of the first sample of the data (an opened :class:`DataSource`, or
   the ``--data`` file/folder of arrays, opened only to read its shapes; an image
   folder has no shape of its own: its images are resized to the chosen shapes
   unless ``--image-size`` says otherwise), else a default the runtime accepts.
2. Models whose weights exceed ``LARGE_MODEL_BYTES`` are not run to try sizes. A file
   that cannot be read gives ``None``: the entry point's own loading says why.
3. ``in_run_shapes(func)`` wraps an entry point: it resolves the shapes from the
   call's options and runs ``func`` with them entered (``input_shapes.using``); a
   call made inside a run (progressive pruning calls compress per step) keeps the
   run's shapes.
"""

from __future__ import annotations

__all__ = ["in_run_shapes", "resolve_run_shapes"]

import functools
import logging
import os
import pathlib
from collections.abc import Callable
from typing import Any

import onnx
import onnx_ir as ir

from onnxprune.data import DataSource, ImageOptions, open_data
from onnxprune.graph import input_shapes
from onnxprune.graph.shape_choice import resolve_input_shapes
from onnxprune.pipeline.inputs import LARGE_MODEL_BYTES

logger = logging.getLogger(__name__)


def _weight_bytes(path: pathlib.Path, header: onnx.ModelProto) -> int:
    """Rule 2 without loading the weights: file size plus external data lengths."""
    total = path.stat().st_size
    for tensor in header.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "length":
                total += int(entry.value)
    return total


def _array_data(path: str) -> bool:
    data = pathlib.Path(path)
    if data.is_file():
        return True
    return data.is_dir() and any(data.glob("*.np[yz]"))


def _data_shapes(header: onnx.ModelProto, data: DataSource | None, data_path: str | None,
                 image: ImageOptions | None) -> dict[str, tuple[int, ...]] | None:
    """Rule 1: the non-batch dims of the data's first sample."""
    if data is None and data_path and _array_data(data_path):
        data = open_data(data_path, ir.serde.deserialize_model(header), image)
    if data is None:
        return None
    return data.sample_shapes()


def resolve_run_shapes(model: str | os.PathLike[str], input_shape: Any = None,
                       data: DataSource | None = None, data_path: str | None = None,
                       image: ImageOptions | None = None,
                       check: bool = True) -> input_shapes.RunShapes | None:
    """Rules 1-2 for the model file ``model``."""
    path = pathlib.Path(model)
    try:
        header = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # missing, unreadable, not ONNX: reported by the loader
        logger.debug("no run-time shapes for %s: %s", path, exc)
        return None
    given = input_shapes.parse_input_shapes(input_shape)
    shapes = _data_shapes(header, data, data_path, image)
    check = check and _weight_bytes(path, header) <= LARGE_MODEL_BYTES
    resolved = resolve_input_shapes(str(path), given, shapes, check=check)
    logger.info("run-time input shapes: %s", resolved.describe())
    return resolved


def in_run_shapes(options_of: Callable[..., Any]) -> Callable:
    """Rule 3: ``options_of(*args, **kwargs)`` gives ``(model, input_shape, data,
    data_path, image)`` of a call."""

    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if input_shapes.current() is not None:
                return func(*args, **kwargs)
            model, given, data, data_path, image = options_of(*args, **kwargs)
            resolved = resolve_run_shapes(model, given, data, data_path, image)
            with input_shapes.using(resolved):
                return func(*args, **kwargs)

        return wrapper

    return decorate
