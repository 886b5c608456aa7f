"""Choosing the run-time input shapes of a model, once per run.

Rules (first that applies, per input):

1. ``given`` (``--input-shape``, recipe ``input_shape``, API argument): must name a
   model input, have its rank and agree with its static dims, else
   :class:`UsageError`. Source ``given``.
2. ``data_shapes`` (the non-batch dims of the first ``--data`` sample). Source ``data``.
3. An input without dynamic non-batch dims keeps its dims. Source ``static``.
4. Otherwise a default that respects the model, tried jointly for all undecided
   inputs in ONNX Runtime (one session, one run per candidate at batch 1):

   1. image-like inputs (rank 4, float, channel axis 1 or 3 known as 1, 3 or 4, a
      spatial dim dynamic; a static one, like a text recognizer's height, is kept):
      the size the model's ``metadata_props`` state
      (``imgsz``, ``image_size``, ``input_size``: ``[320, 320]``, ``320``, ``320,320``)
      first, then 224, 256, 288, ... 640 (multiples of 32), and only then 192, 160,
      ... 32 (models that flatten a small fixed map);
   2. every other dynamic non-batch dim: 16, 32, 64, 128, 256, 512, and only then 8,
      4, 2 (never a zero dim); dims with the same ``dim_param`` name get the same
      value.

   The first candidate the runtime accepts is taken (source ``metadata`` or
   ``probed``). None accepted: :class:`UnsupportedModelError` naming the inputs and
   saying to pass ``--input-shape``. With ``check=False`` (analyze), without ONNX
   Runtime or for a model too large to run twice, the first candidate is taken
   untried (source ``default``, or ``metadata``).
"""

from __future__ import annotations

__all__ = ["resolve_input_shapes"]

import dataclasses
import json
import logging
import os

import numpy as np
import onnx
import onnx_ir as ir

from onnxprune.errors import OnnxPruneError, RuntimeMissingError, UnsupportedModelError, UsageError
from onnxprune.graph.input_shapes import InputShape, RunShapes, normalize_proto_dims

logger = logging.getLogger(__name__)

IMAGE_SIZES = (*range(224, 641, 32), *range(192, 31, -32))  # then smaller, as a last resort
SEQUENCE_SIZES = (16, 32, 64, 128, 256, 512, 8, 4, 2)
METADATA_KEYS = ("imgsz", "image_size", "input_size")
_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
           onnx.TensorProto.BFLOAT16}


@dataclasses.dataclass(frozen=True)
class _Spec:
    name: str
    elem_type: int
    dims: tuple[int | None, ...]
    params: tuple[str | None, ...]

    @property
    def dynamic(self) -> tuple[bool, ...]:
        return tuple(d is None for d in self.dims)

    def spatial_axes(self) -> tuple[int, int] | None:
        """Rule 4.1: the two spatial axes of an image-like input."""
        if len(self.dims) != 4 or self.elem_type not in _FLOATS:
            return None
        for channel, spatial in ((1, (2, 3)), (3, (1, 2))):
            if self.dims[channel] in (1, 3, 4) and any(self.dims[a] is None for a in spatial):
                return spatial
        return None


def _specs(proto: onnx.ModelProto) -> list[_Spec]:
    inits = {t.name for t in proto.graph.initializer}
    specs = []
    for value in proto.graph.input:
        if value.name in inits or not value.type.HasField("tensor_type"):
            continue
        tensor = value.type.tensor_type
        dims, params = [], []
        for dim in tensor.shape.dim:
            static = dim.HasField("dim_value") and dim.dim_value > 0
            dims.append(int(dim.dim_value) if static else None)
            params.append(dim.dim_param or None if not static else None)
        specs.append(_Spec(value.name, tensor.elem_type, tuple(dims), tuple(params)))
    return specs


def metadata_size(proto: onnx.ModelProto) -> tuple[int, int] | None:
    """Rule 4.1: ``(H, W)`` stated by the model's metadata, or ``None``."""
    for prop in proto.metadata_props:
        if prop.key not in METADATA_KEYS:
            continue
        try:
            value = json.loads(prop.value.replace("(", "[").replace(")", "]"))
        except ValueError:
            value = [v for v in prop.value.replace("x", ",").split(",") if v.strip()]
        values = value if isinstance(value, list) else [value]
        try:
            sizes = [int(v) for v in values]
        except (TypeError, ValueError):
            continue
        if len(sizes) == 1:
            sizes *= 2
        if len(sizes) == 2 and min(sizes) > 0:
            return sizes[0], sizes[1]
    return None


def _fixed(spec: _Spec, shape: tuple[int, ...], source: str) -> InputShape:
    batch_open = bool(spec.dims) and spec.dims[0] is None
    dims = tuple(None if axis == 0 and batch_open else d for axis, d in enumerate(shape))
    return InputShape(spec.name, dims, spec.dynamic, source)


def _given(spec: _Spec, shape: tuple[int, ...]) -> InputShape:
    """Rule 1."""
    if spec.dims and len(shape) != len(spec.dims):
        raise UsageError(f"--input-shape {spec.name}: rank {len(shape)} but the model input "
                         f"has rank {len(spec.dims)} ({_describe(spec)})")
    for axis, (want, got) in enumerate(zip(spec.dims, shape)):
        if want is not None and want != got:
            raise UsageError(f"--input-shape {spec.name}: axis {axis} is {got}, but the model "
                             f"fixes it to {want} ({_describe(spec)})")
    return _fixed(spec, shape, "given")


def _describe(spec: _Spec) -> str:
    return "x".join(str(d) if d is not None else (p or "?") for d, p in zip(spec.dims,
                                                                         spec.params))


