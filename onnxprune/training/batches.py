"""Training batches from a :class:`DataSource`: shuffled, fixed size, with row positions.

Rules:

1. Rows are read in the source's order (one pass, streaming) into a pool of at
   most ``pool`` samples; a full pool is shuffled and emitted as batches, the rows
   left over stay for the next pool. Data that fits the pool (the usual case) is
   shuffled completely every epoch.
2. Every batch has exactly ``batch`` samples (the training graph has a static
   batch); the last incomplete batch of an epoch is dropped.
3. Each batch carries the positions of its rows in the source's order, so outputs
   computed once per sample (the teacher's) can be cached across epochs.
"""

from __future__ import annotations

__all__ = ["Batch", "shuffled_batches", "steps_per_epoch"]

import dataclasses
from collections.abc import Iterator

import numpy as np

from onnxprune.data import DataSource

LABELS = "labels"


@dataclasses.dataclass
class Batch:
    positions: np.ndarray
    labels: np.ndarray | None
    feeds: dict[str, np.ndarray]


def steps_per_epoch(data: DataSource, batch: int) -> int:
    return data.num_samples // batch


def _emit(pool: dict[str, list[np.ndarray]], batch: int, rng: np.random.Generator,
          final: bool) -> tuple[list[Batch], dict[str, list[np.ndarray]]]:
    merged = {k: np.concatenate(v) for k, v in pool.items()}
    count = len(merged["_pos"])
    order = rng.permutation(count)
    full = count // batch * batch
    batches = []
    for start in range(0, full, batch):
        index = order[start:start + batch]
        labels = merged[LABELS][index] if LABELS in merged else None
        feeds = {k: v[index] for k, v in merged.items() if k not in ("_pos", LABELS)}
        batches.append(Batch(merged["_pos"][index], labels, feeds))
    rest = order[full:]
    left = {} if final or not len(rest) else {k: [v[rest]] for k, v in merged.items()}
    return batches, left


def shuffled_batches(data: DataSource, batch: int, rng: np.random.Generator,
                     pool: int = 8192) -> Iterator[Batch]:
    """One epoch of shuffled batches (rules 1-3)."""
    pool = max(pool, batch)
    chunks: dict[str, list[np.ndarray]] = {}
    held, position = 0, 0
    for labels, feeds in data.labeled_batches(batch):
        rows = len(next(iter(feeds.values())))
        arrays = dict(feeds, _pos=np.arange(position, position + rows))
        if labels is not None:
            arrays[LABELS] = labels
        position += rows
        for key, value in arrays.items():
            chunks.setdefault(key, []).append(value)
        held += rows
        if held >= pool:
            out, chunks = _emit(chunks, batch, rng, final=False)
            held = len(chunks["_pos"][0]) if chunks else 0
            yield from out
    if held:
        out, _ = _emit(chunks, batch, rng, final=True)
        yield from out
