"""A validated, streamable collection of samples for one model.

``DataSource`` is what every data-driven feature reads (importance criteria,
sensitivity, recovery, fine-tuning). Rules:

1. A source is a list of *parts* (one file, one shard, one image folder), each a
   set of readers with the same number of rows: one per model input, plus an
   optional ``labels`` reader. Parts are validated when the source is built
   (see :mod:`onnxprune.data.specs`).
2. ``batches(n)`` yields ``{input name: array}`` dicts of ``n`` samples (the last
   one smaller), reading parts one at a time and rows in ascending order, so only
   one batch is in memory. A model with a static batch dimension ``B`` is fed
   batches of exactly ``B``; a final incomplete batch is dropped with a warning.
3. A source may be restricted to a subset of its rows (``take``, ``split``); the
   subset is always read in ascending row order.
4. Every float array read for a model input is checked for NaN/Inf as it is read; a
   non-finite value is a :class:`DataError` naming the input, the file and the
   sample (row) index, since it would poison every score computed from the data.
5. ``sample_shapes()``: the non-batch dims of the first sample of every input (what
   the run's input shapes are taken from, see :mod:`onnxprune.graph.shape_choice`).
"""

from __future__ import annotations

__all__ = ["DataSource", "Part"]

import dataclasses
import logging
from collections.abc import Iterator

import numpy as np

from onnxprune.data.readers import ArrayReader, MemoryReader
from onnxprune.data.specs import InputSpec, check_array
from onnxprune.errors import DataError

logger = logging.getLogger(__name__)

LABELS = "labels"


@dataclasses.dataclass
class Part:
    """Readers of one shard: model input name (or ``labels``) -> reader."""

    readers: dict[str, ArrayReader]
    origin: str

    @property
    def rows(self) -> int:
        return next(iter(self.readers.values())).rows


def _validate_part(part: Part, specs: list[InputSpec]) -> None:
    names = [s.name for s in specs]
    missing = [n for n in names if n not in part.readers]
    if missing:
        found = ", ".join(sorted(part.readers)) or "none"
        raise DataError(
            f"{part.origin}: no array for model input '{missing[0]}' (found: {found}); "
            f"the keys must be the model's input names ({', '.join(names)}) plus optional "
            f"'{LABELS}'")
    extra = sorted(set(part.readers) - set(names) - {LABELS})
    if extra:
        logger.warning("%s: ignoring arrays that are no model input: %s", part.origin,
                       ", ".join(extra))
        for key in extra:
            del part.readers[key]
    for spec in specs:
        reader = part.readers[spec.name]
        check_array(spec, reader.shape, reader.dtype, part.origin)
    rows = {k: r.rows for k, r in part.readers.items()}
    if len(set(rows.values())) > 1:
        listed = ", ".join(f"{k}: {v}" for k, v in rows.items())
        raise DataError(f"{part.origin}: arrays have different numbers of samples ({listed})")