def _candidate(spec: _Spec, index: int, image: tuple[tuple[int, int], ...],
               named: dict[str, int]) -> tuple[int, ...]:
    """Rule 4: the ``index``-th default shape of ``spec`` (batch 1)."""
    spatial = spec.spatial_axes()
    size = image[min(index, len(image) - 1)]
    shape = []
    for axis, (dim, param) in enumerate(zip(spec.dims, spec.params)):
        if dim is not None:
            shape.append(dim)
        elif axis == 0:
            shape.append(1)
        elif spatial and axis in spatial:
            shape.append(size[spatial.index(axis)])
        else:
            value = SEQUENCE_SIZES[min(index, len(SEQUENCE_SIZES) - 1)]
            shape.append(named.setdefault(param, value) if param else value)
    return tuple(shape)


def _feeds(specs: list[_Spec], shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in specs:
        shape = shapes[spec.name]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(spec.elem_type)
        if np.issubdtype(dtype, np.floating):
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[spec.name] = rng.integers(0, 2, shape).astype(dtype)
    return feeds


def _load(model: str | os.PathLike[str] | onnx.ModelProto | ir.Model) -> onnx.ModelProto:
    if isinstance(model, ir.Model):
        return ir.serde.serialize_model(model)
    if isinstance(model, onnx.ModelProto):
        return model
    return onnx.load(str(model), load_external_data=False)


def resolve_input_shapes(model: str | os.PathLike[str] | onnx.ModelProto | ir.Model,
                         given: dict[str, tuple[int, ...]] | None = None,
                         data_shapes: dict[str, tuple[int, ...]] | None = None,
                         check: bool = True) -> RunShapes:
    """The run-time shapes of every input of ``model`` (rules 1-4)."""
    proto = _load(model)
    specs = _specs(proto)
    given = dict(given or {})
    unknown = sorted(set(given) - {s.name for s in specs})
    if unknown:
        raise UsageError(f"--input-shape names {', '.join(unknown)}, which the model does not "
                         f"have as inputs (inputs: {', '.join(s.name for s in specs)})")
    chosen: dict[str, InputShape] = {}
    open_specs = []
    for spec in specs:
        if spec.name in given:
            chosen[spec.name] = _given(spec, given[spec.name])
        elif data_shapes and spec.name in data_shapes:
            chosen[spec.name] = _fixed(spec, (1, *data_shapes[spec.name]), "data")
        elif None not in spec.dims[1:]:
            chosen[spec.name] = _fixed(spec, tuple(d or 1 for d in spec.dims), "static")
        else:
            open_specs.append(spec)
    if open_specs:
        chosen.update(_search(model, proto, specs, open_specs, chosen, check))
    return RunShapes(tuple(chosen[s.name] for s in specs))


def _search(model, proto: onnx.ModelProto, specs: list[_Spec], open_specs: list[_Spec],
            chosen: dict[str, InputShape], check: bool) -> dict[str, InputShape]:
    """Rule 4: the first default the runtime accepts."""
    stated = metadata_size(proto)
    images = ((stated,) if stated else ()) + tuple((s, s) for s in IMAGE_SIZES)
    count = max(len(images), len(SEQUENCE_SIZES))

    def candidate(index: int) -> dict[str, tuple[int, ...]]:
        named: dict[str, int] = {}
        return {s.name: _candidate(s, index, images, named) for s in open_specs}

    def source(index: int) -> str:
        image_like = any(s.spatial_axes() for s in open_specs)
        return "metadata" if stated and index == 0 and image_like else "probed"

    session = _session(model, proto) if check else None
    if session is None:
        first = candidate(0)
        kind = "metadata" if source(0) == "metadata" else "default"
        return {s.name: _fixed(s, first[s.name], kind) for s in open_specs}
    fixed = {name: shape.concrete(1) for name, shape in chosen.items()}
    errors = []
    for index in range(count):
        shapes = candidate(index)
        try:
            session.run(None, _feeds(specs, {**fixed, **shapes}))
        except Exception as exc:  # the runtime refuses this size: try the next
            errors.append(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
            logger.debug("input shapes %s refused: %s", shapes, exc)
            continue
        picked = {s.name: _fixed(s, shapes[s.name], source(index)) for s in open_specs}
        logger.info("run-time input shapes: %s", ", ".join(
            f"{p.name}:{p.describe()}" for p in picked.values()))
        return picked
    names = ", ".join(f"'{s.name}' ({_describe(s)})" for s in open_specs)
    example = open_specs[0]
    raise UnsupportedModelError(
        f"input {names}: no run-time shape found that ONNX Runtime accepts (tried "
        f"{count} sizes from 32 to 640; last error: {errors[-1] if errors else '?'}); "
        f"pass the shape the model expects, e.g. --input-shape {example.name}:"
        + "x".join(str(d) if d is not None else "N" for d in example.dims))


def _session(model, proto: onnx.ModelProto):
    """One inference session for the trials, or ``None`` when none can be made."""
    from onnxprune.graph import runtime

    try:
        if isinstance(model, (str, os.PathLike)):
            return runtime.make_session(str(model), optimize=False)
        runnable = onnx.ModelProto()
        runnable.CopyFrom(proto)
        normalize_proto_dims(runnable)
        return runtime.make_session(runnable, optimize=False)
    except RuntimeMissingError:
        return None
    except OnnxPruneError:
        raise
    except Exception as exc:  # a model ORT cannot load: the later steps say why
        logger.info("no runtime session to choose input shapes (%s); using defaults", exc)
        return None
