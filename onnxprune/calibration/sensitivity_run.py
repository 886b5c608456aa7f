"""The baseline pass and the dispatch of sensitivity cells over an executor.

Rules:

1. The baseline runs once per batch on the masked model with all-ones masks, with the
   frontier tensors of every group's suffix as extra outputs
   (:func:`onnxprune.calibration.tap.tapped_session`). A batch keeps those tensors,
   the baseline outputs, the labels, and with suffix caching the reference side of the
   fidelity comparison (:func:`onnxprune.calibration.fidelity.prepare`: computed once
   per batch instead of once per cell; the full evaluation recomputes it per cell, as
   before).
2. Bounded memory: batches are gathered into *chunks* of at most ``cache_bytes`` of
   cached arrays (``CACHE_BYTES``, 512 MiB, by default; a chunk holds at least one
   batch). Each chunk is one ``executor.map`` over every cell, with the chunk as
   ``shared`` (sent once per chunk, never per task); then its arrays are dropped. The
   cell sums of the chunks are added in chunk order, so the result does not depend on
   how many workers ran the cells.
3. ``progress(done, total)`` counts finished cells over all chunks; ``total`` is
   estimated from the first batch's size (chunks x cells) and corrected at the end.
"""

from __future__ import annotations

__all__ = ["CACHE_BYTES", "Baseline", "run_cells"]

import dataclasses
import hashlib
import logging
import math
from collections.abc import Callable, Iterator

import numpy as np
import onnx

from onnxprune.calibration.fidelity import compare, prepare
from onnxprune.calibration.sensitivity_cells import (
    Cell,
    CellResult,
    Shared,
    evaluate_cell,
    release,
)
from onnxprune.calibration.suffix import SuffixSpec
from onnxprune.calibration.tap import tapped_session
from onnxprune.data import DataSource
from onnxprune.parallel import Executor

logger = logging.getLogger(__name__)

CACHE_BYTES = 512 * 2**20


@dataclasses.dataclass
class Baseline:
    """What the unpruned baseline measured while the cells ran."""

    samples: int = 0
    correct: float = 0.0
    classifier: bool = False
    with_labels: bool = False
    chunks: int = 0


def _batches(proto: onnx.ModelProto, cached: list[str], data: DataSource, batch_size: int,
             ones: dict[str, np.ndarray], heads: list, baseline: Baseline, suffix: bool,
             ) -> Iterator[dict]:
    """Rule 1, batch by batch (updates ``baseline``)."""
    inputs = {i.name for i in proto.graph.input}
    outputs = [o.name for o in proto.graph.output]
    tapped = [n for n in cached if n not in inputs and n not in outputs]
    session = tapped_session(proto, tapped)
    wanted = list(dict.fromkeys(outputs + tapped))
    for labels, feeds in data.labeled_batches(data.fixed_batch or batch_size):
        values = dict(zip(wanted, session.run(wanted, {**feeds, **ones})))
        base = {n: values[n] for n in outputs}
        itself = compare(base, base, heads, labels)
        rows = len(next(iter(feeds.values())))
        baseline.classifier = "kl" in itself
        baseline.with_labels = "accuracy" in itself
        baseline.correct += itself.get("accuracy", 0.0) * rows
        baseline.samples += rows
        yield {"cached": {n: feeds[n] if n in feeds else values[n] for n in cached},
               "base": base, "labels": labels,
               "prepared": prepare(base, heads) if suffix else None}


def _size(batch: dict) -> int:
    prepared = batch["prepared"] or {}
    return sum(a.nbytes for a in batch["cached"].values()) + sum(
        a.nbytes for a in batch["base"].values()) + sum(
        p.ref.nbytes + p.z.nbytes for p in prepared.values())


def _chunks(batches: Iterator[dict], cap: int) -> Iterator[tuple[list[dict], int]]:
    """Rule 2: ``(chunk, bytes of its first batch)``."""
    chunk: list[dict] = []
    used, first = 0, 0
    for batch in batches:
        size = _size(batch)
        first = first or size
        if chunk and used + size > cap:
            yield chunk, first
            chunk, used = [], 0
        chunk.append(batch)
        used += size
    if chunk:
        yield chunk, first


def run_cells(executor: Executor, cells: list[Cell], proto: onnx.ModelProto,
              specs: dict[int, SuffixSpec], masks: dict[str, tuple], heads: list,
              data: DataSource, batch_size: int, *, suffix: bool,
              cache_bytes: int = CACHE_BYTES,
              progress: Callable[[int, int], None] | None = None,
              ) -> tuple[list[CellResult], Baseline]:
    """Rules 1-3: one :class:`CellResult` per cell (summed over chunks)."""
    model = proto.SerializeToString()
    key = hashlib.sha1(model).hexdigest() + (":suffix" if suffix else ":full")
    cached = list(dict.fromkeys(n for s in specs.values() for n in s.cached))
    ones = {name: np.ones(shape, dtype) for name, (shape, dtype) in masks.items()}
    baseline = Baseline()
    batches = _batches(proto, cached, data, batch_size, ones, heads, baseline, suffix)
    totals = [CellResult(dict.fromkeys(("cosine", "rel_mse", "kl", "correct"), 0.0), [])
              for _ in cells]
    threads = 1 if executor.name != "in-process" else 0
    done_before = 0
    for chunk, first in _chunks(batches, cache_bytes):
        baseline.chunks += 1
        estimate = max(baseline.chunks, math.ceil(
            data.num_samples / max(len(next(iter(chunk[0]["base"].values()))), 1)
            * first / cache_bytes))
        shared = Shared(key, model, specs, masks, heads,
                        "kl" if baseline.classifier else "cosine", threads, chunk)
        report = None
        if progress is not None:
            def report(done, _total, before=done_before, estimate=estimate):
                progress(before + done, len(cells) * estimate)
        if cells:
            results = executor.map(evaluate_cell, cells, shared=shared, progress=report)
            for total, result in zip(totals, results):
                for name, value in result.sums.items():
                    total.sums[name] += value
                total.batches.extend(result.batches)
        done_before += len(cells)
        logger.debug("sensitivity chunk %d: %d batches, %d cells", baseline.chunks,
                     len(chunk), len(cells))
    release()  # the in-process sessions (Ray workers keep at most SESSIONS each)
    if progress is not None and cells:
        progress(done_before, done_before)
    return totals, baseline
