"""Row readers over arrays that may not fit in memory.

Every reader exposes ``shape``, ``dtype``, ``origin`` and ``read(start, stop)``
(rows ``start:stop`` of axis 0). Cases:

1. ``MemoryReader``: an array already in memory.
2. ``NpyReader``: a ``.npy`` file opened with ``mmap_mode="r"``; only read rows are paged in.
3. ``ZipMemberReader``: one ``.npy`` member of an ``.npz``. The member is streamed:
   reading moves forward through the (possibly deflated) member and reopens it only
   when asked for an earlier row, so rows read in ascending order cost one pass.
   Fortran-ordered members cannot be streamed by rows and are loaded whole.

Opening a reader reads only headers; an unreadable file raises :class:`DataError`.
"""

from __future__ import annotations

__all__ = ["ArrayReader", "MemoryReader", "NpyReader", "ZipMemberReader", "npz_readers"]

import logging
import math
import pathlib
import zipfile
from typing import IO

import numpy as np

from onnxprune.errors import DataError

logger = logging.getLogger(__name__)

_CHUNK = 1 << 24  # bytes skipped per read when seeking forward in a deflated member


class ArrayReader:
    shape: tuple[int, ...]
    dtype: np.dtype
    origin: str

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1

    def read(self, start: int, stop: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class MemoryReader(ArrayReader):
    def __init__(self, array: np.ndarray, origin: str) -> None:
        self.array = np.asarray(array)
        self.shape, self.dtype, self.origin = self.array.shape, self.array.dtype, origin

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.array[start:stop]


def _check_dtype(dtype: np.dtype, origin: str) -> None:
    if dtype.hasobject:
        raise DataError(f"{origin}: holds Python objects (pickled data), which are not read; "
                        "save plain numeric arrays")


class NpyReader(ArrayReader):
    def __init__(self, path: pathlib.Path) -> None:
        self.origin = str(path)
        _nonempty(path)
        try:
            self.array = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:
            raise DataError(f"{path}: not a readable .npy file ({type(exc).__name__}: {exc})"
                            ) from exc
        _check_dtype(self.array.dtype, self.origin)
        self.shape, self.dtype = self.array.shape, self.array.dtype

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.array(self.array[start:stop])

    def __getstate__(self) -> dict:  # pickled by path (fine-tuning child processes)
        return {k: v for k, v in self.__dict__.items() if k != "array"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.array = np.load(self.origin, mmap_mode="r", allow_pickle=False)


def _read_header(handle: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(handle)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(handle)
    return np.lib.format._read_array_header(handle, version)  # (3, 0): utf-8 field names


class ZipMemberReader(ArrayReader):
    def __init__(self, path: pathlib.Path, member: str) -> None:
        self.path, self.member = path, member
        self.origin = f"{path}[{member.removesuffix('.npy')}]"
        with zipfile.ZipFile(path) as archive, archive.open(member) as handle:
            shape, fortran, dtype = _read_header(handle)
        _check_dtype(dtype, self.origin)
        self.shape, self.dtype, self._fortran = tuple(shape), np.dtype(dtype), fortran
        self._row_bytes = self.dtype.itemsize * math.prod(self.shape[1:])
        self._archive: zipfile.ZipFile | None = None
        self._handle: IO[bytes] | None = None
        self._row = 0
        self._whole: np.ndarray | None = None

    def _open(self) -> None:
        self.close()
        self._archive = zipfile.ZipFile(self.path)
        self._handle = self._archive.open(self.member)
        _read_header(self._handle)
        self._row = 0

    def _read_bytes(self, count: int) -> bytes:
        chunks, left = [], count
        while left:
            data = self._handle.read(min(left, _CHUNK))
            if not data:
                raise DataError(f"{self.origin}: file is truncated (expected {count} more bytes)")
            chunks.append(data)
            left -= len(data)
        return b"".join(chunks)

    def read(self, start: int, stop: int) -> np.ndarray:
        if self._fortran or not self.shape:
            if self._whole is None:
                logger.info("%s is Fortran-ordered or 0-d; loading it whole", self.origin)
                with zipfile.ZipFile(self.path) as archive, archive.open(self.member) as handle:
                    self._whole = np.lib.format.read_array(handle, allow_pickle=False)
            return self._whole[start:stop]
        if self._handle is None or start < self._row:
            self._open()
        if start > self._row:
            skip = (start - self._row) * self._row_bytes
            while skip:
                step = min(skip, _CHUNK)
                self._read_bytes(step)
                skip -= step
        data = self._read_bytes((stop - start) * self._row_bytes)
        self._row = stop
        array = np.frombuffer(data, dtype=self.dtype).reshape((stop - start, *self.shape[1:]))
        return array.copy()

    def __getstate__(self) -> dict:  # open handles stay behind; reopened on demand
        state = dict(self.__dict__)
        state.update(_archive=None, _handle=None, _row=0)
        return state

    def close(self) -> None:
        if getattr(self, "_handle", None) is not None:
            self._handle.close()
        if getattr(self, "_archive", None) is not None:
            self._archive.close()
        self._handle = self._archive = None

    def __del__(self) -> None:
        self.close()


def _nonempty(path: pathlib.Path) -> None:
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")


def npz_readers(path: pathlib.Path) -> dict[str, ZipMemberReader]:
    """One streaming reader per array of an ``.npz`` file, keyed by array name."""
    _nonempty(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = [n for n in archive.namelist() if n.endswith(".npy")]
            bad = archive.testzip() if path.stat().st_size < (64 << 20) else None
        if bad is not None:
            raise zipfile.BadZipFile(f"member {bad} fails its CRC check")
        return {m.removesuffix(".npy"): ZipMemberReader(path, m) for m in members}
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc}); "
                        "is it truncated or of another format?") from exc