class DataSource:
    """Samples for a model's inputs (see module docstring)."""

    def __init__(self, parts: list[Part], specs: list[InputSpec], origin: str,
                 indices: np.ndarray | None = None) -> None:
        for part in parts:
            _validate_part(part, specs)
        parts = [p for p in parts if p.rows > 0]
        if not parts:
            raise DataError(f"{origin}: holds no samples")
        has_labels = {LABELS in p.readers for p in parts}
        if len(has_labels) > 1:
            raise DataError(f"{origin}: some shards have '{LABELS}' and some do not")
        self.parts, self.specs, self.origin = parts, specs, origin
        self._offsets = np.cumsum([0] + [p.rows for p in parts])
        total = int(self._offsets[-1])
        self.indices = np.arange(total) if indices is None else np.sort(np.asarray(indices))
        if self.indices.size == 0:
            raise DataError(f"{origin}: the selection holds no samples")
        self._labels: np.ndarray | None = None

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], specs: list[InputSpec],
                    origin: str = "arrays") -> DataSource:
        """A source over in-memory arrays (keys: input names, optional ``labels``)."""
        readers = {k: MemoryReader(np.asarray(v), f"{origin}[{k}]") for k, v in arrays.items()}
        return cls([Part(readers, origin)], specs, origin)

    def _subset(self, indices: np.ndarray) -> DataSource:
        clone = object.__new__(DataSource)
        clone.__dict__.update(self.__dict__)
        clone.indices = np.sort(indices)
        clone._labels = None
        if clone.indices.size == 0:
            raise DataError(f"{self.origin}: the selection holds no samples")
        return clone

    # -- facts ---------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        return int(self.indices.size)

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def has_labels(self) -> bool:
        return LABELS in self.parts[0].readers

    @property
    def labels(self) -> np.ndarray | None:
        """All labels of the selection, in row order (``None`` without labels)."""
        if not self.has_labels:
            return None
        if self._labels is None:
            chunks = [b for _, b in self._iterate(4096, (LABELS,), fixed=None)]
            self._labels = np.concatenate([c[LABELS] for c in chunks])
        return self._labels

    def sample_shapes(self) -> dict[str, tuple[int, ...]]:
        """Rule 5."""
        if not self.parts:
            return {}
        readers = self.parts[0].readers
        return {s.name: tuple(int(d) for d in readers[s.name].shape[1:])
                for s in self.specs if s.name in readers}

    @property
    def fixed_batch(self) -> int | None:
        sizes = {s.batch for s in self.specs if s.batch is not None}
        return sizes.pop() if len(sizes) == 1 else None

    # -- subsets -------------------------------------------------------------------
    def take(self, count: int, seed: int | None = None) -> DataSource:
        """The first ``count`` samples, or a random ``count`` of them with a ``seed``."""
        if count >= self.num_samples:
            return self
        if seed is None:
            return self._subset(self.indices[:count])
        rng = np.random.default_rng(seed)
        return self._subset(rng.choice(self.indices, size=count, replace=False))

    def split(self, fraction: float, seed: int = 0) -> tuple[DataSource, DataSource]:
        """Disjoint random subsets holding ``1 - fraction`` and ``fraction`` of the samples."""
        if not 0.0 < fraction < 1.0:
            raise DataError(f"split fraction must be in (0, 1), got {fraction}")
        order = np.random.default_rng(seed).permutation(self.indices)
        cut = round(self.num_samples * (1.0 - fraction))
        cut = min(max(cut, 1), self.num_samples - 1)
        return self._subset(order[:cut]), self._subset(order[cut:])

    # -- reading -------------------------------------------------------------------
    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Input feeds of ``batch_size`` samples, cast to the model's dtypes (rule 2)."""
        for _, feeds in self.labeled_batches(batch_size):
            yield feeds

    def labeled_batches(self, batch_size: int,
                        ) -> Iterator[tuple[np.ndarray | None, dict[str, np.ndarray]]]:
        """``(labels or None, feeds)`` pairs of ``batch_size`` samples."""
        keys = tuple(self.input_names) + ((LABELS,) if self.has_labels else ())
        fixed = self.fixed_batch
        for _, batch in self._iterate(fixed or batch_size, keys, fixed):
            feeds = {s.name: batch[s.name].astype(s.dtype, copy=False) for s in self.specs}
            yield batch.get(LABELS), feeds

    def _iterate(self, batch_size: int, keys: tuple[str, ...], fixed: int | None,
                 ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        if batch_size < 1:
            raise DataError(f"batch size must be >= 1, got {batch_size}")
        pending: list[dict[str, np.ndarray]] = []
        count = 0
        for rows in self._row_chunks(keys, batch_size):
            pending.append(rows)
            count += len(next(iter(rows.values())))
            while count >= batch_size:
                merged = {k: np.concatenate([p[k] for p in pending]) for k in keys}
                yield batch_size, {k: v[:batch_size] for k, v in merged.items()}
                rest = {k: v[batch_size:] for k, v in merged.items()}
                count -= batch_size
                pending = [rest] if count else []
        if count:
            if fixed is not None:
                logger.warning("%s: dropping the last %d samples: the model's batch size is "
                               "fixed at %d", self.origin, count, fixed)
                return
            yield count, {k: np.concatenate([p[k] for p in pending]) for k in keys}

    def _row_chunks(self, keys: tuple[str, ...], batch_size: int,
                    ) -> Iterator[dict[str, np.ndarray]]:
        """Selected rows, part by part, in ascending windows of at most ``batch_size``."""
        for number, part in enumerate(self.parts):
            lo, hi = self._offsets[number], self._offsets[number + 1]
            first, last = np.searchsorted(self.indices, [lo, hi])
            local = self.indices[first:last] - lo
            for start in range(0, len(local), batch_size):
                wanted = local[start:start + batch_size]
                runs = np.split(wanted, np.flatnonzero(np.diff(wanted) > 1) + 1)
                pieces = [{k: _finite(part.readers[k].read(int(r[0]), int(r[-1]) + 1), k,
                                      part.origin, int(r[0]))
                           for k in keys} for r in runs]
                if len(pieces) == 1:
                    yield pieces[0]
                else:
                    yield {k: np.concatenate([p[k] for p in pieces]) for k in keys}


def _finite(array: np.ndarray, name: str, origin: str, first_row: int) -> np.ndarray:
    """Rule 4: ``array`` (rows from ``first_row``) unless it holds NaN/Inf."""
    if name == LABELS or not np.issubdtype(array.dtype, np.floating) or not array.size:
        return array
    finite = np.isfinite(array.reshape(len(array), -1)).all(axis=1) if array.ndim else \
        np.isfinite(array)
    if bool(np.all(finite)):
        return array
    bad = np.flatnonzero(~finite)
    more = f" and {len(bad) - 1} more in this batch" if len(bad) > 1 else ""
    raise DataError(f"{origin}: input '{name}' contains NaN or Inf (sample "
                    f"{first_row + int(bad[0])}{more}); clean or drop those samples")
