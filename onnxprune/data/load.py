"""Open ``--data PATH`` for a model.

Cases:

1. A ``.npz`` file: its arrays are keyed by model input name (plus optional ``labels``).
2. A ``.npy`` file: the samples of a single-input model.
3. A folder holding ``.npz`` files: each is a shard with the keys of case 1, read in
   sorted order, one at a time.
4. A folder holding ``.npy`` files: ``NAME.npy`` or ``NAME-<shard>.npy`` /
   ``NAME.<shard>.npy`` per model input NAME (and ``labels``); shards of different
   names are paired in sorted order. For a single-input model every other ``.npy``
   is a shard of that input.
5. A folder of images (recursively), with :class:`ImageOptions` (see ``images``).

Anything else, or data that does not match the model, raises :class:`DataError`.
"""

from __future__ import annotations

__all__ = ["open_data"]

import os
import pathlib
import re

import onnx_ir as ir

from onnxprune.data.images import ImageOptions, image_part
from onnxprune.data.readers import ArrayReader, NpyReader, npz_readers
from onnxprune.data.source import LABELS, DataSource, Part
from onnxprune.data.specs import InputSpec, model_input_specs
from onnxprune.errors import DataError


def open_data(path: str | os.PathLike[str], model: ir.Model,
              image: ImageOptions | None = None) -> DataSource:
    """A validated :class:`DataSource` over ``path`` for ``model`` (cases 1-5)."""
    path = pathlib.Path(path)
    specs = model_input_specs(model)
    if not specs:
        raise DataError("the model has no inputs to feed")
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".npz":
            return DataSource([Part(dict(npz_readers(path)), str(path))], specs, str(path))
        if suffix == ".npy":
            return DataSource([_single_npy(path, specs)], specs, str(path))
        raise DataError(f"{path}: unsupported data file; give an .npz, an .npy, or a folder "
                        "of .npz/.npy shards or images")
    shards = sorted(path.glob("*.npz"))
    if shards:
        return DataSource([Part(dict(npz_readers(s)), str(s)) for s in shards], specs,
                          str(path))
    arrays = sorted(path.glob("*.npy"))
    if arrays:
        return DataSource(_npy_parts(arrays, specs, path), specs, str(path))
    return DataSource([image_part(path, specs, image or ImageOptions())], specs, str(path))


def _single_npy(path: pathlib.Path, specs: list[InputSpec]) -> Part:
    if len(specs) != 1:
        raise DataError(f"{path}: one .npy file feeds single-input models only; this model has "
                        f"inputs {', '.join(s.name for s in specs)} (use an .npz)")
    return Part({specs[0].name: NpyReader(path)}, str(path))


_SHARD = re.compile(r"^(?P<name>.+?)(?:[-.](?P<shard>[^-.]+))?$")


def _npy_parts(files: list[pathlib.Path], specs: list[InputSpec],
               folder: pathlib.Path) -> list[Part]:
    names = {s.name for s in specs} | {LABELS}
    grouped: dict[str, list[pathlib.Path]] = {}
    for file in files:
        stem = file.name[: -len(".npy")]
        key = stem if stem in names else _SHARD.match(stem).group("name")
        if key not in names:
            if len(specs) != 1:
                raise DataError(f"{file}: file name matches no model input "
                                f"({', '.join(sorted(names - {LABELS}))}); name shards "
                                "NAME.npy or NAME-<k>.npy")
            key = specs[0].name
        grouped.setdefault(key, []).append(file)
    counts = {k: len(v) for k, v in grouped.items()}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        raise DataError(f"{folder}: inputs have different numbers of .npy shards ({listed})")
    parts = []
    for number in range(next(iter(counts.values()))):
        readers: dict[str, ArrayReader] = {k: NpyReader(v[number]) for k, v in grouped.items()}
        parts.append(Part(readers, str(grouped[next(iter(grouped))][number])))
    return parts
