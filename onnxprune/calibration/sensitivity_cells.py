"""Sensitivity cells: one (group, ratio) evaluated over a chunk of cached batches.

A cell is one task of :mod:`onnxprune.parallel` (in process, or on a Ray worker).
Rules:

1. :class:`Shared` is sent once per chunk (``executor.map(shared=...)``): the masked
   model's bytes and a digest of them, every group's :class:`SuffixSpec`, the shape and
   dtype of every mask input, the fidelity heads, the damage key, the intra-op thread
   count of the sessions (``0``: ONNX Runtime's default), and the chunk's batches: for
   each, the cached frontier tensors (graph inputs and baseline intermediates), the
   baseline outputs, the labels, and the reference side of the fidelity comparison
   (``prepared``, or None).
2. :func:`evaluate_cell` runs the cell's group suffix on every batch of the chunk,
   feeding the cached frontier tensors, the cell's masks, and all-ones masks for every
   other mask the suffix reads; graph outputs the suffix does not produce are the
   baseline's. It returns the damage sums over the chunk and each batch's
   ``(rows, damage sum)`` (for the standard error of the ``--samples`` rule).
3. Sessions of suffix models are built once per (model digest, suffix) per process and
   kept in a small LRU cache (``SESSIONS`` entries). Cells arrive group by group, so in
   process each group's session is built once per chunk and reused over its ratios and
   batches (the full evaluation has one suffix, the whole graph: one session, as
   before); a Ray worker builds the sessions of the groups it is given. The driver
   calls :func:`release` when a measurement ends, so no session outlives it in process.
4. Damage sums follow :mod:`onnxprune.calibration.sensitivity` rule 3: the batch means
   of :func:`onnxprune.calibration.fidelity.compare` times the batch's rows.
"""

from __future__ import annotations

__all__ = ["SESSIONS", "Cell", "CellResult", "Shared", "batch_damage", "evaluate_cell",
           "release"]

import collections
import dataclasses
from typing import Any

import numpy as np
import onnx

from onnxprune.calibration.fidelity import compare
from onnxprune.calibration.suffix import SuffixSpec, suffix_model
from onnxprune.graph import runtime

SESSIONS = 4


@dataclasses.dataclass(frozen=True)
class Cell:
    """One task: ``config`` indexes the caller's configurations; ``masks`` are the
    group's non-trivial mask inputs for this removal."""

    config: int
    position: int
    masks: dict[str, np.ndarray]


@dataclasses.dataclass
class Shared:
    """Rule 1."""

    key: str
    model: bytes
    specs: dict[int, SuffixSpec]
    mask_shapes: dict[str, tuple[tuple[int, ...], Any]]
    heads: list
    damage_key: str
    threads: int
    batches: list[dict]  # {"cached": {...}, "base": {...}, "labels": array | None}


@dataclasses.dataclass
class CellResult:
    sums: dict[str, float]
    batches: list[tuple[int, float]]


def batch_damage(base: dict[str, np.ndarray], got: dict[str, np.ndarray], heads: list,
                 labels: np.ndarray | None, prepared: dict | None = None) -> dict[str, float]:
    """Rule 4: sums over the batch of each measure (divided by sample count later)."""
    rows = len(next(iter(base.values())))
    metrics = compare(got, base, heads, labels, prepared)
    out = {"cosine": metrics.get("cosine", 0.0) * rows,
           "rel_mse": metrics.get("rel_mse", 0.0) * rows}
    if "kl" in metrics:
        out["kl"] = metrics["kl"] * rows
    if "accuracy" in metrics:
        out["correct"] = metrics["accuracy"] * rows
    return out


_sessions: collections.OrderedDict = collections.OrderedDict()
_parsed: dict[str, onnx.ModelProto] = {}


def release() -> None:
    """Drop this process's cached sessions and parsed model (rule 3)."""
    _sessions.clear()
    _parsed.clear()


def _model(shared: Shared) -> onnx.ModelProto:
    if shared.key not in _parsed:
        _parsed.clear()
        _parsed[shared.key] = onnx.load_from_string(shared.model)
    return _parsed[shared.key]


def _session(shared: Shared, position: int):
    """Rule 3."""
    key = (shared.key, shared.specs[position], shared.threads)
    if key in _sessions:
        _sessions.move_to_end(key)
        return _sessions[key]
    spec = shared.specs[position]
    examples = {name: shared.batches[0]["cached"][name] for name in spec.cached}
    proto = suffix_model(_model(shared), spec, examples)
    ort = runtime.import_ort()
    options = runtime.session_options(ort)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if shared.threads:
        options.intra_op_num_threads = shared.threads
    session = ort.InferenceSession(runtime.to_runtime_proto(proto).SerializeToString(),
                                   options, providers=["CPUExecutionProvider"])
    _sessions[key] = session
    while len(_sessions) > SESSIONS:
        _sessions.popitem(last=False)
    return session


def evaluate_cell(shared: Shared, cell: Cell) -> CellResult:
    """Rule 2."""
    spec = shared.specs[cell.position]
    sums = dict.fromkeys(("cosine", "rel_mse", "kl", "correct"), 0.0)
    per_batch: list[tuple[int, float]] = []
    session = _session(shared, cell.position) if spec.outputs else None
    masks = {name: cell.masks[name] if name in cell.masks
             else np.ones(*shared.mask_shapes[name]) for name in spec.masks}
    for batch in shared.batches:
        base = batch["base"]
        got = dict(base)
        if session is not None:
            feeds = {name: batch["cached"][name] for name in spec.cached}
            got.update(zip(spec.outputs, session.run(list(spec.outputs), {**feeds, **masks})))
        damage = batch_damage(base, got, shared.heads, batch["labels"], batch["prepared"])
        for key, value in damage.items():
            sums[key] += value
        per_batch.append((len(next(iter(base.values()))), damage.get(shared.damage_key, 0.0)))
    return CellResult(sums, per_batch)
