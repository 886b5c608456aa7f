"""The files a sweep's tasks read, sent once and written once per worker.

Rules:

1. :func:`pack_inputs` reads the model (with its external-data files), ``--data`` and
   ``--eval-data`` (a file, or every file of a folder) into one :class:`SweepInputs`
   of bytes with a content key. It is the executor's ``shared`` value: it goes to
   Ray's object store once per sweep, never once per point.
2. :func:`materialize` writes them into a folder the task owns (``<root>/model/``,
   ``<root>/data/``, ``<root>/eval_data/``); :func:`onnxprune.sweep.points.run_point`
   makes that a temporary folder per point, removed when the point ends, passed or
   failed. (A copy per worker process would save the writes but cannot be removed
   reliably: Ray ends its workers without running their exit handlers.)
3. :func:`restore_paths` maps every string under a task's temporary folder back to the
   user's own path (the model, the data, the point's final output), so rows and
   reports name the files the user has.
"""

from __future__ import annotations

__all__ = ["SweepInputs", "materialize", "pack_inputs", "restore_paths"]

import dataclasses
import hashlib
import logging
import pathlib
from typing import Any

import onnx

from onnxprune.errors import DataError, InvalidModelError

logger = logging.getLogger(__name__)

KINDS = ("model", "data", "eval_data")


@dataclasses.dataclass(frozen=True)
class Blob:
    """One input: its top-level name and ``{relative path: bytes}`` of its files."""

    name: str
    files: dict[str, bytes]
    is_dir: bool = False


@dataclasses.dataclass(frozen=True)
class SweepInputs:
    """Rule 1: everything the points read, as bytes, with a content key."""

    key: str
    blobs: dict[str, Blob]
    origins: dict[str, str]  # kind -> the user's path


def _folder(path: pathlib.Path) -> Blob:
    files = {str(p.relative_to(path)): p.read_bytes()
             for p in sorted(path.rglob("*")) if p.is_file()}
    return Blob(path.name, files, is_dir=True)


def _model(path: pathlib.Path) -> Blob:
    """The model file and the external-data files it names (same folder layout)."""
    if not path.is_file():
        raise InvalidModelError(f"{path}: no such model file")
    files = {path.name: path.read_bytes()}
    try:
        header = onnx.load(str(path), load_external_data=False)
    except Exception:  # not a model: the point's own loading says why
        return Blob(path.name, files)
    for tensor in header.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location" and entry.value not in files:
                extra = path.parent / entry.value
                if extra.is_file():
                    files[entry.value] = extra.read_bytes()
    return Blob(path.name, files)


def _data(path: pathlib.Path, option: str) -> Blob:
    if path.is_dir():
        return _folder(path)
    if not path.is_file():
        raise DataError(f"{option} {path}: no such file or folder")
    return Blob(path.name, {path.name: path.read_bytes()})


def pack_inputs(model: str, data: str | None, eval_data: str | None) -> SweepInputs:
    """Rule 1."""
    blobs = {"model": _model(pathlib.Path(model))}
    origins = {"model": str(model)}
    for kind, value, option in (("data", data, "--data"), ("eval_data", eval_data,
                                                           "--eval-data")):
        if value:
            blobs[kind] = _data(pathlib.Path(value), option)
            origins[kind] = str(value)
    digest = hashlib.sha256()
    for kind, blob in sorted(blobs.items()):
        for name, payload in sorted(blob.files.items()):
            digest.update(f"{kind}/{name}\0".encode())
            digest.update(hashlib.sha256(payload).digest())
    return SweepInputs(digest.hexdigest()[:16], blobs, origins)


def materialize(inputs: SweepInputs, root: pathlib.Path) -> dict[str, str]:
    """Rule 2: write the inputs under ``root``; ``{kind: local path}``."""
    paths = {}
    for kind, blob in inputs.blobs.items():
        base = root / kind
        for name, payload in blob.files.items():
            target = base / blob.name / name if blob.is_dir else base / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(payload)
        paths[kind] = str(base / blob.name)
    logger.debug("sweep inputs written to %s", root)
    return paths


def restore_paths(value: Any, mapping: dict[str, str]) -> Any:
    """Rule 3: ``value`` with every string that starts with a key of ``mapping``
    rewritten to start with its value instead (longest key first)."""
    if isinstance(value, str):
        for prefix in sorted(mapping, key=len, reverse=True):
            if value.startswith(prefix):
                return mapping[prefix] + value[len(prefix):]
        return value
    if isinstance(value, dict):
        return {k: restore_paths(v, mapping) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(restore_paths(v, mapping) for v in value)
    return value
